// Helpers shared by the C API tests of quantized checkpoints (test_capi_quantized.cpp,
// test_capi_quantize_progress.cpp): a model's logits to compare formats by, a folder's names.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "capi_test_support.h"
#include "kimi_linear.h"

namespace kl::test {

inline const std::vector<int32_t> kQuantizedPrompt = {1, 5, 9, 2, 7};

// The last position's logits of kQuantizedPrompt on the model at dir loaded with mp; empty
// (and a test failure) when the load fails.
inline std::vector<float> last_logits(const std::string& dir, const kl_model_params& mp) {
    kl_model* model = nullptr;
    EXPECT_EQ(kl_model_load(dir.c_str(), &mp, &model), KL_OK) << kl_last_error();
    if (!model) return {};
    struct kl_model_info info = {};
    info.struct_size = sizeof(info);
    EXPECT_EQ(kl_model_info(model, &info), KL_OK) << kl_last_error();
    std::vector<float> logits(info.vocab_size);
    kl_session* s = nullptr;
    EXPECT_EQ(kl_session_create(model, nullptr, &s), KL_OK) << kl_last_error();
    EXPECT_EQ(kl_session_append(s, kQuantizedPrompt.data(), kQuantizedPrompt.size(), KL_LOGITS_LAST,
                                logits.data()),
              KL_OK)
        << kl_last_error();
    kl_session_free(s);
    kl_model_free(model);
    return logits;
}

// The same on the CPU with the weights in `format`.
inline std::vector<float> last_logits(const std::string& dir, kl_weight_format format) {
    kl_model_params mp = cpu_params();
    mp.weight_format = format;
    return last_logits(dir, mp);
}

inline std::vector<std::string> names_in(const std::string& dir) {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir))
        names.push_back(entry.path().filename().string());
    return names;
}

}  // namespace kl::test
