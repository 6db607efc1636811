// Batched decode through the C API (docs/design/batching.md): kl_batch_next / kl_batch_append
// give each session what its own kl_session_next / kl_session_append would, in one pass; a
// failed batch changes no session; and a model loaded with max_batch > 1 batches the steps
// that threads run on their own sessions without changing any of their tokens.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <string>
#include <thread>
#include <vector>

#include "capi_test_support.h"
#include "kimi_linear.h"
#include "tiny_model.h"

namespace {

using kl::test::expect_failure;

kl_model* load(uint32_t max_batch = 0, uint32_t wait_us = 0) {
    kl_model_params mp;
    kl_model_params_default(&mp);
    mp.device = KL_DEVICE_CPU;
    mp.n_threads = 2;
    mp.max_batch = max_batch;
    mp.batch_wait_us = wait_us;
    kl_model* model = nullptr;
    EXPECT_EQ(kl_model_load(kl::test::tiny_model_dir().c_str(), &mp, &model), KL_OK)
        << kl_last_error();
    return model;
}

kl_session* prompted(kl_model* model, const std::vector<int32_t>& prompt,
                     uint64_t max_context = 0) {
    kl_session_params sp;
    kl_session_params_default(&sp);
    sp.max_context = max_context;
    kl_session* s = nullptr;
    EXPECT_EQ(kl_session_create(model, &sp, &s), KL_OK) << kl_last_error();
    if (!prompt.empty()) {
        EXPECT_EQ(kl_session_append(s, prompt.data(), prompt.size(), KL_LOGITS_NONE, nullptr),
                  KL_OK)
            << kl_last_error();
    }
    return s;
}

// A prompt of n tokens that differs per seed.
std::vector<int32_t> prompt_of(size_t n, int32_t seed) {
    std::vector<int32_t> p(n);
    for (size_t i = 0; i < n; ++i) p[i] = static_cast<int32_t>((seed * 37 + i * 11) % 200 + 1);
    return p;
}

uint64_t position(const kl_session* s) {
    uint64_t p = 0;
    EXPECT_EQ(kl_session_position(s, &p), KL_OK);
    return p;
}

std::vector<float> logits_after(kl_session* s, int32_t token) {
    std::vector<float> logits(1u << 18);  // more than the tiny model's vocabulary
    EXPECT_EQ(kl_session_append(s, &token, 1, KL_LOGITS_LAST, logits.data()), KL_OK)
        << kl_last_error();
    return logits;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b, float* scale) {
    float d = 0.0f, m = 0.0f;
    for (size_t i = 0; i < a.size(); ++i) {
        d = std::max(d, std::fabs(a[i] - b[i]));
        m = std::max(m, std::fabs(b[i]));
    }
    *scale = m;
    return d;
}

struct CApiBatch : ::testing::Test {
    void SetUp() override { model = load(); }
    void TearDown() override {
        for (kl_session* s : owned) kl_session_free(s);
        kl_model_free(model);
    }
    kl_session* add(const std::vector<int32_t>& prompt, uint64_t max_context = 0) {
        owned.push_back(prompted(model, prompt, max_context));
        return owned.back();
    }
    kl_session* fork_of(const kl_session* s) {
        kl_session* f = nullptr;
        EXPECT_EQ(kl_session_fork(s, &f), KL_OK) << kl_last_error();
        owned.push_back(f);
        return f;
    }

    kl_model* model = nullptr;
    std::vector<kl_session*> owned;
};

TEST_F(CApiBatch, NextGivesEachSessionItsOwnTokensTextAndState) {
    // Different lengths (one token to 70), greedy and seeded sampling mixed.
    const size_t lengths[] = {1, 5, 70, 12, 33};
    constexpr size_t n = 5;
    std::vector<kl_session*> batch, alone;
    std::vector<kl_sampling_params> params(n);
    for (size_t i = 0; i < n; ++i) {
        batch.push_back(add(prompt_of(lengths[i], static_cast<int32_t>(i))));
        alone.push_back(fork_of(batch.back()));
        kl_sampling_params_default(&params[i]);
        if (i % 2 == 1) params[i].temperature = 0.9f, params[i].top_p = 0.95f, params[i].seed = i;
    }
    constexpr size_t kStride = 64;
    for (int step = 0; step < 10; ++step) {
        std::vector<int32_t> tokens(n, -1);
        std::vector<char> pieces(n * kStride, 'x');
        std::vector<size_t> lens(n, 999);
        ASSERT_EQ(kl_batch_next(batch.data(), n, params.data(), tokens.data(), pieces.data(),
                                kStride, lens.data()),
                  KL_OK)
            << kl_last_error();
        for (size_t i = 0; i < n; ++i) {
            int32_t token = -1;
            char piece[kStride];
            size_t len = 0;
            ASSERT_EQ(kl_session_next(alone[i], &params[i], &token, piece, kStride, &len), KL_OK);
            EXPECT_EQ(tokens[i], token) << "session " << i << " step " << step;
            EXPECT_EQ(lens[i], len);
            EXPECT_EQ(std::string(&pieces[i * kStride]), std::string(piece, len));
            EXPECT_EQ(position(batch[i]), position(alone[i]));
        }
    }
    // The states afterwards: the same logits for the same next token.
    for (size_t i = 0; i < n; ++i) {
        float scale = 0.0f;
        const float diff = max_abs_diff(logits_after(batch[i], 7), logits_after(alone[i], 7), &scale);
        EXPECT_LE(diff, 1e-5f * std::max(1.0f, scale)) << "session " << i;
    }
}

TEST_F(CApiBatch, AppendEqualsAppendingToEachSessionAndTextIsOptional) {
    std::vector<kl_session*> batch = {add(prompt_of(3, 1)), add(prompt_of(9, 2)), add({})};
    std::vector<kl_session*> alone = {fork_of(batch[0]), fork_of(batch[1]), fork_of(batch[2])};
    const int32_t tokens[] = {4, 8, 15};
    ASSERT_EQ(kl_batch_append(batch.data(), 3, tokens), KL_OK) << kl_last_error();
    for (size_t i = 0; i < 3; ++i)
        ASSERT_EQ(kl_session_append(alone[i], &tokens[i], 1, KL_LOGITS_NONE, nullptr), KL_OK);
    // Then kl_batch_next without text.
    std::vector<kl_sampling_params> params(3);
    for (auto& p : params) kl_sampling_params_default(&p);
    int32_t next[3];
    ASSERT_EQ(kl_batch_next(batch.data(), 3, params.data(), next, nullptr, 0, nullptr), KL_OK);
    for (size_t i = 0; i < 3; ++i) {
        int32_t token = -1;
        ASSERT_EQ(kl_session_next(alone[i], &params[i], &token, nullptr, 0, nullptr), KL_OK);
        EXPECT_EQ(next[i], token);
        EXPECT_EQ(position(batch[i]), i == 2 ? 2u : (i == 0 ? 5u : 11u));
    }
}

TEST_F(CApiBatch, AFailedBatchChangesNoSessionAndNamesTheCulprit) {
    kl_session* a = add(prompt_of(4, 1));
    kl_session* full = add(prompt_of(6, 2), 6);  // at its max_context
    kl_session* fresh = add({});                  // no logits yet
    kl_session* b = add(prompt_of(7, 3));
    std::vector<kl_sampling_params> params(3);
    for (auto& p : params) kl_sampling_params_default(&p);
    int32_t tokens[3];

    kl_session* with_full[] = {a, b, full};
    expect_failure(kl_batch_next(with_full, 3, params.data(), tokens, nullptr, 0, nullptr),
                   KL_ERR_CONTEXT_FULL, "sessions[2]");
    kl_session* with_fresh[] = {fresh, a, b};
    expect_failure(kl_batch_next(with_fresh, 3, params.data(), tokens, nullptr, 0, nullptr),
                   KL_ERR_INVALID_ARGUMENT, "sessions[0]");
    const int32_t bad[] = {1, 1 << 30, 2};
    kl_session* three[] = {a, b, fresh};
    expect_failure(kl_batch_append(three, 3, bad), KL_ERR_INVALID_ARGUMENT, "sessions[1]");
    params[1].top_p = 2.0f;
    kl_session* two[] = {a, b};
    expect_failure(kl_batch_next(two, 2, params.data(), tokens, nullptr, 0, nullptr),
                   KL_ERR_INVALID_ARGUMENT, "top_p");
    params[1].top_p = 1.0f;
    char tiny_stride[2];
    kl_session* one[] = {a};
    // A text that does not fit: the one-byte stride has room for the NUL only.
    const kl_status small = kl_batch_next(one, 1, params.data(), tokens, tiny_stride, 1, nullptr);
    if (small != KL_OK) expect_failure(small, KL_ERR_INVALID_ARGUMENT, "piece_stride");

    EXPECT_EQ(position(a), small == KL_OK ? 5u : 4u);  // only the call that succeeded moved it
    EXPECT_EQ(position(full), 6u);
    EXPECT_EQ(position(fresh), 0u);
    EXPECT_EQ(position(b), 7u);
}

TEST_F(CApiBatch, MalformedBatchesAreRefused) {
    kl_session* a = add(prompt_of(4, 1));
    kl_session* b = add(prompt_of(5, 2));
    kl_model* other = load();
    kl_session* c = prompted(other, prompt_of(3, 3));
    const int32_t tokens[] = {1, 2, 3};
    kl_session* twice[] = {a, b, a};
    expect_failure(kl_batch_append(twice, 3, tokens), KL_ERR_INVALID_ARGUMENT,
                   "sessions[0] and sessions[2] are the same session");
    kl_session* with_null[] = {a, nullptr};
    expect_failure(kl_batch_append(with_null, 2, tokens), KL_ERR_INVALID_ARGUMENT,
                   "sessions[1] is NULL");
    kl_session* mixed[] = {a, c};
    expect_failure(kl_batch_append(mixed, 2, tokens), KL_ERR_INVALID_ARGUMENT, "another model");
    expect_failure(kl_batch_append(mixed, 0, tokens), KL_ERR_INVALID_ARGUMENT, "n is 0");
    expect_failure(kl_batch_append(nullptr, 2, tokens), KL_ERR_INVALID_ARGUMENT, "sessions is NULL");
    kl_session* ab[] = {a, b};
    expect_failure(kl_batch_append(ab, 2, nullptr), KL_ERR_INVALID_ARGUMENT, "tokens is NULL");
    kl_sampling_params p[2];
    kl_sampling_params_default(&p[0]);
    kl_sampling_params_default(&p[1]);
    int32_t out[2];
    expect_failure(kl_batch_next(ab, 2, p, out, nullptr, 8, nullptr), KL_ERR_INVALID_ARGUMENT,
                   "pieces is NULL");
    EXPECT_EQ(position(a), 4u);
    EXPECT_EQ(position(b), 5u);
    // A refused batch released every session it had taken: they work alone.
    EXPECT_EQ(kl_batch_append(ab, 2, tokens), KL_OK) << kl_last_error();
    kl_session_free(c);
    kl_model_free(other);
}

TEST_F(CApiBatch, ACancelPendingOnOneSessionFailsTheBatchAndIsConsumed) {
    kl_session* a = add(prompt_of(4, 1));
    kl_session* b = add(prompt_of(5, 2));
    kl_session* ab[] = {a, b};
    const int32_t tokens[] = {1, 2};
    kl_session_cancel(b);
    expect_failure(kl_batch_append(ab, 2, tokens), KL_ERR_CANCELLED, "sessions[1]");
    EXPECT_EQ(position(a), 4u);
    EXPECT_EQ(position(b), 5u);
    EXPECT_EQ(kl_batch_append(ab, 2, tokens), KL_OK) << "the cancel was consumed";
    EXPECT_EQ(position(b), 6u);
}

// A session held by a running call (here: its own generate callback) makes the batch BUSY,
// and the batch releases the sessions it had already taken.
TEST_F(CApiBatch, ABusySessionMakesTheBatchBusyAndReleasesTheOthers) {
    kl_session* a = add(prompt_of(4, 1));
    kl_session* busy = add(prompt_of(5, 2));
    struct Ctx {
        kl_session* a;
        kl_session* busy;
        kl_status status = KL_OK;
    } ctx{a, busy};
    kl_generate_params gp;
    kl_generate_params_default(&gp);
    gp.max_new_tokens = 1;
    auto cb = [](void* user, int32_t, const char*, size_t) {
        auto* c = static_cast<Ctx*>(user);
        kl_session* batch[] = {c->a, c->busy};
        const int32_t tokens[] = {1, 2};
        c->status = kl_batch_append(batch, 2, tokens);
        return 0;
    };
    ASSERT_EQ(kl_session_generate(busy, &gp, cb, &ctx, nullptr), KL_OK) << kl_last_error();
    EXPECT_EQ(ctx.status, KL_ERR_BUSY);
    EXPECT_EQ(position(a), 4u);
    const int32_t one = 3;
    EXPECT_EQ(kl_session_append(a, &one, 1, KL_LOGITS_NONE, nullptr), KL_OK)
        << "a was released: " << kl_last_error();
}

TEST(CApiBatchOptions, MaxBatchAndWaitAreCheckedAndOlderStructsStillLoad) {
    kl_model_params mp;
    kl_model_params_default(&mp);
    EXPECT_EQ(mp.max_batch, 0u);
    EXPECT_EQ(mp.batch_wait_us, 0u);
    mp.device = KL_DEVICE_CPU;
    kl_model* model = nullptr;
    mp.max_batch = 1u << 20;
    expect_failure(kl_model_load(kl::test::tiny_model_dir().c_str(), &mp, &model),
                   KL_ERR_INVALID_ARGUMENT, "max_batch");
    mp.max_batch = 8;
    mp.batch_wait_us = 5000000;
    expect_failure(kl_model_load(kl::test::tiny_model_dir().c_str(), &mp, &model),
                   KL_ERR_INVALID_ARGUMENT, "batch_wait_us");
    // A caller compiled before the batching fields: its struct ends at them, garbage after.
    mp.struct_size = static_cast<uint32_t>(offsetof(kl_model_params, max_batch));
    ASSERT_EQ(kl_model_load(kl::test::tiny_model_dir().c_str(), &mp, &model), KL_OK)
        << kl_last_error();
    kl_model_free(model);
    mp.struct_size = static_cast<uint32_t>(offsetof(kl_model_params, max_batch)) - 1;
    expect_failure(kl_model_load(kl::test::tiny_model_dir().c_str(), &mp, &model),
                   KL_ERR_INVALID_ARGUMENT, "struct_size");
}

// The greedy tokens kl_session_next gives on s, n of them.
std::vector<int32_t> greedy(kl_session* s, int n) {
    kl_sampling_params p;
    kl_sampling_params_default(&p);
    std::vector<int32_t> tokens;
    for (int i = 0; i < n; ++i) {
        int32_t t = -1;
        EXPECT_EQ(kl_session_next(s, &p, &t, nullptr, 0, nullptr), KL_OK) << kl_last_error();
        tokens.push_back(t);
    }
    return tokens;
}

TEST(CApiBatchThreads, StepsOfThreadsBatchedByTheModelGiveEachThreadItsOwnTokens) {
    constexpr int kThreads = 6, kSteps = 12;
    kl_model* plain = load();
    std::vector<std::vector<int32_t>> want(kThreads);
    for (int t = 0; t < kThreads; ++t) {
        kl_session* s = prompted(plain, prompt_of(2 + 7 * t, t));
        want[t] = greedy(s, kSteps);
        kl_session_free(s);
    }
    kl_model_free(plain);
    for (uint32_t wait_us : {0u, 3000u}) {
        kl_model* batched = load(kThreads, wait_us);
        std::vector<std::vector<int32_t>> got(kThreads);
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t)
            threads.emplace_back([&, t] {
                kl_session* s = prompted(batched, prompt_of(2 + 7 * t, t));
                got[t] = greedy(s, kSteps);
                kl_session_free(s);
            });
        for (auto& th : threads) th.join();
        for (int t = 0; t < kThreads; ++t)
            EXPECT_EQ(got[t], want[t]) << "thread " << t << ", batch_wait_us " << wait_us;
        kl_model_free(batched);
    }
}

}  // namespace
