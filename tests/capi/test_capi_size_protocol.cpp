// The size protocol of output buffers (docs/design/capi.md "Buffers: the size protocol"): a
// NULL buffer with cap 0 asks for the size and answers KL_OK with no error set; a buffer too
// small is KL_ERR_INVALID_ARGUMENT with the size reported and nothing written; a NULL buffer
// with cap > 0 is an error. One test per function that has the protocol.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "capi_test_support.h"
#include "kimi_linear.h"
#include "tiny_model.h"

namespace {

struct CApiSizeProtocol : ::testing::Test {
    static void SetUpTestSuite() {
        const std::string dir = kl::test::tiny_model_dir("--preset small --seed 7");
        ASSERT_EQ(kl_model_load(dir.c_str(), nullptr, &model), KL_OK) << kl_last_error();
    }
    static void TearDownTestSuite() { kl_model_free(model), model = nullptr; }
    static kl_model* model;
};
kl_model* CApiSizeProtocol::model = nullptr;

const char kText[] = "Hello <|im_end|> world";
const kl_chat_message kChat[] = {{"user", "Hi there"}, {"assistant", "Hello"}};

// A size query: KL_OK, the size, and kl_last_error() empty (a failure before it set one).
template <typename Call>
size_t expect_size_query(Call call) {
    kl_tokenize(nullptr, "x", 1, 0, nullptr, 0, nullptr);  // leaves an error behind
    EXPECT_NE(std::string(kl_last_error()), "");
    size_t n = 12345;
    const kl_status status = call(&n);
    EXPECT_EQ(status, KL_OK) << kl_last_error();
    EXPECT_STREQ(kl_last_error(), "");
    EXPECT_NE(n, 12345u);
    return n;
}

TEST_F(CApiSizeProtocol, TokenizeAnswersTheSizeOfANullBuffer) {
    const size_t n = expect_size_query([](size_t* n) {
        return kl_tokenize(model, kText, sizeof kText - 1, 1, nullptr, 0, n);
    });
    ASSERT_GT(n, 2u);
    std::vector<int32_t> small(n - 1, -7);
    size_t got = 0;
    EXPECT_EQ(kl_tokenize(model, kText, sizeof kText - 1, 1, small.data(), small.size(), &got),
              KL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(got, n);
    EXPECT_EQ(small, std::vector<int32_t>(n - 1, -7));  // nothing written
    EXPECT_EQ(kl_tokenize(model, kText, sizeof kText - 1, 1, nullptr, 5, &got),
              KL_ERR_INVALID_ARGUMENT);
    std::vector<int32_t> ids(n);
    EXPECT_EQ(kl_tokenize(model, kText, sizeof kText - 1, 1, ids.data(), n, &got), KL_OK);
    EXPECT_EQ(got, n);
}

TEST_F(CApiSizeProtocol, DetokenizeAnswersTheSizeOfANullBuffer) {
    const std::vector<int32_t> ids = kl::test::capi_tokenize(model, kText, 1);
    const size_t len = expect_size_query([&](size_t* len) {
        return kl_detokenize(model, ids.data(), ids.size(), nullptr, 0, len);
    });
    EXPECT_EQ(len, sizeof kText - 1);
    std::string small(len - 1, 'x');
    size_t got = 0;
    EXPECT_EQ(kl_detokenize(model, ids.data(), ids.size(), small.data(), small.size(), &got),
              KL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(got, len);
    EXPECT_EQ(small, std::string(len - 1, 'x'));
}

TEST_F(CApiSizeProtocol, ChatFunctionsAnswerTheSizeOfANullBuffer) {
    const size_t len = expect_size_query([](size_t* len) {
        return kl_chat_template_apply(model, kChat, 2, 1, nullptr, 0, len);
    });
    std::string text(len, '\0');
    size_t got = 0;
    EXPECT_EQ(kl_chat_template_apply(model, kChat, 2, 1, text.data(), len - 1, &got),
              KL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(got, len);
    const size_t n = expect_size_query([](size_t* n) {
        return kl_chat_tokenize(model, kChat, 2, 1, nullptr, 0, n);
    });
    std::vector<int32_t> ids(n);
    EXPECT_EQ(kl_chat_tokenize(model, kChat, 2, 1, ids.data(), n - 1, &got),
              KL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(got, n);
    EXPECT_EQ(kl_chat_tokenize(model, kChat, 2, 1, ids.data(), n, &got), KL_OK);
}

TEST_F(CApiSizeProtocol, StateSaveAnswersTheSizeOfANullBuffer) {
    kl_session* s = nullptr;
    ASSERT_EQ(kl_session_create(model, nullptr, &s), KL_OK);
    const std::vector<int32_t> ids = kl::test::capi_tokenize(model, kText, 1);
    ASSERT_EQ(kl_session_append(s, ids.data(), ids.size(), KL_LOGITS_NONE, nullptr), KL_OK);
    size_t want = 0;
    ASSERT_EQ(kl_session_state_size(s, &want), KL_OK);
    EXPECT_EQ(expect_size_query([&](size_t* n) { return kl_session_state_save(s, nullptr, 0, n); }),
              want);
    std::vector<unsigned char> small(want - 1);
    size_t got = 0;
    EXPECT_EQ(kl_session_state_save(s, small.data(), small.size(), &got), KL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(got, want);
    EXPECT_EQ(kl_session_state_save(s, nullptr, 0, nullptr), KL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(kl_session_state_save(s, nullptr, 8, &got), KL_ERR_INVALID_ARGUMENT);
    kl_session_free(s);
}

}  // namespace
