// The pull-style generator (kl_generator_*): the same tokens and text as kl_session_generate's
// callbacks, each end reason on the step the header names, argument checks, and failures
// (cancel, a full context) that change nothing and leave the step to be retried.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "capi_test_support.h"
#include "kimi_linear.h"
#include "tiny_model.h"

namespace {

using kl::test::expect_failure;

// What a generation released, step by step or callback by callback.
struct Released {
    std::vector<int32_t> tokens;  // every token appended, stop token included
    std::string text;
    std::vector<kl_end_reason> ends;  // one per step (generator runs only)
    size_t generated = 0;
};

int collect(void* user, int32_t token, const char* piece, size_t len) {
    auto* run = static_cast<Released*>(user);
    if (token != KL_NO_TOKEN) run->tokens.push_back(token);
    run->text.append(piece, len);
    return 0;
}

struct CApiGenerator : ::testing::Test {
    static void SetUpTestSuite() {
        const std::string dir = kl::test::tiny_model_dir("--preset small --seed 7");
        ASSERT_EQ(kl_model_load(dir.c_str(), nullptr, &model), KL_OK) << kl_last_error();
    }
    static void TearDownTestSuite() { kl_model_free(model), model = nullptr; }

    kl_session* session_with(const std::string& prompt, uint64_t max_context = 0) {
        std::vector<int32_t> ids(prompt.size() + 8);
        size_t n = 0;
        EXPECT_EQ(kl_tokenize(model, prompt.data(), prompt.size(), 1, ids.data(), ids.size(), &n),
                  KL_OK);
        kl_session_params sp;
        kl_session_params_default(&sp);
        sp.max_context = max_context;
        kl_session* s = nullptr;
        EXPECT_EQ(kl_session_create(model, &sp, &s), KL_OK) << kl_last_error();
        EXPECT_EQ(kl_session_append(s, ids.data(), n, KL_LOGITS_NONE, nullptr), KL_OK);
        return s;
    }
    static kl_generate_params params(uint32_t max_new, uint64_t seed) {
        kl_generate_params gp;
        kl_generate_params_default(&gp);
        gp.max_new_tokens = max_new;
        gp.sampling.temperature = 1.0f;
        gp.sampling.seed = seed;
        return gp;
    }
    static uint64_t position(const kl_session* s) {
        uint64_t p = 0;
        EXPECT_EQ(kl_session_position(s, &p), KL_OK);
        return p;
    }
    // Steps a generator to its end (at most `limit` steps).
    static Released pull(kl_session* s, const kl_generate_params& gp, size_t limit = 1000) {
        Released run;
        kl_generator* g = nullptr;
        EXPECT_EQ(kl_generator_create(s, &gp, &g), KL_OK) << kl_last_error();
        kl_generation_step step;
        step.struct_size = sizeof(step);
        for (size_t i = 0; i < limit; ++i) {
            EXPECT_EQ(kl_generator_next(g, &step), KL_OK) << kl_last_error();
            EXPECT_NE(step.piece, nullptr);
            EXPECT_EQ(step.piece[step.piece_len], '\0');
            if (step.token != KL_NO_TOKEN) run.tokens.push_back(step.token);
            run.text.append(step.piece, step.piece_len);
            run.ends.push_back(step.end);
            run.generated = step.n_generated;
            if (step.end != KL_END_NONE) break;
        }
        kl_generator_free(g);
        return run;
    }
    static Released callback_run(kl_session* s, const kl_generate_params& gp) {
        Released run;
        EXPECT_EQ(kl_session_generate(s, &gp, collect, &run, &run.generated), KL_OK)
            << kl_last_error();
        return run;
    }

    static kl_model* model;
};
kl_model* CApiGenerator::model = nullptr;

TEST_F(CApiGenerator, LengthEndsOnTheStepAfterTheLastToken) {
    kl_session* s = session_with("The capital of France is");
    const uint64_t start = position(s);
    const Released run = pull(s, params(12, 3));
    ASSERT_EQ(run.ends.size(), 13u);
    for (size_t i = 0; i < 12; ++i) EXPECT_EQ(run.ends[i], KL_END_NONE) << "step " << i;
    EXPECT_EQ(run.ends.back(), KL_END_LENGTH);
    EXPECT_EQ(run.tokens.size(), 12u);
    EXPECT_EQ(run.generated, 12u);
    EXPECT_EQ(position(s), start + 12);
    kl_session_free(s);

    // The same as kl_session_generate's callbacks, token for token and byte for byte.
    s = session_with("The capital of France is");
    const Released called = callback_run(s, params(12, 3));
    EXPECT_EQ(called.tokens, run.tokens);
    EXPECT_EQ(called.text, run.text);
    EXPECT_EQ(called.generated, 12u);
    kl_session_free(s);
}

TEST_F(CApiGenerator, StopTokenIsAppendedAndEndsWithoutItsText) {
    kl_session* s = session_with("Once upon a time");
    const Released free_run = pull(s, params(30, 5));
    kl_session_free(s);
    ASSERT_GE(free_run.tokens.size(), 10u);
    const int32_t stop = free_run.tokens[6];
    size_t first = 0;
    while (free_run.tokens[first] != stop) ++first;

    kl_generate_params gp = params(30, 5);
    gp.stop_tokens = &stop;
    gp.n_stop_tokens = 1;
    s = session_with("Once upon a time");
    const uint64_t start = position(s);
    const Released run = pull(s, gp);
    EXPECT_EQ(run.ends.back(), KL_END_STOP_TOKEN);
    ASSERT_EQ(run.tokens.size(), first + 1);
    EXPECT_EQ(run.tokens.back(), stop);
    EXPECT_EQ(run.generated, first + 1);
    EXPECT_EQ(position(s), start + first + 1);
    kl_session_free(s);

    s = session_with("Once upon a time");
    const Released called = callback_run(s, gp);
    EXPECT_EQ(called.text, run.text);
    EXPECT_EQ(called.generated, first + 1);
    // The callback never sees the stop token.
    EXPECT_EQ(called.tokens, std::vector<int32_t>(run.tokens.begin(), run.tokens.end() - 1));
    kl_session_free(s);
}

TEST_F(CApiGenerator, StopStringEndsOnTheStepThatCompletesIt) {
    kl_session* s = session_with("Once upon a time");
    const Released free_run = pull(s, params(40, 11));
    kl_session_free(s);
    ASSERT_GE(free_run.text.size(), 12u);
    // A stop string from the middle of the text: the output is the text before its first
    // occurrence.
    const std::string stop = free_run.text.substr(free_run.text.size() / 2, 2);
    const char* stops[] = {stop.c_str()};
    kl_generate_params gp = params(40, 11);
    gp.stop_strings = stops;
    gp.n_stop_strings = 1;
    s = session_with("Once upon a time");
    const Released run = pull(s, gp);
    EXPECT_EQ(run.ends.back(), KL_END_STOP_STRING);
    EXPECT_EQ(run.text, free_run.text.substr(0, free_run.text.find(stop)));
    EXPECT_EQ(run.tokens.size(), run.generated);
    kl_session_free(s);

    s = session_with("Once upon a time");
    const Released called = callback_run(s, gp);
    EXPECT_EQ(called.text, run.text);
    EXPECT_EQ(called.tokens, run.tokens);
    kl_session_free(s);
}

TEST_F(CApiGenerator, AfterTheEndEveryStepRepeatsIt) {
    kl_session* s = session_with("Hi");
    kl_generator* g = nullptr;
    const kl_generate_params gp = params(1, 1);
    ASSERT_EQ(kl_generator_create(s, &gp, &g), KL_OK);
    kl_generation_step step;
    step.struct_size = sizeof(step);
    ASSERT_EQ(kl_generator_next(g, &step), KL_OK);
    EXPECT_NE(step.token, KL_NO_TOKEN);
    ASSERT_EQ(kl_generator_next(g, &step), KL_OK);
    EXPECT_EQ(step.end, KL_END_LENGTH);
    const uint64_t end_position = position(s);
    for (int i = 0; i < 3; ++i) {
        ASSERT_EQ(kl_generator_next(g, &step), KL_OK);
        EXPECT_EQ(step.token, KL_NO_TOKEN);
        EXPECT_EQ(step.piece_len, 0u);
        EXPECT_STREQ(step.piece, "");
        EXPECT_EQ(step.end, KL_END_LENGTH);
        EXPECT_EQ(step.n_generated, 1u);
    }
    EXPECT_EQ(position(s), end_position);
    kl_generator_free(g);
    kl_generator_free(nullptr);
    kl_session_free(s);
}

TEST_F(CApiGenerator, BadArgumentsCreateNothing) {
    kl_session* s = session_with("Hi");
    kl_generator* g = reinterpret_cast<kl_generator*>(&s);  // must be reset to NULL
    kl_generate_params gp = params(4, 1);
    expect_failure(kl_generator_create(nullptr, &gp, &g), KL_ERR_INVALID_ARGUMENT,
                   "session is NULL");
    EXPECT_EQ(g, nullptr);
    expect_failure(kl_generator_create(s, &gp, nullptr), KL_ERR_INVALID_ARGUMENT, "out is NULL");
    const char* empty[] = {""};
    gp.stop_strings = empty;
    gp.n_stop_strings = 1;
    expect_failure(kl_generator_create(s, &gp, &g), KL_ERR_INVALID_ARGUMENT,
                   "stop_strings[0] is empty");
    gp.stop_strings = nullptr;
    expect_failure(kl_generator_create(s, &gp, &g), KL_ERR_INVALID_ARGUMENT,
                   "stop_strings is NULL");
    gp = params(4, 1);
    gp.n_stop_tokens = 2;
    expect_failure(kl_generator_create(s, &gp, &g), KL_ERR_INVALID_ARGUMENT, "stop_tokens is NULL");
    gp = params(4, 1);
    gp.sampling.top_p = 2.0f;
    expect_failure(kl_generator_create(s, &gp, &g), KL_ERR_INVALID_ARGUMENT, "top_p");
    gp = params(4, 1);
    gp.struct_size = 4;
    expect_failure(kl_generator_create(s, &gp, &g), KL_ERR_INVALID_ARGUMENT, "struct_size");
    EXPECT_EQ(g, nullptr);

    // NULL params: the defaults (greedy, 128 tokens).
    const uint64_t before = position(s);
    ASSERT_EQ(kl_generator_create(s, nullptr, &g), KL_OK) << kl_last_error();
    kl_generation_step step;
    step.struct_size = 4;
    expect_failure(kl_generator_next(g, &step), KL_ERR_INVALID_ARGUMENT, "struct_size");
    expect_failure(kl_generator_next(g, nullptr), KL_ERR_INVALID_ARGUMENT, "out is NULL");
    expect_failure(kl_generator_next(nullptr, &step), KL_ERR_INVALID_ARGUMENT,
                   "generator is NULL");
    EXPECT_EQ(position(s), before);  // the failed steps appended nothing
    kl_generator_free(g);

    // A session without logits has nothing to sample from.
    kl_session* fresh = nullptr;
    ASSERT_EQ(kl_session_create(model, nullptr, &fresh), KL_OK);
    ASSERT_EQ(kl_generator_create(fresh, nullptr, &g), KL_OK);
    step.struct_size = sizeof(step);
    expect_failure(kl_generator_next(g, &step), KL_ERR_INVALID_ARGUMENT, "append a prompt first");
    kl_generator_free(g);
    kl_session_free(fresh);
    kl_session_free(s);
}

TEST_F(CApiGenerator, CancelStopsOneStepAndIsConsumedByIt) {
    kl_session* s = session_with("Once upon a time");
    kl_session* twin = nullptr;
    ASSERT_EQ(kl_session_fork(s, &twin), KL_OK);
    // A cancel requested before the generator exists is dropped.
    kl_session_cancel(s);
    kl_generator* g = nullptr;
    const kl_generate_params gp = params(6, 2);
    ASSERT_EQ(kl_generator_create(s, &gp, &g), KL_OK);
    kl_generation_step step;
    step.struct_size = sizeof(step);
    ASSERT_EQ(kl_generator_next(g, &step), KL_OK) << kl_last_error();
    std::vector<int32_t> tokens = {step.token};
    // A cancel between two steps stops the next one, which changes nothing ...
    const uint64_t before = position(s);
    kl_session_cancel(s);
    expect_failure(kl_generator_next(g, &step), KL_ERR_CANCELLED, "cancelled");
    EXPECT_EQ(position(s), before);
    // ... and is consumed: the step runs when called again, as if never cancelled.
    do {
        ASSERT_EQ(kl_generator_next(g, &step), KL_OK) << kl_last_error();
        if (step.token != KL_NO_TOKEN) tokens.push_back(step.token);
    } while (step.end == KL_END_NONE);
    kl_generator_free(g);
    EXPECT_EQ(tokens, pull(twin, gp).tokens);
    kl_session_free(twin);
    kl_session_free(s);
}

TEST_F(CApiGenerator, AFullContextFailsTheStepAndChangesNothing) {
    kl_session* s = session_with("Hi there", 6);
    const uint64_t start = position(s);
    ASSERT_LT(start, 6u);
    kl_generator* g = nullptr;
    const kl_generate_params gp = params(20, 4);
    ASSERT_EQ(kl_generator_create(s, &gp, &g), KL_OK);
    kl_generation_step step;
    step.struct_size = sizeof(step);
    for (uint64_t p = start; p < 6; ++p) ASSERT_EQ(kl_generator_next(g, &step), KL_OK);
    const uint32_t generated = step.n_generated;
    for (int i = 0; i < 2; ++i) {
        expect_failure(kl_generator_next(g, &step), KL_ERR_CONTEXT_FULL, "max_context 6");
        EXPECT_EQ(position(s), 6u);
    }
    kl_generator_free(g);
    EXPECT_EQ(generated, 6u - start);
    kl_session_free(s);
}

// Without a tokenizer the pieces are empty, never NULL; the tokens still come.
TEST(CApiGeneratorNoTokenizer, PiecesAreEmptyAndTokensStillCome) {
    kl_model* model = nullptr;
    ASSERT_EQ(kl_model_load(kl::test::tiny_model_dir().c_str(), nullptr, &model), KL_OK);
    kl_session* s = nullptr;
    ASSERT_EQ(kl_session_create(model, nullptr, &s), KL_OK);
    const int32_t prompt[] = {1, 2, 3};
    ASSERT_EQ(kl_session_append(s, prompt, 3, KL_LOGITS_NONE, nullptr), KL_OK);
    kl_generate_params gp;
    kl_generate_params_default(&gp);
    gp.max_new_tokens = 5;
    kl_generator* g = nullptr;
    ASSERT_EQ(kl_generator_create(s, &gp, &g), KL_OK);
    kl_generation_step step;
    step.struct_size = sizeof(step);
    int tokens = 0;
    do {
        ASSERT_EQ(kl_generator_next(g, &step), KL_OK) << kl_last_error();
        ASSERT_NE(step.piece, nullptr);
        EXPECT_EQ(step.piece_len, 0u);
        tokens += step.token != KL_NO_TOKEN;
    } while (step.end == KL_END_NONE);
    EXPECT_EQ(tokens, 5);
    EXPECT_EQ(step.end, KL_END_LENGTH);
    kl_generator_free(g);
    kl_session_free(s);
    kl_model_free(model);
}

}  // namespace
