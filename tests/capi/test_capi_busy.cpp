// One session, two threads: a contract violation that must fail fast with KL_ERR_BUSY, never
// corrupt the heap (docs/design/capi.md "One call at a time"). Each kl_session_* and
// kl_generator_* call that reads or writes a session holds the session's in-use flag;
// kl_session_cancel does not.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kimi_linear.h"
#include "tiny_model.h"

namespace {

struct CApiBusy : ::testing::Test {
    void SetUp() override {
        ASSERT_EQ(kl_model_load(kl::test::tiny_model_dir().c_str(), nullptr, &model), KL_OK)
            << kl_last_error();
        ASSERT_EQ(kl_session_create(model, nullptr, &session), KL_OK);
        const int32_t prompt[] = {1, 2, 3};
        ASSERT_EQ(kl_session_append(session, prompt, 3, KL_LOGITS_NONE, nullptr), KL_OK);
    }
    void TearDown() override {
        kl_session_free(session);
        kl_model_free(model);
    }
    kl_model* model = nullptr;
    kl_session* session = nullptr;
};

TEST_F(CApiBusy, StatusStringKnowsBusy) {
    EXPECT_STREQ(kl_status_string(KL_ERR_BUSY), "KL_ERR_BUSY");
    EXPECT_GT(static_cast<int>(KL_ERR_BUSY), static_cast<int>(KL_ERR_INTERNAL)) << "appended";
}

// Deterministic: kl_session_generate holds the session while it calls back, so the callback
// calling into the same session meets the flag (cancel excepted).
TEST_F(CApiBusy, ACallbackUsingItsOwnSessionGetsBusy) {
    struct Seen {
        kl_session* s;
        std::vector<kl_status> statuses;
        std::string message;
    } seen{session, {}, {}};
    kl_generate_params gp;
    kl_generate_params_default(&gp);
    gp.max_new_tokens = 3;
    size_t generated = 0;
    ASSERT_EQ(kl_session_generate(
                  session, &gp,
                  [](void* user, int32_t, const char*, size_t) {
                      auto* seen = static_cast<Seen*>(user);
                      uint64_t position = 0;
                      const int32_t token = 1;
                      seen->statuses.push_back(kl_session_position(seen->s, &position));
                      seen->statuses.push_back(
                          kl_session_append(seen->s, &token, 1, KL_LOGITS_NONE, nullptr));
                      seen->message = kl_last_error();
                      return 0;
                  },
                  &seen, &generated),
              KL_OK)
        << kl_last_error();
    EXPECT_EQ(generated, 3u);
    ASSERT_EQ(seen.statuses.size(), 6u);
    for (kl_status status : seen.statuses) EXPECT_EQ(status, KL_ERR_BUSY);
    EXPECT_NE(seen.message.find("in use"), std::string::npos) << seen.message;
    uint64_t position = 0;
    ASSERT_EQ(kl_session_position(session, &position), KL_OK);
    EXPECT_EQ(position, 6u) << "the refused appends changed nothing";
}

// Two threads hammer one session with every kind of call; each call either works or is
// refused with KL_ERR_BUSY, the process survives (ASan/TSan clean), and the position counts
// exactly the appends that worked.
TEST_F(CApiBusy, TwoThreadsHammeringOneSessionGetBusyNotACrash) {
    std::atomic<int> appended{0}, busy{0}, other{0};
    std::atomic<bool> stop{false};
    std::mutex unexpected_mutex;
    std::string unexpected;
    auto hammer = [&](int seed) {
        kl_sampling_params sp;
        kl_sampling_params_default(&sp);
        std::vector<uint8_t> snapshot;
        for (int i = 0; !stop.load(); ++i) {
            const int32_t token = (seed * 7 + i) % 200 + 1;
            kl_status status = KL_OK;
            int32_t sampled = 0;
            uint64_t position = 0;
            size_t size = 0;
            kl_session* copy = nullptr;
            kl_generator* g = nullptr;
            switch ((i + seed) % 6) {
                case 0:
                    status = kl_session_append(session, &token, 1, KL_LOGITS_NONE, nullptr);
                    if (status == KL_OK) ++appended;
                    break;
                case 1:
                    status = kl_session_sample(session, &sp, &sampled);
                    break;
                case 2:
                    status = kl_session_position(session, &position);
                    break;
                case 3:
                    // The other thread may append between the two calls and grow the
                    // snapshot: then the save refuses the smaller buffer and gives the new
                    // size (the header's protocol), and the caller asks again.
                    status = kl_session_state_size(session, &size);
                    for (int tries = 1; status == KL_OK; ++tries) {
                        snapshot.resize(size);
                        const size_t cap = size;
                        status = kl_session_state_save(session, snapshot.data(), cap, &size);
                        const bool grew = status == KL_ERR_INVALID_ARGUMENT && size > cap;
                        if (!grew || tries == 8) break;
                        status = KL_OK;
                    }
                    break;
                case 4:
                    status = kl_session_fork(session, &copy);
                    kl_session_free(copy);
                    break;
                case 5:
                    status = kl_generator_create(session, nullptr, &g);
                    if (status == KL_OK) {
                        kl_generation_step step;
                        step.struct_size = sizeof(step);
                        status = kl_generator_next(g, &step);
                        if (status == KL_OK && step.token != KL_NO_TOKEN) ++appended;
                        kl_generator_free(g);
                    }
                    break;
            }
            if (status == KL_ERR_BUSY)
                ++busy;
            else if (status != KL_OK && status != KL_ERR_CANCELLED &&
                     status != KL_ERR_CONTEXT_FULL) {
                ++other;
                const std::lock_guard<std::mutex> lock(unexpected_mutex);
                unexpected += "call " + std::to_string((i + seed) % 6) + ": " +
                              kl_status_string(status) + " (" + kl_last_error() + ")\n";
            }
            if (i % 50 == 0) kl_session_cancel(session);  // allowed from any thread
        }
    };
    std::thread a(hammer, 1), b(hammer, 2);
    // Until both threads met the flag a few times (bounded).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (busy.load() < 20 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    stop = true;
    a.join();
    b.join();
    EXPECT_GE(busy.load(), 1);
    EXPECT_EQ(other.load(), 0) << unexpected;
    kl_session_clear_cancel(session);
    uint64_t position = 0;
    ASSERT_EQ(kl_session_position(session, &position), KL_OK);
    EXPECT_EQ(position, 3u + static_cast<uint64_t>(appended.load()));
}

}  // namespace
