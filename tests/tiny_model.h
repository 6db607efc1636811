// Test support: tiny random checkpoints made by the make_tiny_model tool (its path is the
// KL_MAKE_TINY_MODEL macro), one folder per distinct argument list, removed at exit.
#pragma once

#include <string>

namespace kl::test {

// Runs `make_tiny_model DIR ARGS` once per distinct ARGS and returns DIR. Fails the
// calling test (ADD_FAILURE) and returns "" if the tool fails.
std::string tiny_model_dir(const std::string& args = "--preset tiny --seed 1");

// A fresh empty temporary folder, removed at exit.
std::string temp_dir();

}  // namespace kl::test
