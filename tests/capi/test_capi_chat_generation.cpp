// What a chat app needs from generation (issue 13 item 5), through the C API: the end reason
// of every path (kl_generator_next, kl_session_generate_with_result), log-probabilities
// checked against a direct log-softmax of the session's logits, logit bias and the logits
// processor (a no-op gives the same tokens), the session's token history (kl_session_tokens,
// kept by fork and snapshots), the end-of-turn token, and older callers' struct sizes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "capi_test_support.h"
#include "kimi_linear.h"
#include "tiny_model.h"

namespace {

using kl::test::expect_failure;

struct Step {
    int32_t token;
    kl_end_reason end;
    float logprob;
    std::vector<int32_t> top_tokens;
    std::vector<float> top_logprobs;
};

struct CApiChatGeneration : ::testing::Test {
    static void SetUpTestSuite() {
        const std::string dir = kl::test::tiny_model_dir("--preset small --seed 7");
        ASSERT_EQ(kl_model_load(dir.c_str(), nullptr, &model), KL_OK) << kl_last_error();
        struct kl_model_info info = {};
        info.struct_size = sizeof(info);
        ASSERT_EQ(kl_model_info(model, &info), KL_OK);
        vocab = info.vocab_size;
    }
    static void TearDownTestSuite() { kl_model_free(model), model = nullptr; }

    static std::vector<int32_t> prompt() {
        return kl::test::capi_tokenize(model, "The quick brown fox", 0);
    }
    static kl_session* session_with(const std::vector<int32_t>& ids) {
        kl_session* s = nullptr;
        EXPECT_EQ(kl_session_create(model, nullptr, &s), KL_OK) << kl_last_error();
        EXPECT_EQ(kl_session_append(s, ids.data(), ids.size(), KL_LOGITS_NONE, nullptr), KL_OK);
        return s;
    }
    static std::vector<int32_t> tokens_of(const kl_session* s) {
        size_t n = 0;
        EXPECT_EQ(kl_session_tokens(s, nullptr, 0, &n), KL_OK) << kl_last_error();
        std::vector<int32_t> ids(n);
        EXPECT_EQ(kl_session_tokens(s, ids.data(), n, &n), KL_OK) << kl_last_error();
        return ids;
    }
    static uint64_t position(const kl_session* s) {
        uint64_t p = 0;
        EXPECT_EQ(kl_session_position(s, &p), KL_OK);
        return p;
    }
    static kl_generate_params params(uint32_t max_new, float temperature) {
        kl_generate_params gp;
        kl_generate_params_default(&gp);
        gp.max_new_tokens = max_new;
        gp.sampling.temperature = temperature;
        gp.sampling.seed = 11;
        return gp;
    }
    // Steps a generator to its end (every step, the last included).
    static std::vector<Step> pull(kl_session* s, const kl_generate_params& gp) {
        std::vector<Step> steps;
        kl_generator* g = nullptr;
        EXPECT_EQ(kl_generator_create(s, &gp, &g), KL_OK) << kl_last_error();
        if (!g) return steps;
        kl_generation_step step;
        step.struct_size = sizeof(step);
        for (int i = 0; i < 100; ++i) {
            EXPECT_EQ(kl_generator_next(g, &step), KL_OK) << kl_last_error();
            steps.push_back({step.token, step.end, step.logprob,
                             std::vector<int32_t>(step.top_tokens, step.top_tokens + step.n_top),
                             std::vector<float>(step.top_logprobs, step.top_logprobs + step.n_top)});
            if (step.end != KL_END_NONE) break;
        }
        kl_generator_free(g);
        return steps;
    }
    static std::vector<int32_t> generated(const std::vector<Step>& steps) {
        std::vector<int32_t> ids;
        for (const Step& s : steps)
            if (s.token != KL_NO_TOKEN) ids.push_back(s.token);
        return ids;
    }

    static kl_model* model;
    static uint32_t vocab;
};
kl_model* CApiChatGeneration::model = nullptr;
uint32_t CApiChatGeneration::vocab = 0;

int no_op_processor(void* user, float*, size_t, const int32_t*, size_t) {
    ++*static_cast<int*>(user);
    return 0;
}

TEST_F(CApiChatGeneration, LogprobsAreTheLogSoftmaxOfTheSessionsLogits) {
    const std::vector<int32_t> ids = prompt();
    kl_session* s = session_with(ids);
    kl_generate_params gp = params(6, 0.9f);
    gp.n_top_logprobs = 5;  // implies logprobs
    const std::vector<Step> steps = pull(s, gp);
    ASSERT_EQ(steps.size(), 7u);  // six tokens, then the step that ends at LENGTH
    EXPECT_EQ(steps.back().end, KL_END_LENGTH);
    EXPECT_EQ(steps.back().token, KL_NO_TOKEN);
    EXPECT_EQ(steps.back().top_tokens.size(), 0u);  // a step without a token reports none

    // The reference: the same tokens through a second session, its logits (KL_LOGITS_LAST)
    // before each generated token, log-softmax in double.
    kl_session* ref = nullptr;
    ASSERT_EQ(kl_session_create(model, nullptr, &ref), KL_OK);
    std::vector<float> logits(vocab);
    ASSERT_EQ(kl_session_append(ref, ids.data(), ids.size(), KL_LOGITS_LAST, logits.data()), KL_OK);
    for (size_t i = 0; i + 1 < steps.size(); ++i) {
        const Step& step = steps[i];
        double top = *std::max_element(logits.begin(), logits.end()), sum = 0.0;
        for (float l : logits) sum += std::exp(static_cast<double>(l) - top);
        const double log_total = top + std::log(sum);
        EXPECT_NEAR(step.logprob, logits[step.token] - log_total, 1e-5) << "step " << i;
        ASSERT_EQ(step.top_tokens.size(), 5u);
        std::vector<int32_t> order(vocab);
        for (uint32_t t = 0; t < vocab; ++t) order[t] = static_cast<int32_t>(t);
        std::stable_sort(order.begin(), order.end(),
                         [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
        for (size_t k = 0; k < 5; ++k) {
            EXPECT_EQ(step.top_tokens[k], order[k]) << "step " << i << " rank " << k;
            EXPECT_NEAR(step.top_logprobs[k], logits[order[k]] - log_total, 1e-5);
        }
        EXPECT_LE(step.logprob, 0.0f);
        ASSERT_EQ(kl_session_append(ref, &step.token, 1, KL_LOGITS_LAST, logits.data()), KL_OK);
    }
    kl_session_free(ref);
    kl_session_free(s);
}

TEST_F(CApiChatGeneration, ZeroBiasAndANoOpProcessorGiveTheSameTokens) {
    for (float temperature : {0.0f, 0.8f}) {
        kl_session* plain = session_with(prompt());
        const std::vector<int32_t> want = generated(pull(plain, params(12, temperature)));
        kl_session_free(plain);
        ASSERT_EQ(want.size(), 12u);

        kl_session* hooked = session_with(prompt());
        kl_generate_params gp = params(12, temperature);
        gp.sampling.repetition_penalty = 1.0f;
        const int32_t bias_tokens[] = {want[0], 3};
        const float bias_values[] = {0.0f, 0.0f};
        gp.logit_bias_tokens = bias_tokens;
        gp.logit_bias_values = bias_values;
        gp.n_logit_bias = 2;
        int calls = 0;
        gp.logits_processor = no_op_processor;
        gp.logits_processor_user = &calls;
        gp.logprobs = 1;
        EXPECT_EQ(generated(pull(hooked, gp)), want) << "temperature " << temperature;
        EXPECT_EQ(calls, 12);  // once per sampled token (the LENGTH step samples none)
        kl_session_free(hooked);
    }
}

TEST_F(CApiChatGeneration, LogitBiasBansAndForcesTokens) {
    kl_session* s = session_with(prompt());
    const std::vector<int32_t> greedy = generated(pull(s, params(1, 0.0f)));
    kl_session_free(s);
    ASSERT_EQ(greedy.size(), 1u);

    s = session_with(prompt());
    kl_generate_params gp = params(1, 0.0f);
    const int32_t banned[] = {greedy[0]};
    const float minus_inf[] = {-std::numeric_limits<float>::infinity()};
    gp.logit_bias_tokens = banned;
    gp.logit_bias_values = minus_inf;
    gp.n_logit_bias = 1;
    gp.n_top_logprobs = 3;
    const std::vector<Step> steps = pull(s, gp);
    ASSERT_GE(steps.size(), 1u);
    EXPECT_NE(steps[0].token, greedy[0]);
    // The banned token is out of the distribution the log-probabilities describe.
    EXPECT_EQ(std::count(steps[0].top_tokens.begin(), steps[0].top_tokens.end(), greedy[0]), 0);
    kl_session_free(s);

    s = session_with(prompt());
    const int32_t forced[] = {5};
    const float plus[] = {1000.0f};
    gp.logit_bias_tokens = forced;
    gp.logit_bias_values = plus;
    EXPECT_EQ(generated(pull(s, gp)), std::vector<int32_t>{5});
    kl_session_free(s);
}

struct Recorded {
    std::vector<int32_t> history;
    size_t vocab = 0;
    int calls = 0;
    int stop_at = -1;       // return non-zero on this call
    bool poison = false;    // write a NaN
};

int recording_processor(void* user, float* logits, size_t vocab, const int32_t* history,
                        size_t n_history) {
    auto* r = static_cast<Recorded*>(user);
    r->history.assign(history, history + n_history);
    r->vocab = vocab;
    if (r->poison) logits[1] = std::numeric_limits<float>::quiet_NaN();
    return r->calls++ == r->stop_at ? 1 : 0;
}

TEST_F(CApiChatGeneration, TheProcessorSeesTheHistoryAndCanEndTheGeneration) {
    kl_session* s = session_with(prompt());
    Recorded r;
    r.stop_at = 2;
    kl_generate_params gp = params(10, 0.0f);
    gp.logits_processor = recording_processor;
    gp.logits_processor_user = &r;
    const std::vector<Step> steps = pull(s, gp);
    ASSERT_EQ(steps.size(), 3u);  // two tokens, then the processor's end
    EXPECT_EQ(steps[2].end, KL_END_CALLBACK);
    EXPECT_EQ(steps[2].token, KL_NO_TOKEN);
    EXPECT_EQ(r.vocab, vocab);
    EXPECT_EQ(r.history, tokens_of(s));  // nothing appended by the step it ended
    EXPECT_EQ(position(s), prompt().size() + 2);

    // kl_session_generate_with_result reports the same end.
    Recorded again;
    again.stop_at = 0;
    gp.logits_processor_user = &again;
    kl_generate_result result;
    result.struct_size = sizeof(result);
    ASSERT_EQ(kl_session_generate_with_result(s, &gp, nullptr, nullptr, &result), KL_OK);
    EXPECT_EQ(result.end, KL_END_CALLBACK);
    EXPECT_EQ(result.n_generated, 0u);
    kl_session_free(s);
}

TEST_F(CApiChatGeneration, ANaNFromTheProcessorFailsTheStepAndChangesNothing) {
    kl_session* s = session_with(prompt());
    Recorded r;
    r.poison = true;
    kl_generate_params gp = params(4, 0.0f);
    gp.logits_processor = recording_processor;
    gp.logits_processor_user = &r;
    kl_generator* g = nullptr;
    ASSERT_EQ(kl_generator_create(s, &gp, &g), KL_OK);
    kl_generation_step step;
    step.struct_size = sizeof(step);
    expect_failure(kl_generator_next(g, &step), KL_ERR_INVALID_ARGUMENT, "token 1's logit is nan");
    EXPECT_EQ(position(s), prompt().size());
    r.poison = false;  // the step may be retried
    EXPECT_EQ(kl_generator_next(g, &step), KL_OK) << kl_last_error();
    EXPECT_EQ(position(s), prompt().size() + 1);
    kl_generator_free(g);
    kl_session_free(s);
}

int end_at_once(void*, int32_t, const char*, size_t) { return 1; }

TEST_F(CApiChatGeneration, EveryPathSaysWhyItEnded) {
    kl_session* s = session_with(prompt());
    kl_generate_result result;
    result.struct_size = sizeof(result);
    kl_generate_params gp = params(3, 0.0f);
    ASSERT_EQ(kl_session_generate_with_result(s, &gp, nullptr, nullptr, &result), KL_OK);
    EXPECT_EQ(result.end, KL_END_LENGTH);
    EXPECT_EQ(result.n_generated, 3u);

    // A stop token: the greedy next token.
    kl_session* f = nullptr;
    ASSERT_EQ(kl_session_fork(s, &f), KL_OK);
    const std::vector<int32_t> next = generated(pull(f, params(1, 0.0f)));
    kl_session_free(f);
    gp.stop_tokens = next.data();
    gp.n_stop_tokens = 1;
    ASSERT_EQ(kl_session_generate_with_result(s, &gp, nullptr, nullptr, &result), KL_OK);
    EXPECT_EQ(result.end, KL_END_STOP_TOKEN);
    EXPECT_EQ(result.n_generated, 1u);
    gp.n_stop_tokens = 0;

    ASSERT_EQ(kl_session_generate_with_result(s, &gp, end_at_once, nullptr, &result), KL_OK);
    EXPECT_EQ(result.end, KL_END_CALLBACK);
    EXPECT_EQ(result.n_generated, 1u);

    const uint64_t before = position(s);
    kl_session_cancel(s);  // kl_session_generate keeps a pending cancel: it stops the call
    ASSERT_EQ(kl_session_generate_with_result(s, &gp, nullptr, nullptr, &result),
              KL_ERR_CANCELLED);
    EXPECT_EQ(result.end, KL_END_CANCELLED);
    EXPECT_EQ(result.n_generated, 0u);
    EXPECT_EQ(position(s), before);

    gp.sampling.top_p = 2.0f;
    expect_failure(kl_session_generate_with_result(s, &gp, nullptr, nullptr, &result),
                   KL_ERR_INVALID_ARGUMENT, "top_p");
    EXPECT_EQ(result.end, KL_END_ERROR);
    gp.sampling.top_p = 1.0f;

    kl_generate_result short_result;
    short_result.struct_size = 4;
    short_result.end = KL_END_NONE;
    expect_failure(kl_session_generate_with_result(s, &gp, nullptr, nullptr, &short_result),
                   KL_ERR_INVALID_ARGUMENT, "kl_generate_result.struct_size");
    EXPECT_EQ(short_result.end, KL_END_NONE);  // left alone
    EXPECT_EQ(position(s), before);
    // NULL result: kl_session_generate.
    EXPECT_EQ(kl_session_generate_with_result(s, &gp, nullptr, nullptr, nullptr), KL_OK);
    EXPECT_EQ(position(s), before + 3);
    kl_session_free(s);
}

TEST_F(CApiChatGeneration, ACancelledStepSaysCancelledAndTheGeneratorGoesOn) {
    kl_session* s = session_with(prompt());
    kl_generate_params gp = params(2, 0.0f);
    kl_generator* g = nullptr;
    ASSERT_EQ(kl_generator_create(s, &gp, &g), KL_OK);
    kl_generation_step step;
    step.struct_size = sizeof(step);
    kl_session_cancel(s);
    ASSERT_EQ(kl_generator_next(g, &step), KL_ERR_CANCELLED);
    EXPECT_EQ(step.end, KL_END_CANCELLED);
    EXPECT_EQ(step.token, KL_NO_TOKEN);
    EXPECT_EQ(step.piece_len, 0u);
    EXPECT_EQ(step.n_generated, 0u);
    EXPECT_EQ(position(s), prompt().size());
    ASSERT_EQ(kl_generator_next(g, &step), KL_OK);
    EXPECT_EQ(step.end, KL_END_NONE);
    EXPECT_NE(step.token, KL_NO_TOKEN);
    kl_generator_free(g);
    kl_session_free(s);
}

TEST_F(CApiChatGeneration, BadGenerationParamsAreRefusedAndChangeNothing) {
    kl_session* s = session_with(prompt());
    kl_generator* g = nullptr;
    kl_generate_params gp = params(2, 0.0f);
    const int32_t outside[] = {static_cast<int32_t>(vocab)};
    const float one[] = {1.0f};
    gp.logit_bias_tokens = outside;
    gp.logit_bias_values = one;
    gp.n_logit_bias = 1;
    expect_failure(kl_generator_create(s, &gp, &g), KL_ERR_INVALID_ARGUMENT, "logit_bias[0]");
    EXPECT_EQ(g, nullptr);
    const int32_t fine[] = {3};
    gp.logit_bias_tokens = fine;
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
        const float values[] = {bad};
        gp.logit_bias_values = values;
        expect_failure(kl_generator_create(s, &gp, &g), KL_ERR_INVALID_ARGUMENT, "logit_bias[0]");
    }
    gp.logit_bias_values = nullptr;
    expect_failure(kl_generator_create(s, &gp, &g), KL_ERR_INVALID_ARGUMENT, "logit_bias_values");
    gp.n_logit_bias = 0;
    gp.n_top_logprobs = KL_MAX_TOP_LOGPROBS + 1;
    expect_failure(kl_generator_create(s, &gp, &g), KL_ERR_INVALID_ARGUMENT, "n_top_logprobs");
    gp.n_top_logprobs = KL_MAX_TOP_LOGPROBS;
    ASSERT_EQ(kl_generator_create(s, &gp, &g), KL_OK);
    kl_generator_free(g);
    EXPECT_EQ(position(s), prompt().size());

    // Every token banned: the step fails, nothing appended.
    std::vector<int32_t> all(vocab);
    std::vector<float> bans(vocab, -std::numeric_limits<float>::infinity());
    for (uint32_t t = 0; t < vocab; ++t) all[t] = static_cast<int32_t>(t);
    gp.logit_bias_tokens = all.data();
    gp.logit_bias_values = bans.data();
    gp.n_logit_bias = vocab;
    size_t n = 0;
    expect_failure(kl_session_generate(s, &gp, nullptr, nullptr, &n), KL_ERR_INVALID_ARGUMENT,
                   "every token's logit is -inf");
    EXPECT_EQ(n, 0u);
    EXPECT_EQ(position(s), prompt().size());
    kl_session_free(s);
}

TEST_F(CApiChatGeneration, OlderCallersStructsStillWork) {
    kl_session* s = session_with(prompt());
    kl_session* t = session_with(prompt());
    // A first-release kl_generate_params: the appended fields read as defaults, even when
    // the bytes after the caller's struct hold garbage.
    kl_generate_params old = params(4, 0.0f);
    std::memset(reinterpret_cast<char*>(&old) + offsetof(kl_generate_params, logprobs), 0xff,
                sizeof(old) - offsetof(kl_generate_params, logprobs));
    old.struct_size = offsetof(kl_generate_params, logprobs);
    kl_generator* g = nullptr;
    ASSERT_EQ(kl_generator_create(s, &old, &g), KL_OK) << kl_last_error();
    // A first-release kl_generation_step: nothing written past it.
    struct {
        kl_generation_step step;
        char canary[8];
    } old_step;
    std::memset(&old_step, 0x5a, sizeof(old_step));
    old_step.step.struct_size = offsetof(kl_generation_step, logprob);
    std::vector<int32_t> pulled;
    for (int i = 0; i < 4; ++i) {
        ASSERT_EQ(kl_generator_next(g, &old_step.step), KL_OK) << kl_last_error();
        pulled.push_back(old_step.step.token);
        const unsigned char* tail = reinterpret_cast<const unsigned char*>(&old_step.step.logprob);
        for (size_t b = 0; b < sizeof(old_step) - offsetof(kl_generation_step, logprob); ++b)
            ASSERT_EQ(tail[b], 0x5a) << "byte " << b << " past the old struct was written";
    }
    kl_generator_free(g);
    EXPECT_EQ(pulled, generated(pull(t, params(4, 0.0f))));
    old.struct_size = offsetof(kl_generate_params, logprobs) - 1;
    expect_failure(kl_generator_create(s, &old, &g), KL_ERR_INVALID_ARGUMENT,
                   "kl_generate_params.struct_size");
    kl_session_free(t);
    kl_session_free(s);
}

// Bytes [from, sizeof p) of a struct the test filled with 0x6b still hold it: the call under
// test wrote nothing past `from`.
template <typename Params>
void expect_untouched_past(const Params& p, size_t from) {
    const unsigned char* bytes = reinterpret_cast<const unsigned char*>(&p);
    for (size_t b = from; b < sizeof(p); ++b) ASSERT_EQ(bytes[b], 0x6b) << "byte " << b;
}

TEST_F(CApiChatGeneration, TheDefaultsFunctionNeverOverrunsAnOlderCallersStruct) {
    const size_t first = offsetof(kl_generate_params, logprobs);
    // The exported symbol, as a binary built against the first release calls it.
    kl_generate_params p;
    std::memset(&p, 0x6b, sizeof(p));
    (kl_generate_params_default)(&p);
    EXPECT_EQ(p.struct_size, first);
    EXPECT_EQ(p.max_new_tokens, 128u);
    expect_untouched_past(p, first);
    // The header's name: every field, the appended ones zero (generation as before).
    std::memset(&p, 0x6b, sizeof(p));
    kl_generate_params_default(&p);
    EXPECT_EQ(p.struct_size, sizeof(p));
    EXPECT_EQ(p.logprobs, 0);
    EXPECT_EQ(p.n_logit_bias, 0u);
    EXPECT_EQ(p.logits_processor, nullptr);
    expect_failure(kl_generate_params_init(&p, first - 1), KL_ERR_INVALID_ARGUMENT, "struct_size");
    expect_failure(kl_generate_params_init(nullptr, sizeof(p)), KL_ERR_INVALID_ARGUMENT, "NULL");
}

TEST_F(CApiChatGeneration, TheModelDefaultsFunctionNeverOverrunsAnOlderCallersStruct) {
    const size_t first = offsetof(kl_model_params, max_batch);
    // The exported symbol, as a binary built against the first release calls it.
    kl_model_params p;
    std::memset(&p, 0x6b, sizeof(p));
    (kl_model_params_default)(&p);
    EXPECT_EQ(p.struct_size, first);
    EXPECT_EQ(p.device, KL_DEVICE_AUTO);
    EXPECT_EQ(p.progress_cb, nullptr);
    expect_untouched_past(p, first);
    // The header's name: every field, the appended ones zero (one device, as stored).
    std::memset(&p, 0x6b, sizeof(p));
    kl_model_params_default(&p);
    EXPECT_EQ(p.struct_size, sizeof(p));
    EXPECT_EQ(p.max_batch, 0u);
    EXPECT_EQ(p.weight_format, KL_WEIGHTS_AUTO);
    EXPECT_EQ(p.n_devices, 0u);
    EXPECT_EQ(p.devices[KL_MAX_DEVICES - 1], 0);
    // A struct of an intermediate release (up to weight_format): filled to its size only.
    const size_t middle = offsetof(kl_model_params, n_devices);
    std::memset(&p, 0x6b, sizeof(p));
    ASSERT_EQ(kl_model_params_init(&p, middle), KL_OK);
    EXPECT_EQ(p.struct_size, middle);
    EXPECT_EQ(p.weight_format, KL_WEIGHTS_AUTO);
    expect_untouched_past(p, middle);
    expect_failure(kl_model_params_init(&p, first - 1), KL_ERR_INVALID_ARGUMENT, "struct_size");
    expect_failure(kl_model_params_init(nullptr, sizeof(p)), KL_ERR_INVALID_ARGUMENT, "NULL");
}

TEST_F(CApiChatGeneration, TheTokenHistoryIsKeptByForkAndSnapshots) {
    const std::vector<int32_t> ids = prompt();
    kl_session* s = session_with(ids);
    const std::vector<int32_t> gen = generated(pull(s, params(5, 0.7f)));
    std::vector<int32_t> want = ids;
    want.insert(want.end(), gen.begin(), gen.end());
    EXPECT_EQ(tokens_of(s), want);

    kl_session* f = nullptr;
    ASSERT_EQ(kl_session_fork(s, &f), KL_OK);
    EXPECT_EQ(tokens_of(f), want);
    size_t size = 0;
    ASSERT_EQ(kl_session_state_size(s, &size), KL_OK);
    std::vector<unsigned char> snap(size);
    ASSERT_EQ(kl_session_state_save(s, snap.data(), size, &size), KL_OK);
    kl_session* loaded = nullptr;
    ASSERT_EQ(kl_session_create(model, nullptr, &loaded), KL_OK);
    ASSERT_EQ(kl_session_state_load(loaded, snap.data(), size), KL_OK);
    EXPECT_EQ(tokens_of(loaded), want);

    // The size protocol; a buffer too small or bad arguments change nothing.
    std::vector<int32_t> small(want.size() - 1, -3);
    size_t n = 0;
    EXPECT_EQ(kl_session_tokens(s, small.data(), small.size(), &n), KL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(n, want.size());
    EXPECT_EQ(small, std::vector<int32_t>(want.size() - 1, -3));
    expect_failure(kl_session_tokens(nullptr, nullptr, 0, &n), KL_ERR_INVALID_ARGUMENT, "session");
    expect_failure(kl_session_tokens(s, nullptr, 0, nullptr), KL_ERR_INVALID_ARGUMENT, "n is NULL");
    expect_failure(kl_session_tokens(s, nullptr, 4, &n), KL_ERR_INVALID_ARGUMENT, "cap > 0");
    EXPECT_EQ(tokens_of(s), want);

    ASSERT_EQ(kl_session_reset(s), KL_OK);
    EXPECT_EQ(tokens_of(s), std::vector<int32_t>{});
    kl_session_free(loaded);
    kl_session_free(f);
    kl_session_free(s);
}

TEST_F(CApiChatGeneration, TheEndOfTurnTokenIsImEnd) {
    struct kl_model_info info = {};
    info.struct_size = sizeof(info);
    ASSERT_EQ(kl_model_info(model, &info), KL_OK);
    EXPECT_EQ(kl::test::capi_tokenize(model, "<|im_end|>", 1),
              std::vector<int32_t>{info.eot_token});
    // An older caller's struct ends before eot_token: it is not written.
    struct kl_model_info old;
    std::memset(&old, 0x7f, sizeof(old));
    old.struct_size = offsetof(struct kl_model_info, eot_token);
    ASSERT_EQ(kl_model_info(model, &old), KL_OK);
    EXPECT_EQ(old.eot_token, 0x7f7f7f7f);
    // No tokenizer: no end of turn.
    kl_model* bare = nullptr;
    ASSERT_EQ(kl_model_load(kl::test::tiny_model_dir().c_str(), nullptr, &bare), KL_OK);
    ASSERT_EQ(kl_model_info(bare, &info), KL_OK);
    EXPECT_EQ(info.eot_token, -1);
    kl_model_free(bare);
}

}  // namespace
