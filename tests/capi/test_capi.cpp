// The C API as a user sees it (only kimi_linear.h): every bad input returns the right status
// with a message and leaves the session exactly as it was; fork, snapshots, reset, sampling,
// generate, next, cancel and threads behave as the header documents.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "capi_test_support.h"
#include "kimi_linear.h"
#include "tiny_model.h"

namespace {

namespace fs = std::filesystem;

kl_model* load(const std::string& dir) {
    kl_model* model = nullptr;
    EXPECT_EQ(kl_model_load(dir.c_str(), nullptr, &model), KL_OK) << kl_last_error();
    return model;
}

struct CApiSession : ::testing::Test {
    void SetUp() override {
        model = load(kl::test::tiny_model_dir());
        ASSERT_NE(model, nullptr);
        struct kl_model_info info = {};
        info.struct_size = sizeof(info);
        ASSERT_EQ(kl_model_info(model, &info), KL_OK);
        vocab = info.vocab_size;
    }
    void TearDown() override { kl_model_free(model); }

    kl_session* session(uint64_t max_context = 0) {
        kl_session_params p;
        kl_session_params_default(&p);
        p.max_context = max_context;
        kl_session* s = nullptr;
        EXPECT_EQ(kl_session_create(model, &p, &s), KL_OK) << kl_last_error();
        return s;
    }
    std::vector<float> append(kl_session* s, std::vector<int32_t> tokens) {
        std::vector<float> logits(vocab);
        EXPECT_EQ(kl_session_append(s, tokens.data(), tokens.size(), KL_LOGITS_LAST, logits.data()),
                  KL_OK)
            << kl_last_error();
        return logits;
    }
    uint64_t position(kl_session* s) {
        uint64_t p = 0;
        EXPECT_EQ(kl_session_position(s, &p), KL_OK);
        return p;
    }
    std::vector<uint8_t> snapshot(kl_session* s) {
        size_t n = 0;
        EXPECT_EQ(kl_session_state_size(s, &n), KL_OK);
        std::vector<uint8_t> blob(n);
        size_t written = 0;
        EXPECT_EQ(kl_session_state_save(s, blob.data(), blob.size(), &written), KL_OK);
        EXPECT_EQ(written, n);
        return blob;
    }

    kl_model* model = nullptr;
    uint32_t vocab = 0;
};

using kl::test::expect_failure;

TEST(CApi, VersionAndStatusStrings) {
    EXPECT_EQ(kl_abi_version(), static_cast<uint32_t>(KL_ABI_VERSION));
    EXPECT_STREQ(kl_status_string(KL_ERR_FORMAT), "KL_ERR_FORMAT");
    EXPECT_STREQ(kl_status_string(KL_OK), "KL_OK");
    EXPECT_STREQ(kl_status_string(static_cast<kl_status>(999)), "KL_ERR_UNKNOWN");
    EXPECT_GT(std::strlen(kl_version()), 4u);
}

TEST(CApi, NullArgumentsAreRejectedAndFreeNullIsANoOp) {
    kl_model* model = nullptr;
    expect_failure(kl_model_load(nullptr, nullptr, &model), KL_ERR_INVALID_ARGUMENT, "dir");
    expect_failure(kl_model_load("x", nullptr, nullptr), KL_ERR_INVALID_ARGUMENT, "out");
    kl_session* s = nullptr;
    expect_failure(kl_session_create(nullptr, nullptr, &s), KL_ERR_INVALID_ARGUMENT, "model");
    int32_t t = 0;
    expect_failure(kl_session_append(nullptr, &t, 1, KL_LOGITS_NONE, nullptr),
                   KL_ERR_INVALID_ARGUMENT, "session");
    uint64_t pos;
    expect_failure(kl_session_position(nullptr, &pos), KL_ERR_INVALID_ARGUMENT, "session");
    expect_failure(kl_model_info(nullptr, nullptr), KL_ERR_INVALID_ARGUMENT, "model");
    kl_sampling_params sp;
    kl_sampling_params_default(&sp);
    expect_failure(kl_session_sample(nullptr, &sp, &t), KL_ERR_INVALID_ARGUMENT, "session");
    expect_failure(kl_session_fork(nullptr, &s), KL_ERR_INVALID_ARGUMENT, "session");
    expect_failure(kl_session_state_load(nullptr, "", 0), KL_ERR_INVALID_ARGUMENT, "session");
    kl_model_free(nullptr);
    kl_session_free(nullptr);
    kl_session_cancel(nullptr);
}

TEST(CApi, LoadErrorsNameTheProblem) {
    kl_model* model = nullptr;
    expect_failure(kl_model_load("/nonexistent/model", nullptr, &model), KL_ERR_IO,
                   "/nonexistent/model");
    EXPECT_EQ(model, nullptr);

    const std::string dir = kl::test::temp_dir() + "/m";
    fs::copy(kl::test::tiny_model_dir(), dir, fs::copy_options::recursive);
    std::string config;
    {
        std::ifstream in(dir + "/config.json");
        config.assign(std::istreambuf_iterator<char>(in), {});
    }
    auto write_config = [&](const std::string& text) {
        std::ofstream(dir + "/config.json") << text;
    };
    write_config("{ not json");
    expect_failure(kl_model_load(dir.c_str(), nullptr, &model), KL_ERR_FORMAT, "config.json");
    std::string wrong = config;
    wrong.replace(wrong.find("\"hidden_size\": 64"), 17, "\"hidden_size\": 32");
    write_config(wrong);
    expect_failure(kl_model_load(dir.c_str(), nullptr, &model), KL_ERR_FORMAT, "[256,32]");
    write_config(config);

    // A truncated shard at several lengths: a status, never a crash.
    const std::string shard = dir + "/model-00002-of-00002.safetensors";
    const auto full = fs::file_size(shard);
    for (uintmax_t len : {uintmax_t(0), uintmax_t(7), uintmax_t(100), full / 2, full - 1}) {
        fs::resize_file(shard, len);
        const kl_status st = kl_model_load(dir.c_str(), nullptr, &model);
        EXPECT_EQ(st, KL_ERR_FORMAT) << "length " << len << ": " << kl_last_error();
        EXPECT_EQ(model, nullptr);
    }

    kl_model_params params;
    kl_model_params_default(&params);
    params.struct_size = 0;
    expect_failure(kl_model_load(kl::test::tiny_model_dir().c_str(), &params, &model),
                   KL_ERR_INVALID_ARGUMENT, "struct_size");
}

TEST(CApi, UnusedTensorsAreLoggedThroughTheCallback) {
    // A second file with one tensor the config does not know.
    const std::string dir = kl::test::model_that_warns();

    std::vector<std::pair<int, std::string>> logged;
    kl_set_log_callback(
        [](int level, const char* msg, void* user) {
            // Warnings and errors only: an AUTO load may also say, once, why it runs on the CPU.
            if (level <= KL_LOG_WARN)
                static_cast<std::vector<std::pair<int, std::string>>*>(user)->emplace_back(level,
                                                                                       msg);
        },
        &logged);
    kl_model* model = load(dir);
    kl_set_log_callback(nullptr, nullptr);
    kl_model_free(model);
    ASSERT_EQ(logged.size(), 1u);
    EXPECT_EQ(logged[0].first, KL_LOG_WARN);
    EXPECT_NE(logged[0].second.find("model.mtp.weight"), std::string::npos) << logged[0].second;
}

TEST(CApi, RandomModelEqualsMakeTinyModelsCheckpoint) {
    const std::string dir = kl::test::tiny_model_dir("--preset tiny --seed 11");
    std::string config;
    {
        std::ifstream in(dir + "/config.json");
        config.assign(std::istreambuf_iterator<char>(in), {});
    }
    kl_model_params params;
    kl_model_params_default(&params);
    params.device = KL_DEVICE_CPU;
    kl_model* random = nullptr;
    ASSERT_EQ(kl_model_create_random(config.c_str(), 11, &params, &random), KL_OK)
        << kl_last_error();
    kl_model* from_files = nullptr;
    ASSERT_EQ(kl_model_load(dir.c_str(), &params, &from_files), KL_OK);
    std::vector<int32_t> tokens = {3, 1, 4, 1, 5, 9, 2, 6};
    std::vector<float> a(tokens.size() * 256), b(a.size());
    kl_session *sa = nullptr, *sb = nullptr;
    ASSERT_EQ(kl_session_create(random, nullptr, &sa), KL_OK);
    ASSERT_EQ(kl_session_create(from_files, nullptr, &sb), KL_OK);
    ASSERT_EQ(kl_session_append(sa, tokens.data(), tokens.size(), KL_LOGITS_ALL, a.data()), KL_OK);
    ASSERT_EQ(kl_session_append(sb, tokens.data(), tokens.size(), KL_LOGITS_ALL, b.data()), KL_OK);
    EXPECT_EQ(a, b);
    kl_session_free(sa);
    kl_session_free(sb);
    kl_model_free(random);
    kl_model_free(from_files);

    kl_model* bad = nullptr;
    expect_failure(kl_model_create_random("{\"hidden_size\": 8}", 1, &params, &bad), KL_ERR_FORMAT,
                   "config_json");
    expect_failure(kl_model_create_random(nullptr, 1, &params, &bad), KL_ERR_INVALID_ARGUMENT,
                   "config_json");
}

TEST(CApi, ProgressCallbackReportsAndCanAbort) {
    std::vector<float> seen;
    kl_model_params params;
    kl_model_params_default(&params);
    params.progress_cb = [](float f, void* user) {
        static_cast<std::vector<float>*>(user)->push_back(f);
        return 0;
    };
    params.progress_user = &seen;
    kl_model* model = nullptr;
    ASSERT_EQ(kl_model_load(kl::test::tiny_model_dir().c_str(), &params, &model), KL_OK);
    kl_model_free(model);
    ASSERT_GT(seen.size(), 2u);
    EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
    EXPECT_FLOAT_EQ(seen.back(), 1.0f);

    params.progress_cb = [](float f, void*) { return f > 0.3f ? 1 : 0; };
    expect_failure(kl_model_load(kl::test::tiny_model_dir().c_str(), &params, &model),
                   KL_ERR_CANCELLED, "cancel");
    EXPECT_EQ(model, nullptr);
}

TEST_F(CApiSession, BadAppendsChangeNothing) {
    kl_session* s = session(8);
    const std::vector<float> first = append(s, {1, 2, 3});
    kl_session* twin = nullptr;
    ASSERT_EQ(kl_session_fork(s, &twin), KL_OK);

    int32_t bad[] = {4, static_cast<int32_t>(vocab)};
    std::vector<float> logits(2 * vocab);
    expect_failure(kl_session_append(s, bad, 2, KL_LOGITS_ALL, logits.data()),
                   KL_ERR_INVALID_ARGUMENT, std::to_string(vocab));
    EXPECT_NE(std::string(kl_last_error()).find("[0, " + std::to_string(vocab) + ")"),
              std::string::npos);
    int32_t negative = -1;
    expect_failure(kl_session_append(s, &negative, 1, KL_LOGITS_NONE, nullptr),
                   KL_ERR_INVALID_ARGUMENT, "-1");
    expect_failure(kl_session_append(s, bad, 0, KL_LOGITS_NONE, nullptr), KL_ERR_INVALID_ARGUMENT,
                   "n is 0");
    // An empty array passed as NULL (as the bindings do) is named by its count, not its pointer.
    expect_failure(kl_session_append(s, nullptr, 0, KL_LOGITS_NONE, nullptr),
                   KL_ERR_INVALID_ARGUMENT, "n is 0");
    expect_failure(kl_session_append(s, bad, 1, KL_LOGITS_LAST, nullptr), KL_ERR_INVALID_ARGUMENT,
                   "logits");
    expect_failure(kl_session_append(s, bad, 1, static_cast<kl_logits>(7), logits.data()),
                   KL_ERR_INVALID_ARGUMENT, "which");
    std::vector<int32_t> six(6, 5);
    expect_failure(kl_session_append(s, six.data(), 6, KL_LOGITS_NONE, nullptr),
                   KL_ERR_CONTEXT_FULL, "max_context 8");
    EXPECT_EQ(position(s), 3u);

    // Same greedy choice and the same next logits as the untouched fork.
    kl_sampling_params greedy;
    kl_sampling_params_default(&greedy);
    int32_t a = -1, b = -2;
    ASSERT_EQ(kl_session_sample(s, &greedy, &a), KL_OK);
    ASSERT_EQ(kl_session_sample(twin, &greedy, &b), KL_OK);
    EXPECT_EQ(a, b);
    EXPECT_EQ(append(s, {9, 9}), append(twin, {9, 9}));
    EXPECT_EQ(append(s, {1, 1, 1}), append(twin, {1, 1, 1}));  // exactly full: 8 of 8
    expect_failure(kl_session_append(s, bad, 1, KL_LOGITS_NONE, nullptr), KL_ERR_CONTEXT_FULL,
                   "context full");
    kl_session_free(twin);
    kl_session_free(s);
}

TEST_F(CApiSession, SamplingGreedyArgmaxSeedsAndValidation) {
    kl_session* s = session();
    int32_t token;
    kl_sampling_params p;
    kl_sampling_params_default(&p);
    expect_failure(kl_session_sample(s, &p, &token), KL_ERR_INVALID_ARGUMENT, "append a prompt");
    const std::vector<float> logits = append(s, {7, 8, 9});
    ASSERT_EQ(kl_session_sample(s, &p, &token), KL_OK);
    EXPECT_EQ(token, std::max_element(logits.begin(), logits.end()) - logits.begin());
    p.temperature = 1.0f;
    p.top_k = 1;
    int32_t top1;
    ASSERT_EQ(kl_session_sample(s, &p, &top1), KL_OK);
    EXPECT_EQ(top1, token);

    auto bad = [&](auto edit, const char* field) {
        kl_sampling_params q;
        kl_sampling_params_default(&q);
        edit(q);
        expect_failure(kl_session_sample(s, &q, &token), KL_ERR_INVALID_ARGUMENT, field);
    };
    bad([](kl_sampling_params& q) { q.temperature = -0.5f; }, "temperature");
    bad([](kl_sampling_params& q) { q.top_p = 0.0f; }, "top_p");
    bad([](kl_sampling_params& q) { q.top_p = 1.5f; }, "top_p");
    bad([](kl_sampling_params& q) { q.min_p = 1.0f; }, "min_p");
    bad([](kl_sampling_params& q) { q.repetition_penalty = 0.0f; }, "repetition_penalty");
    bad([](kl_sampling_params& q) { q.struct_size = 0; }, "struct_size");
    kl_session_free(s);
}

struct Collected {
    std::vector<int32_t> tokens;
    int stop_after = -1;
};

int collect(void* user, int32_t token, const char*, size_t) {
    auto* c = static_cast<Collected*>(user);
    c->tokens.push_back(token);
    return static_cast<int>(c->tokens.size()) == c->stop_after;
}

TEST_F(CApiSession, GenerateIsReproducibleBySeedAndStopsAsAsked) {
    auto run = [&](uint64_t seed, uint32_t max_new, std::vector<int32_t> stops, int stop_after,
                   size_t* n_generated) {
        kl_session* s = session();
        append(s, {1, 2, 3});
        kl_generate_params g;
        kl_generate_params_default(&g);
        g.max_new_tokens = max_new;
        g.sampling.temperature = 1.5f;
        g.sampling.seed = seed;
        g.stop_tokens = stops.data();
        g.n_stop_tokens = stops.size();
        Collected c;
        c.stop_after = stop_after;
        EXPECT_EQ(kl_session_generate(s, &g, collect, &c, n_generated), KL_OK) << kl_last_error();
        EXPECT_EQ(position(s), 3 + *n_generated);
        kl_session_free(s);
        return c.tokens;
    };
    size_t n = 0;
    const auto a = run(42, 20, {}, -1, &n);
    EXPECT_EQ(a.size(), 20u);
    EXPECT_EQ(n, 20u);
    EXPECT_EQ(run(42, 20, {}, -1, &n), a);
    EXPECT_NE(run(43, 20, {}, -1, &n), a);
    EXPECT_TRUE(run(42, 0, {}, -1, &n).empty());
    EXPECT_EQ(n, 0u);

    // Callback returning non-zero stops after that token.
    EXPECT_EQ(run(42, 20, {}, 5, &n), std::vector<int32_t>(a.begin(), a.begin() + 5));
    EXPECT_EQ(n, 5u);
    // A stop token ends generation: appended and counted, not reported.
    const int32_t stop = a[6];
    const size_t first = std::find(a.begin(), a.end(), stop) - a.begin();
    EXPECT_EQ(run(42, 20, {stop}, -1, &n), std::vector<int32_t>(a.begin(), a.begin() + first));
    EXPECT_EQ(n, first + 1);
}

TEST_F(CApiSession, NextMatchesGenerate) {
    kl_session* s = session();
    append(s, {4, 5, 6});
    kl_session* f = nullptr;
    ASSERT_EQ(kl_session_fork(s, &f), KL_OK);
    kl_generate_params g;
    kl_generate_params_default(&g);
    g.max_new_tokens = 10;
    g.sampling.temperature = 0.9f;
    g.sampling.top_p = 0.9f;
    g.sampling.seed = 7;
    Collected c;
    ASSERT_EQ(kl_session_generate(s, &g, collect, &c, nullptr), KL_OK);
    std::vector<int32_t> pulled;
    for (int i = 0; i < 10; ++i) {
        int32_t t;
        size_t len = 99;
        char piece[16];
        ASSERT_EQ(kl_session_next(f, &g.sampling, &t, piece, sizeof(piece), &len), KL_OK);
        EXPECT_EQ(len, 0u);  // no tokenizer yet
        pulled.push_back(t);
    }
    EXPECT_EQ(pulled, c.tokens);
    kl_session_free(f);
    kl_session_free(s);
}

TEST_F(CApiSession, ForkIsIndependent) {
    kl_session* s = session();
    append(s, {10, 11, 12});
    kl_session* f = nullptr;
    ASSERT_EQ(kl_session_fork(s, &f), KL_OK);
    append(f, {1, 2, 3, 4});
    EXPECT_EQ(position(f), 7u);
    EXPECT_EQ(position(s), 3u);
    kl_session* g = nullptr;
    ASSERT_EQ(kl_session_fork(s, &g), KL_OK);
    EXPECT_EQ(append(s, {5}), append(g, {5}));
    kl_session_free(s);  // the fork outlives its origin
    EXPECT_EQ(append(g, {6}).size(), vocab);
    kl_session_free(f);
    kl_session_free(g);
}

TEST_F(CApiSession, SnapshotRoundTripAndRejections) {
    kl_session* s = session();
    append(s, {3, 1, 4, 1, 5, 9});
    const std::vector<uint8_t> blob = snapshot(s);

    kl_session* restored = session();
    ASSERT_EQ(kl_session_state_load(restored, blob.data(), blob.size()), KL_OK) << kl_last_error();
    EXPECT_EQ(position(restored), 6u);
    kl_sampling_params greedy;
    kl_sampling_params_default(&greedy);
    int32_t a, b;
    ASSERT_EQ(kl_session_sample(restored, &greedy, &a), KL_OK);
    ASSERT_EQ(kl_session_sample(s, &greedy, &b), KL_OK);
    EXPECT_EQ(a, b);
    EXPECT_EQ(append(restored, {2, 6}), append(s, {2, 6}));

    size_t written = 0;
    std::vector<uint8_t> small(10);
    expect_failure(kl_session_state_save(s, small.data(), small.size(), &written),
                   KL_ERR_INVALID_ARGUMENT, "too small");
    EXPECT_GT(written, small.size());

    kl_session* victim = session();
    append(victim, {8, 8});
    kl_session* untouched = nullptr;
    ASSERT_EQ(kl_session_fork(victim, &untouched), KL_OK);
    for (size_t i = 0; i < blob.size(); i += 5) {
        std::vector<uint8_t> bad = blob;
        bad[i] ^= 0x41;
        EXPECT_NE(kl_session_state_load(victim, bad.data(), bad.size()), KL_OK) << "byte " << i;
    }
    for (size_t n = 0; n < blob.size(); n += 11)
        EXPECT_EQ(kl_session_state_load(victim, blob.data(), n), KL_ERR_FORMAT) << "length " << n;
    EXPECT_EQ(position(victim), 2u);
    EXPECT_EQ(append(victim, {7}), append(untouched, {7}));

    // Another model's snapshot (same shapes, other weights).
    kl_model* other = load(kl::test::tiny_model_dir("--preset tiny --seed 99"));
    kl_session* foreign = nullptr;
    ASSERT_EQ(kl_session_create(other, nullptr, &foreign), KL_OK);
    expect_failure(kl_session_state_load(foreign, blob.data(), blob.size()),
                   KL_ERR_INVALID_ARGUMENT, "another model");
    kl_session_free(foreign);
    kl_model_free(other);

    // A snapshot longer than this session's capacity.
    kl_session* tiny = session(4);
    expect_failure(kl_session_state_load(tiny, blob.data(), blob.size()), KL_ERR_CONTEXT_FULL,
                   "max_context");
    kl_session_free(tiny);
    for (kl_session* x : {s, restored, victim, untouched}) kl_session_free(x);
}

TEST_F(CApiSession, SyntheticContextIsDeterministicAndChecked) {
    kl_session* a = session(100);
    kl_session* b = session(100);
    append(a, {3});
    const std::vector<uint8_t> before = snapshot(a);
    expect_failure(kl_session_fill_synthetic(a, 101, 7), KL_ERR_CONTEXT_FULL, "101");
    EXPECT_EQ(snapshot(a), before);  // a failed call changes nothing
    expect_failure(kl_session_fill_synthetic(nullptr, 1, 7), KL_ERR_INVALID_ARGUMENT, "session");

    ASSERT_EQ(kl_session_fill_synthetic(a, 60, 7), KL_OK) << kl_last_error();
    ASSERT_EQ(kl_session_fill_synthetic(b, 60, 7), KL_OK) << kl_last_error();
    EXPECT_EQ(position(a), 60u);
    EXPECT_EQ(snapshot(a), snapshot(b));
    // The session goes on from there: sampling and decoding work and agree.
    kl_sampling_params greedy;
    kl_sampling_params_default(&greedy);
    int32_t ta = -1, tb = -2;
    ASSERT_EQ(kl_session_next(a, &greedy, &ta, nullptr, 0, nullptr), KL_OK) << kl_last_error();
    ASSERT_EQ(kl_session_next(b, &greedy, &tb, nullptr, 0, nullptr), KL_OK) << kl_last_error();
    EXPECT_EQ(ta, tb);
    EXPECT_EQ(position(a), 61u);
    EXPECT_EQ(append(a, {5}), append(b, {5}));
    kl_session_free(a);
    kl_session_free(b);
}

TEST_F(CApiSession, ResetEqualsFresh) {
    kl_session* s = session();
    append(s, {1, 2, 3, 4});
    ASSERT_EQ(kl_session_reset(s), KL_OK);
    EXPECT_EQ(position(s), 0u);
    kl_session* fresh = session();
    EXPECT_EQ(append(s, {5, 6}), append(fresh, {5, 6}));
    kl_session_free(fresh);
    kl_session_free(s);
}

TEST(CApiCancel, CancelFromAnotherThreadLeavesTheStateAsBefore) {
    kl_model* model = load(kl::test::tiny_model_dir("--preset small --seed 4"));
    kl_session_params p;
    kl_session_params_default(&p);
    kl_session* s = nullptr;
    ASSERT_EQ(kl_session_create(model, &p, &s), KL_OK);
    std::vector<int32_t> prompt(2000);
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>(i % 4000);
    ASSERT_EQ(kl_session_append(s, prompt.data(), 5, KL_LOGITS_NONE, nullptr), KL_OK);
    kl_session* twin = nullptr;
    ASSERT_EQ(kl_session_fork(s, &twin), KL_OK);

    // A cancel requested while nothing runs stays pending: the next append is stopped by it
    // and consumes it (the rule of kl_session_cancel; test_capi_cancel.cpp has the rest).
    kl_session_cancel(s);
    int32_t one = 3;
    ASSERT_EQ(kl_session_append(s, &one, 1, KL_LOGITS_NONE, nullptr), KL_ERR_CANCELLED);
    ASSERT_EQ(kl_session_append(s, &one, 1, KL_LOGITS_NONE, nullptr), KL_OK);
    ASSERT_EQ(kl_session_append(twin, &one, 1, KL_LOGITS_NONE, nullptr), KL_OK);

    std::atomic<bool> started{false};
    std::thread canceller([&] {
        while (!started.load()) std::this_thread::yield();
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        kl_session_cancel(s);
    });
    started = true;
    const kl_status status =
        kl_session_append(s, prompt.data(), prompt.size(), KL_LOGITS_NONE, nullptr);
    canceller.join();
    EXPECT_EQ(status, KL_ERR_CANCELLED) << kl_last_error();
    uint64_t pos = 0;
    ASSERT_EQ(kl_session_position(s, &pos), KL_OK);
    EXPECT_EQ(pos, 6u);
    struct kl_model_info info = {};
    info.struct_size = sizeof(info);
    ASSERT_EQ(kl_model_info(model, &info), KL_OK);
    std::vector<float> a(info.vocab_size), b(info.vocab_size);
    ASSERT_EQ(kl_session_append(s, prompt.data(), 3, KL_LOGITS_LAST, a.data()), KL_OK);
    ASSERT_EQ(kl_session_append(twin, prompt.data(), 3, KL_LOGITS_LAST, b.data()), KL_OK);
    EXPECT_EQ(a, b);
    kl_session_free(twin);
    kl_session_free(s);
    kl_model_free(model);
}

TEST_F(CApiSession, TwoThreadsSharingOneModelMatchSequentialRuns) {
    std::vector<int32_t> x = {1, 5, 9, 13, 17, 21}, y = {2, 4, 6, 8};
    auto run = [&](const std::vector<int32_t>& tokens) {
        kl_session* s = session();
        std::vector<float> out;
        for (int i = 0; i < 5; ++i) out = append(s, tokens);
        kl_session_free(s);
        return out;
    };
    const auto want_x = run(x), want_y = run(y);
    std::vector<float> got_x, got_y;
    std::thread tx([&] { got_x = run(x); });
    std::thread ty([&] { got_y = run(y); });
    tx.join();
    ty.join();
    EXPECT_EQ(got_x, want_x);
    EXPECT_EQ(got_y, want_y);
}

TEST_F(CApiSession, ModelInfoDescribesTheModel) {
    struct kl_model_info info = {};
    info.struct_size = sizeof(info);
    ASSERT_EQ(kl_model_info(model, &info), KL_OK);
    EXPECT_EQ(info.vocab_size, 256u);
    EXPECT_EQ(info.n_layers, 4u);
    EXPECT_EQ(info.n_kda_layers, 3u);
    EXPECT_EQ(info.n_mla_layers, 1u);
    EXPECT_EQ(info.n_experts, 8u);
    EXPECT_EQ(info.n_experts_active, 2u);
    EXPECT_EQ(info.device, KL_DEVICE_CPU);
    EXPECT_EQ(info.kv_bytes_per_token, (32u + 8u) * 4u);
    // 3 KDA layers: S [2,16,16] + conv 3 x [3, 32], fp32.
    EXPECT_EQ(info.session_fixed_bytes, 3u * (2 * 16 * 16 + 3 * 3 * 32) * 4u);
    // The CPU backend holds every weight once in fp32 (the lm_head is not tied here).
    EXPECT_EQ(info.n_params * 4u, info.weight_bytes);
    // A token skips 6 of 8 experts [3 x 64 x 32] in each of 3 MoE layers, and all but one
    // row of the embedding [256, 64].
    EXPECT_EQ(info.n_params - info.n_active_params, 3u * 6u * 3u * 64u * 32u + 256u * 64u);
    EXPECT_EQ(info.n_routed_params, 3u * 8u * 3u * 64u * 32u);  // all 8 experts, 3 layers
    // In the form the CPU backend holds them: fp32.
    EXPECT_EQ(info.decode_weight_bytes, info.n_active_params * 4u);
    EXPECT_EQ(info.routed_weight_bytes, 3u * 8u * 3u * 64u * 32u * 4u);
    kl_model_params params;
    kl_model_params_default(&params);
    params.device = KL_DEVICE_CUDA;
    kl_model* gpu = nullptr;
    // Without a CUDA build: UNSUPPORTED; with one but no usable GPU: DEVICE.
    const kl_status status = kl_model_load(kl::test::tiny_model_dir().c_str(), &params, &gpu);
    if (status == KL_OK) {
        kl_model_free(gpu);
    } else {
        EXPECT_TRUE(status == KL_ERR_UNSUPPORTED || status == KL_ERR_DEVICE)
            << kl_status_string(status);
        EXPECT_NE(std::string(kl_last_error()).find("CUDA"), std::string::npos) << kl_last_error();
    }
    int not_a_device = 42;  // what a C caller could pass
    std::memcpy(&params.device, &not_a_device, sizeof(not_a_device));
    expect_failure(kl_model_load(kl::test::tiny_model_dir().c_str(), &params, &gpu),
                   KL_ERR_INVALID_ARGUMENT, "42");
    params.device = KL_DEVICE_CPU;
    params.n_threads = -1;
    expect_failure(kl_model_load(kl::test::tiny_model_dir().c_str(), &params, &gpu),
                   KL_ERR_INVALID_ARGUMENT, "n_threads");
}

TEST_F(CApiSession, WeightBytesAreAsTheBackendHoldsTheWeights) {
    struct kl_model_info plain = {};
    plain.struct_size = sizeof(plain);
    ASSERT_EQ(kl_model_info(model, &plain), KL_OK);
    // FP8 or INT4 on load: the CPU backend dequantizes them, so a decode step still reads an
    // fp32 weight for each active parameter.
    for (kl_weight_format format : {KL_WEIGHTS_FP8, KL_WEIGHTS_INT4}) {
        SCOPED_TRACE(format);
        kl_model_params params = kl::test::cpu_params();
        params.weight_format = format;
        kl_model* quantized = nullptr;
        ASSERT_EQ(kl_model_load(kl::test::tiny_model_dir().c_str(), &params, &quantized), KL_OK)
            << kl_last_error();
        struct kl_model_info info = {};
        info.struct_size = sizeof(info);
        ASSERT_EQ(kl_model_info(quantized, &info), KL_OK);
        kl_model_free(quantized);
        EXPECT_EQ(info.n_active_params, plain.n_active_params);
        EXPECT_EQ(info.decode_weight_bytes, plain.n_active_params * 4u);
        EXPECT_EQ(info.routed_weight_bytes, plain.n_routed_params * 4u);
    }
    // An older caller's struct ends before decode_weight_bytes: neither is written.
    struct kl_model_info old;
    std::memset(&old, 0x7f, sizeof(old));
    old.struct_size = offsetof(struct kl_model_info, decode_weight_bytes);
    ASSERT_EQ(kl_model_info(model, &old), KL_OK);
    EXPECT_EQ(old.n_routed_params, plain.n_routed_params);
    EXPECT_EQ(old.decode_weight_bytes, 0x7f7f7f7f7f7f7f7fu);
    EXPECT_EQ(old.routed_weight_bytes, 0x7f7f7f7f7f7f7f7fu);
}

// The tiny preset has no room for a tokenizer (vocab 256): its folder has no tiktoken.model.
TEST_F(CApiSession, TextFunctionsAreUnsupportedWithoutTokenizerFiles) {
    int32_t ids[4];
    size_t n = 7;
    expect_failure(kl_tokenize(model, "hi", 2, 0, ids, 4, &n), KL_ERR_UNSUPPORTED, "tokenizer");
    char text[8];
    expect_failure(kl_detokenize(model, ids, 0, text, 8, &n), KL_ERR_UNSUPPORTED, "tokenizer");
    kl_chat_message m = {"user", "hi"};
    expect_failure(kl_chat_template_apply(model, &m, 1, 1, text, 8, &n), KL_ERR_UNSUPPORTED,
                   "tokenizer");
    kl_session* s = session();
    append(s, {1, 2});
    kl_generate_params gp;
    kl_generate_params_default(&gp);
    const char* stop = "x";
    gp.stop_strings = &stop;
    gp.n_stop_strings = 1;
    expect_failure(kl_session_generate(s, &gp, nullptr, nullptr, nullptr), KL_ERR_UNSUPPORTED,
                   "tiktoken.model");
    EXPECT_EQ(position(s), 2u);
    kl_session_free(s);
}

}  // namespace
