// Helpers shared by the C API test files (tests/capi/test_*.cpp).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "kimi_linear.h"
#include "tiny_model.h"

namespace kl::test {

// A C call failed with `want` and kl_last_error() names `fragment`.
inline void expect_failure(kl_status got, kl_status want, const std::string& fragment) {
    EXPECT_EQ(got, want) << kl_status_string(got) << ": " << kl_last_error();
    EXPECT_NE(std::string(kl_last_error()).find(fragment), std::string::npos)
        << "message \"" << kl_last_error() << "\" lacks \"" << fragment << "\"";
}

// Model parameters for the CPU backend with one worker thread.
inline kl_model_params cpu_params() {
    kl_model_params params;
    kl_model_params_default(&params);
    params.device = KL_DEVICE_CPU;
    params.n_threads = 1;
    return params;
}

// The ids of text through kl_tokenize (size query, then the call); a failure is a test failure.
inline std::vector<int32_t> capi_tokenize(const kl_model* model, const std::string& text,
                                          int parse_special) {
    size_t n = 0;
    kl_tokenize(model, text.data(), text.size(), parse_special, nullptr, 0, &n);
    std::vector<int32_t> ids(n);
    EXPECT_EQ(kl_tokenize(model, text.data(), text.size(), parse_special, ids.data(), n, &n), KL_OK)
        << kl_last_error();
    return ids;
}

// A copy of the tiny model (one shard) with a second safetensors file holding one tensor the
// config does not know, so that loading it logs one warning. Fresh folder each call.
inline std::string model_that_warns() {
    const std::string dir = temp_dir() + "/warns";
    std::filesystem::copy(tiny_model_dir("--preset tiny --seed 1 --shards 1"), dir,
                          std::filesystem::copy_options::recursive);
    const std::string header =
        R"({"model.mtp.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    std::string bytes(8, '\0');
    const uint64_t n = header.size();
    std::memcpy(&bytes[0], &n, 8);
    bytes += header + std::string(8, '\0');
    std::ofstream(dir + "/extra.safetensors", std::ios::binary) << bytes;
    return dir;
}

}  // namespace kl::test
