// Many threads over one model, through the C API only: what docs/design/capi.md
// ("Threading and cancel") promises, exercised at once so that ThreadSanitizer (the TSan
// stage of scripts/setup_and_test.sh) sees every shared path: sessions on many threads,
// cancels from other threads, fork and snapshot churn, generators, tokenizing, the model
// freed with live sessions, and one session misused from two threads (KL_ERR_BUSY).
// Each scenario runs for a fixed wall time (kScenario), so the suite stays about 20 s in a
// release build and under TSan alike; what it checks does not depend on how far it got.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kimi_linear.h"
#include "tiny_model.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kScenario = std::chrono::milliseconds(3000);

kl_model* load(const std::string& dir, int threads = 2) {
    kl_model_params mp;
    kl_model_params_default(&mp);
    mp.device = KL_DEVICE_CPU;
    mp.n_threads = threads;
    kl_model* model = nullptr;
    EXPECT_EQ(kl_model_load(dir.c_str(), &mp, &model), KL_OK) << kl_last_error();
    return model;
}

kl_session* prompted(kl_model* model, uint32_t seed) {
    kl_session* s = nullptr;
    EXPECT_EQ(kl_session_create(model, nullptr, &s), KL_OK) << kl_last_error();
    const int32_t prompt[] = {static_cast<int32_t>(1 + seed % 200), 7, 9, 11};
    EXPECT_EQ(kl_session_append(s, prompt, 4, KL_LOGITS_NONE, nullptr), KL_OK) << kl_last_error();
    return s;
}

// The greedy tokens a generator gives on s (n of them), or {} after a failure.
std::vector<int32_t> pull(kl_session* s, uint32_t n) {
    kl_generate_params gp;
    kl_generate_params_default(&gp);
    gp.max_new_tokens = n;
    kl_generator* g = nullptr;
    std::vector<int32_t> tokens;
    if (kl_generator_create(s, &gp, &g) != KL_OK) return {};
    kl_generation_step step;
    step.struct_size = sizeof(step);
    do {
        if (kl_generator_next(g, &step) != KL_OK) {
            tokens.clear();
            break;
        }
        if (step.token != KL_NO_TOKEN) tokens.push_back(step.token);
    } while (step.end == KL_END_NONE);
    kl_generator_free(g);
    return tokens;
}

template <typename Work>
void on_threads(int n, Work work) {
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) threads.emplace_back(work, i);
    for (auto& t : threads) t.join();
}

// Sessions on many threads, each forking, snapshotting into a fresh session and generating:
// a fork and a restored snapshot continue exactly like the original.
TEST(Stress, SessionsForksAndSnapshotsOnManyThreads) {
    kl_model* model = load(kl::test::tiny_model_dir());
    ASSERT_NE(model, nullptr);
    std::atomic<int> rounds{0}, mismatches{0};
    const auto end = Clock::now() + kScenario;
    on_threads(4, [&](int id) {
        for (uint32_t round = 0; Clock::now() < end; ++round) {
            kl_session* s = prompted(model, static_cast<uint32_t>(id) * 1000 + round);
            kl_session* fork = nullptr;
            EXPECT_EQ(kl_session_fork(s, &fork), KL_OK);
            size_t size = 0;
            EXPECT_EQ(kl_session_state_size(s, &size), KL_OK);
            std::vector<uint8_t> blob(size);
            EXPECT_EQ(kl_session_state_save(s, blob.data(), blob.size(), &size), KL_OK);
            kl_session* restored = nullptr;
            EXPECT_EQ(kl_session_create(model, nullptr, &restored), KL_OK);
            EXPECT_EQ(kl_session_state_load(restored, blob.data(), blob.size()), KL_OK);
            const std::vector<int32_t> a = pull(s, 6), b = pull(fork, 6), c = pull(restored, 6);
            if (a.size() != 6 || a != b || a != c) ++mismatches;
            kl_session_free(restored);
            kl_session_free(fork);
            kl_session_free(s);
            ++rounds;
        }
    });
    EXPECT_EQ(mismatches.load(), 0);
    EXPECT_GT(rounds.load(), 0);
    kl_model_free(model);
}

// A model that batches decode steps (max_batch): threads generating on their own sessions,
// forking them, one thread's streams cancelled by another, all through shared batched
// passes; every uncancelled generation gives the tokens the session gives alone.
TEST(Stress, StepsOfManyThreadsBatchedByTheModel) {
    const std::string dir = kl::test::tiny_model_dir();
    kl_model* plain = load(dir);
    ASSERT_NE(plain, nullptr);
    std::vector<std::vector<int32_t>> want(6);
    for (uint32_t id = 0; id < want.size(); ++id) {
        kl_session* s = prompted(plain, id);
        want[id] = pull(s, 8);
        kl_session_free(s);
    }
    kl_model_free(plain);
    kl_model_params mp;
    kl_model_params_default(&mp);
    mp.device = KL_DEVICE_CPU;
    mp.n_threads = 2;
    mp.max_batch = 4;  // fewer than the threads: full passes, and steps left for the next
    mp.batch_wait_us = 200;
    kl_model* model = nullptr;
    ASSERT_EQ(kl_model_load(dir.c_str(), &mp, &model), KL_OK) << kl_last_error();
    std::atomic<int> rounds{0}, mismatches{0}, failures{0};
    const auto end = Clock::now() + kScenario;
    on_threads(6, [&](int id) {
        while (Clock::now() < end) {
            kl_session* s = prompted(model, static_cast<uint32_t>(id));
            if (id == 5) {  // its stream cancelled mid-way by another thread
                kl_generate_params gp;
                kl_generate_params_default(&gp);
                gp.max_new_tokens = 2000;
                kl_generator* g = nullptr;
                if (kl_generator_create(s, &gp, &g) != KL_OK) ++failures;
                std::thread canceller([s] {
                    std::this_thread::sleep_for(std::chrono::microseconds(300));
                    kl_session_cancel(s);
                });
                kl_generation_step step;
                step.struct_size = sizeof(step);
                kl_status status = KL_OK;
                for (int i = 0; i <= 2000 && status == KL_OK; ++i)
                    status = kl_generator_next(g, &step);
                canceller.join();
                if (status != KL_ERR_CANCELLED) ++failures;
                kl_generator_free(g);
            } else {
                kl_session* fork = nullptr;
                if (kl_session_fork(s, &fork) != KL_OK) ++failures;
                if (pull(s, 8) != want[id] || pull(fork, 8) != want[id]) ++mismatches;
                kl_session_free(fork);
            }
            kl_session_free(s);
            ++rounds;
        }
    });
    EXPECT_EQ(mismatches.load(), 0);
    EXPECT_EQ(failures.load(), 0);
    EXPECT_GT(rounds.load(), 0);
    kl_model_free(model);
}

// Streams on several threads, cancelled at random moments by other threads: each stream
// ends cancelled (the cancel is never lost) and its session stays usable.
TEST(Stress, CancelsFromOtherThreadsStopEveryStream) {
    kl_model* model = load(kl::test::tiny_model_dir());
    ASSERT_NE(model, nullptr);
    std::atomic<int> streams{0}, ignored{0}, failures{0};
    const auto end = Clock::now() + kScenario;
    on_threads(3, [&](int id) {
        std::mt19937 rng(static_cast<uint32_t>(id) + 17);
        std::uniform_int_distribution<int> delay_us(0, 2000);
        while (Clock::now() < end) {
            kl_session* s = prompted(model, static_cast<uint32_t>(id));
            kl_generate_params gp;
            kl_generate_params_default(&gp);
            gp.max_new_tokens = 3000;
            kl_generator* g = nullptr;
            EXPECT_EQ(kl_generator_create(s, &gp, &g), KL_OK);
            const int wait = delay_us(rng);
            std::thread canceller([s, wait] {
                std::this_thread::sleep_for(std::chrono::microseconds(wait));
                kl_session_cancel(s);
            });
            kl_generation_step step;
            step.struct_size = sizeof(step);
            kl_status status = KL_OK;
            for (int i = 0; i <= 3000 && status == KL_OK; ++i) status = kl_generator_next(g, &step);
            canceller.join();
            if (status == KL_OK) ++ignored;
            if (status != KL_OK && status != KL_ERR_CANCELLED) ++failures;
            kl_generator_free(g);
            const int32_t one = 3;  // usable after the cancel
            if (kl_session_append(s, &one, 1, KL_LOGITS_NONE, nullptr) != KL_OK) ++failures;
            kl_session_free(s);
            ++streams;
        }
    });
    EXPECT_EQ(ignored.load(), 0) << "of " << streams.load() << " streams";
    EXPECT_EQ(failures.load(), 0);
    kl_model_free(model);
}

// Generators made, stepped and freed in a churn, with kl_session_next and kl_session_generate
// in between, on several sessions at once.
TEST(Stress, GeneratorChurn) {
    kl_model* model = load(kl::test::tiny_model_dir());
    ASSERT_NE(model, nullptr);
    std::atomic<int> failures{0};
    const auto end = Clock::now() + kScenario;
    on_threads(4, [&](int id) {
        kl_session* s = prompted(model, static_cast<uint32_t>(id));
        kl_sampling_params sp;
        kl_sampling_params_default(&sp);
        sp.temperature = 0.8f;
        sp.seed = static_cast<uint64_t>(id);
        for (int round = 0; Clock::now() < end; ++round) {
            uint64_t position = 0;
            kl_session_position(s, &position);
            if (position > 3500) {
                if (kl_session_reset(s) != KL_OK) ++failures;
                const int32_t one = 1;
                kl_session_append(s, &one, 1, KL_LOGITS_NONE, nullptr);
            }
            if (pull(s, 1 + round % 5).empty()) ++failures;
            int32_t token = 0;
            if (kl_session_next(s, &sp, &token, nullptr, 0, nullptr) != KL_OK) ++failures;
            kl_generate_params gp;
            kl_generate_params_default(&gp);
            gp.max_new_tokens = 3;
            gp.sampling = sp;
            if (kl_session_generate(s, &gp, nullptr, nullptr, nullptr) != KL_OK) ++failures;
        }
        kl_session_free(s);
    });
    EXPECT_EQ(failures.load(), 0);
    kl_model_free(model);
}

// The tiny preset with a vocabulary just large enough for a tokenizer (256 bytes + 16 added
// tokens + a few merges): make_tiny_model trains it in no time, even under TSan.
std::string tiny_model_with_tokenizer() {
    std::ifstream in(kl::test::tiny_model_dir() + "/config.json");
    std::string config((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string from = "\"vocab_size\": 256";
    const size_t at = config.find(from);
    EXPECT_NE(at, std::string::npos) << config;
    if (at != std::string::npos) config.replace(at, from.size(), "\"vocab_size\": 320");
    const std::string file = kl::test::temp_dir() + "/config.json";
    std::ofstream(file) << config;
    return kl::test::tiny_model_dir("--config " + file + " --seed 3");
}

// The tokenizer and chat template are shared, read-only, by every thread.
TEST(Stress, TokenizeOnManyThreads) {
    kl_model* model = load(tiny_model_with_tokenizer(), 1);
    ASSERT_NE(model, nullptr);
    const std::string text = "Once upon a time, <|im_end|> a model read 42 tokens. \xc3\xa9\xe2\x82\xac";
    std::vector<int32_t> want(256);
    size_t n = 0;
    ASSERT_EQ(kl_tokenize(model, text.data(), text.size(), 1, want.data(), want.size(), &n), KL_OK);
    want.resize(n);
    std::atomic<int> mismatches{0};
    const auto end = Clock::now() + kScenario / 2;
    on_threads(4, [&](int) {
        std::vector<int32_t> ids(256);
        std::vector<char> back(1024);
        const kl_chat_message chat[] = {{"user", "What is 2 + 2?"}};
        while (Clock::now() < end) {
            size_t count = 0, len = 0;
            if (kl_tokenize(model, text.data(), text.size(), 1, ids.data(), ids.size(), &count) !=
                    KL_OK ||
                std::vector<int32_t>(ids.begin(), ids.begin() + count) != want)
                ++mismatches;
            if (kl_detokenize(model, ids.data(), count, back.data(), back.size(), &len) != KL_OK ||
                std::string(back.data(), len) != text)
                ++mismatches;
            if (kl_chat_template_apply(model, chat, 1, 1, back.data(), back.size(), &len) != KL_OK)
                ++mismatches;
        }
    });
    EXPECT_EQ(mismatches.load(), 0);
    kl_model_free(model);
}

// kimi_linear.h: "Sessions still alive keep working: they hold the weights and tokenizer
// until the last of them is freed." The model is freed while its sessions run on other
// threads; they go on generating, forking and snapshotting.
TEST(Stress, TheModelFreedWithLiveSessions) {
    kl_model* model = load(kl::test::tiny_model_dir());
    ASSERT_NE(model, nullptr);
    std::vector<kl_session*> sessions;
    for (uint32_t i = 0; i < 3; ++i) sessions.push_back(prompted(model, i));
    std::atomic<bool> freed{false};
    std::atomic<int> failures{0}, after{0};
    const auto end = Clock::now() + kScenario / 2;
    std::thread freer([&] {
        std::this_thread::sleep_for(kScenario / 8);
        kl_model_free(model);  // no call may touch `model` after this
        freed = true;
    });
    on_threads(3, [&](int id) {
        kl_session* s = sessions[static_cast<size_t>(id)];
        while (Clock::now() < end) {
            const bool was_freed = freed.load();
            if (pull(s, 4).size() != 4) ++failures;
            kl_session* fork = nullptr;
            if (kl_session_fork(s, &fork) != KL_OK || pull(fork, 2).size() != 2) ++failures;
            kl_session_free(fork);
            if (kl_session_reset(s) != KL_OK) ++failures;
            const int32_t one = 2;
            if (kl_session_append(s, &one, 1, KL_LOGITS_NONE, nullptr) != KL_OK) ++failures;
            if (was_freed) ++after;
        }
    });
    freer.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_GT(after.load(), 0) << "no session ran after the model was freed";
    for (kl_session* s : sessions) kl_session_free(s);  // the last one frees the weights
}

// One session from two threads: a contract violation the library refuses with KL_ERR_BUSY;
// the session stays consistent (its position counts exactly the appends that worked).
TEST(Stress, OneSessionFromTwoThreadsIsBusyNotARace) {
    kl_model* model = load(kl::test::tiny_model_dir());
    ASSERT_NE(model, nullptr);
    kl_session* s = prompted(model, 0);
    std::atomic<int> appended{0}, busy{0}, other{0};
    const auto end = Clock::now() + kScenario / 2;
    on_threads(2, [&](int id) {
        kl_sampling_params sp;
        kl_sampling_params_default(&sp);
        for (int i = 0; Clock::now() < end; ++i) {
            kl_status status;
            int32_t token = 0;
            if ((i + id) % 3 == 0) {
                const int32_t one = 4;
                status = kl_session_append(s, &one, 1, KL_LOGITS_NONE, nullptr);
                if (status == KL_OK) ++appended;
            } else if ((i + id) % 3 == 1) {
                status = kl_session_next(s, &sp, &token, nullptr, 0, nullptr);
                if (status == KL_OK) ++appended;
            } else {
                size_t size = 0;
                status = kl_session_state_size(s, &size);
            }
            if (status == KL_ERR_BUSY)
                ++busy;
            else if (status != KL_OK && status != KL_ERR_CONTEXT_FULL)
                ++other;
        }
    });
    EXPECT_EQ(other.load(), 0);
    EXPECT_GT(busy.load(), 0);
    uint64_t position = 0;
    ASSERT_EQ(kl_session_position(s, &position), KL_OK);
    EXPECT_EQ(position, 4u + static_cast<uint64_t>(appended.load()));
    kl_session_free(s);
    kl_model_free(model);
}

}  // namespace
