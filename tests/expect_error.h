// Shared by the config, safetensors and checkpoint tests: assert a kl::Error's status and
// that its message names the offending things.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"

namespace kl::test {

// Expects `body` to throw kl::Error with `status` and every fragment in its message.
template <typename Body>
void expect_error(Body&& body, Status status, const std::vector<std::string>& fragments) {
    try {
        body();
        ADD_FAILURE() << "no error; wanted one mentioning \"" << fragments.at(0) << "\"";
    } catch (const Error& e) {
        EXPECT_EQ(static_cast<int>(e.status()), static_cast<int>(status)) << e.what();
        for (const auto& fragment : fragments)
            EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos)
                << "message \"" << e.what() << "\" lacks \"" << fragment << "\"";
    }
}

inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

inline void write_file(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << bytes;
}

}  // namespace kl::test
