// The text side of the C API on a model folder with a tokenizer (make_tiny_model's small
// preset): buffer sizing, round trips, the chat format, text pieces from generate and next,
// stop strings across token boundaries.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "capi_test_support.h"
#include "kimi_linear.h"
#include "tiny_model.h"

namespace {

using kl::test::expect_failure;

struct CApiText : ::testing::Test {
    static void SetUpTestSuite() {
        const std::string dir = kl::test::tiny_model_dir("--preset small --seed 7");
        ASSERT_EQ(kl_model_load(dir.c_str(), nullptr, &model), KL_OK) << kl_last_error();
    }
    static void TearDownTestSuite() { kl_model_free(model), model = nullptr; }

    static std::vector<int32_t> tokenize(const std::string& text, int parse_special = 1) {
        return kl::test::capi_tokenize(model, text, parse_special);
    }
    static std::string detokenize(const std::vector<int32_t>& ids) {
        size_t len = 0;
        kl_detokenize(model, ids.data(), ids.size(), nullptr, 0, &len);
        std::string text(len, '\0');
        EXPECT_EQ(kl_detokenize(model, ids.data(), ids.size(), text.data(), len, &len), KL_OK)
            << kl_last_error();
        return text;
    }
    kl_session* session_with(const std::string& prompt) {
        kl_session* s = nullptr;
        EXPECT_EQ(kl_session_create(model, nullptr, &s), KL_OK);
        const std::vector<int32_t> ids = tokenize(prompt);
        EXPECT_EQ(kl_session_append(s, ids.data(), ids.size(), KL_LOGITS_NONE, nullptr), KL_OK);
        return s;
    }

    static kl_model* model;
};
kl_model* CApiText::model = nullptr;

// What a generate call streamed.
struct Streamed {
    std::vector<int32_t> tokens;
    std::string text;
    int untokened_calls = 0;
};

int collect(void* user, int32_t token, const char* piece, size_t len) {
    auto* s = static_cast<Streamed*>(user);
    if (token == KL_NO_TOKEN)
        ++s->untokened_calls;
    else
        s->tokens.push_back(token);
    EXPECT_NE(piece, nullptr);
    EXPECT_EQ(piece[len], '\0');
    s->text.append(piece, len);
    return 0;
}

TEST_F(CApiText, TokenizeAndDetokenizeRoundTripWithSizing) {
    const std::string text = "Hello, world! It's 2026. \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x92\xBB\r\n";
    size_t n = 0;
    int32_t small[2];
    expect_failure(kl_tokenize(model, text.data(), text.size(), 0, small, 2, &n),
                   KL_ERR_INVALID_ARGUMENT, "room for 2 tokens");
    const std::vector<int32_t> ids = tokenize(text, 0);
    EXPECT_EQ(n, ids.size());
    EXPECT_GT(ids.size(), 2u);
    EXPECT_EQ(detokenize(ids), text);

    size_t len = 0;
    char buf[4];
    expect_failure(kl_detokenize(model, ids.data(), ids.size(), buf, sizeof(buf), &len),
                   KL_ERR_INVALID_ARGUMENT, "room for 4 bytes");
    EXPECT_EQ(len, text.size());
    std::string roomy(text.size() + 1, 'x');
    ASSERT_EQ(kl_detokenize(model, ids.data(), ids.size(), roomy.data(), roomy.size(), &len), KL_OK);
    EXPECT_EQ(roomy.back(), '\0');  // NUL-terminated when there is room

    const int32_t bad[] = {ids[0], 99999};
    expect_failure(kl_detokenize(model, bad, 2, roomy.data(), roomy.size(), &len),
                   KL_ERR_INVALID_ARGUMENT, "token 99999");
    expect_failure(kl_tokenize(model, nullptr, 3, 0, small, 2, &n), KL_ERR_INVALID_ARGUMENT, "text");
    EXPECT_EQ(kl_tokenize(model, nullptr, 0, 0, nullptr, 0, &n), KL_OK);
    EXPECT_EQ(n, 0u);
}

TEST_F(CApiText, AddedTokensAndModelInfo) {
    struct kl_model_info info = {};
    info.struct_size = sizeof(info);
    ASSERT_EQ(kl_model_info(model, &info), KL_OK);
    EXPECT_GE(info.bos_token, 0);
    EXPECT_GE(info.eos_token, 0);
    EXPECT_EQ(tokenize("[EOS]"), (std::vector<int32_t>{info.eos_token}));
    EXPECT_GT(tokenize("[EOS]", 0).size(), 1u);
    EXPECT_EQ(detokenize({info.bos_token}), "[BOS]");
}

TEST_F(CApiText, ChatTemplateSizingAndRoles) {
    const kl_chat_message msgs[] = {{"user", "Hi"}, {"assistant", "Hello"}};
    size_t len = 0;
    ASSERT_EQ(kl_chat_template_apply(model, msgs, 2, 1, nullptr, 0, &len), KL_OK);  // size query
    std::string text(len, '\0');
    ASSERT_EQ(kl_chat_template_apply(model, msgs, 2, 1, text.data(), len, &len), KL_OK);
    EXPECT_EQ(text,
              "<|im_system|>system<|im_middle|>You are a helpful assistant<|im_end|>"
              "<|im_user|>user<|im_middle|>Hi<|im_end|><|im_assistant|>assistant<|im_middle|>"
              "Hello<|im_end|><|im_assistant|>assistant<|im_middle|>");
    const kl_chat_message bad[] = {{"user", "Hi"}, {"narrator", "x"}};
    expect_failure(kl_chat_template_apply(model, bad, 2, 1, text.data(), len, &len),
                   KL_ERR_INVALID_ARGUMENT, "narrator");
    const kl_chat_message null_content[] = {{"user", nullptr}};
    expect_failure(kl_chat_template_apply(model, null_content, 1, 1, text.data(), len, &len),
                   KL_ERR_INVALID_ARGUMENT, "msgs[0].content");
}

TEST_F(CApiText, GeneratePiecesAreTheTextOfTheTokens) {
    kl_session* s = session_with("The capital of France is");
    kl_generate_params gp;
    kl_generate_params_default(&gp);
    gp.max_new_tokens = 40;
    gp.sampling.temperature = 1.0f;
    gp.sampling.seed = 3;
    Streamed out;
    size_t generated = 0;
    ASSERT_EQ(kl_session_generate(s, &gp, collect, &out, &generated), KL_OK) << kl_last_error();
    EXPECT_EQ(generated, 40u);
    EXPECT_EQ(out.tokens.size(), 40u);
    EXPECT_LE(out.untokened_calls, 1);
    EXPECT_EQ(out.text, detokenize(out.tokens));
    kl_session_free(s);
}

TEST_F(CApiText, StopStringsEndGenerationAcrossTokenBoundaries) {
    kl_generate_params gp;
    kl_generate_params_default(&gp);
    gp.max_new_tokens = 60;
    gp.sampling.temperature = 1.0f;
    gp.sampling.seed = 5;
    Streamed free_run;
    kl_session* s = session_with("Once upon a time");
    ASSERT_EQ(kl_session_generate(s, &gp, collect, &free_run, nullptr), KL_OK);
    kl_session_free(s);
    // A stop string that spans the boundary between two generated tokens.
    std::string before;
    size_t boundary_token = 0;
    for (size_t i = 0; i + 1 < free_run.tokens.size(); ++i) {
        const std::string a = detokenize({free_run.tokens[i]}), b = detokenize({free_run.tokens[i + 1]});
        before += a;
        if (i >= 5 && !a.empty() && !b.empty() && (a.back() & 0xC0) != 0x80 &&
            (static_cast<unsigned char>(b[0]) & 0xC0) != 0x80) {
            boundary_token = i + 1;
            break;
        }
    }
    ASSERT_GT(boundary_token, 0u) << "no clean token boundary in " << free_run.text;
    const std::string a = detokenize({free_run.tokens[boundary_token - 1]});
    const std::string stop = a.substr(a.size() - 1) + detokenize({free_run.tokens[boundary_token]}).substr(0, 1);
    const size_t at = free_run.text.find(stop);
    ASSERT_NE(at, std::string::npos);
    const char* stops[] = {stop.c_str()};
    gp.stop_strings = stops;
    gp.n_stop_strings = 1;
    Streamed stopped;
    size_t generated = 0;
    s = session_with("Once upon a time");
    ASSERT_EQ(kl_session_generate(s, &gp, collect, &stopped, &generated), KL_OK) << kl_last_error();
    EXPECT_EQ(stopped.text, free_run.text.substr(0, at)) << "stop \"" << stop << "\"";
    EXPECT_LE(generated, boundary_token + 1);
    EXPECT_EQ(stopped.untokened_calls, 0);
    uint64_t position = 0;
    kl_session_position(s, &position);
    EXPECT_EQ(position, tokenize("Once upon a time").size() + generated);
    kl_session_free(s);

    const char* empty[] = {""};
    gp.stop_strings = empty;
    s = session_with("x");
    expect_failure(kl_session_generate(s, &gp, collect, &stopped, nullptr), KL_ERR_INVALID_ARGUMENT,
                   "stop_strings[0] is empty");
    const char* invalid[] = {"\xFF"};
    gp.stop_strings = invalid;
    expect_failure(kl_session_generate(s, &gp, collect, &stopped, nullptr), KL_ERR_INVALID_ARGUMENT,
                   "not valid UTF-8");
    kl_session_free(s);
}

TEST_F(CApiText, NextReturnsWholeCharactersAndRejectsSmallBuffers) {
    kl_session* s = session_with("Hello");
    kl_sampling_params sp;
    kl_sampling_params_default(&sp);
    sp.temperature = 1.0f;
    sp.seed = 9;
    std::vector<int32_t> tokens;
    std::string text;
    for (int i = 0; i < 30; ++i) {
        int32_t token = 0;
        char piece[64];
        size_t len = 0;
        ASSERT_EQ(kl_session_next(s, &sp, &token, piece, sizeof(piece), &len), KL_OK);
        EXPECT_EQ(piece[len], '\0');
        tokens.push_back(token);
        text.append(piece, len);
    }
    // Everything but an unfinished character at the end has come out.
    const std::string all = detokenize(tokens);
    EXPECT_EQ(all.compare(0, text.size(), text), 0);
    EXPECT_LE(all.size() - text.size(), 3u);

    uint64_t before = 0, after = 0;
    kl_session_position(s, &before);
    int32_t token = 0;
    size_t len = 0;
    char tiny[1];
    // A piece of one or more bytes does not fit in one byte with its NUL (empty ones do).
    kl_status status = KL_OK;
    for (int i = 0; i < 20 && status == KL_OK; ++i) {
        kl_session_position(s, &before);
        status = kl_session_next(s, &sp, &token, tiny, sizeof(tiny), &len);
    }
    expect_failure(status, KL_ERR_INVALID_ARGUMENT, "piece has room for 1 bytes");
    kl_session_position(s, &after);
    EXPECT_EQ(after, before);
    EXPECT_GE(len, 1u);
    kl_session_free(s);
}

}  // namespace
