#include "tiny_model.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <vector>

namespace kl::test {
namespace {

struct TempDirs {
    std::vector<std::string> dirs;
    ~TempDirs() {
        std::error_code ignored;
        for (const auto& dir : dirs) std::filesystem::remove_all(dir, ignored);
    }
};

std::mutex g_mutex;
TempDirs g_temp_dirs;
std::map<std::string, std::string> g_models;

}  // namespace

std::string temp_dir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "kl_test_XXXXXX").string();
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    if (!mkdtemp(buffer.data())) {
        ADD_FAILURE() << "mkdtemp failed for " << pattern;
        return "";
    }
    std::lock_guard<std::mutex> lock(g_mutex);
    g_temp_dirs.dirs.emplace_back(buffer.data());
    return g_temp_dirs.dirs.back();
}

std::string tiny_model_dir(const std::string& args) {
    {
        std::lock_guard<std::mutex> lock(g_mutex);
        auto found = g_models.find(args);
        if (found != g_models.end()) return found->second;
    }
    const std::string dir = temp_dir() + "/model";
    // The environment may point elsewhere (a build tree carried to another machine).
    const char* tool = std::getenv("KL_MAKE_TINY_MODEL");
    const std::string command = std::string("\"") + (tool ? tool : KL_MAKE_TINY_MODEL) + "\" \"" +
                                dir + "\" " + args + " > /dev/null";
    if (std::system(command.c_str()) != 0) {
        ADD_FAILURE() << "make_tiny_model failed: " << command;
        return "";
    }
    std::lock_guard<std::mutex> lock(g_mutex);
    g_models[args] = dir;
    return dir;
}

}  // namespace kl::test
