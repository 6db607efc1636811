// The cancel rule (docs/design/capi.md "Cancel"): kl_session_cancel makes a request pending;
// the first cancellable call (append, next, generate, generator_next) that runs while it is
// pending returns KL_ERR_CANCELLED and consumes it, so a cancel landing between two calls of a
// streaming loop stops the loop instead of being wiped by the next call.
// kl_generator_create, kl_session_reset and kl_session_clear_cancel drop a pending request.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>
#include <vector>

#include "kimi_linear.h"
#include "tiny_model.h"

namespace {

struct CApiCancelRule : ::testing::Test {
    void SetUp() override {
        ASSERT_EQ(kl_model_load(kl::test::tiny_model_dir().c_str(), nullptr, &model), KL_OK)
            << kl_last_error();
    }
    void TearDown() override { kl_model_free(model); }

    kl_session* session_with_prompt() {
        kl_session* s = nullptr;
        EXPECT_EQ(kl_session_create(model, nullptr, &s), KL_OK) << kl_last_error();
        const int32_t prompt[] = {1, 2, 3};
        EXPECT_EQ(kl_session_append(s, prompt, 3, KL_LOGITS_NONE, nullptr), KL_OK);
        return s;
    }
    static uint64_t position(kl_session* s) {
        uint64_t p = 0;
        EXPECT_EQ(kl_session_position(s, &p), KL_OK);
        return p;
    }

    kl_model* model = nullptr;
};

constexpr int32_t kOne = 5;

TEST_F(CApiCancelRule, APendingCancelStopsTheNextCancellableCallAndIsConsumedByIt) {
    kl_session* s = session_with_prompt();
    kl_sampling_params sp;
    kl_sampling_params_default(&sp);
    int32_t token = 0;

    // append
    kl_session_cancel(s);
    EXPECT_EQ(kl_session_append(s, &kOne, 1, KL_LOGITS_NONE, nullptr), KL_ERR_CANCELLED);
    EXPECT_EQ(position(s), 3u);
    EXPECT_EQ(kl_session_append(s, &kOne, 1, KL_LOGITS_NONE, nullptr), KL_OK) << "consumed";
    // next
    kl_session_cancel(s);
    EXPECT_EQ(kl_session_next(s, &sp, &token, nullptr, 0, nullptr), KL_ERR_CANCELLED);
    EXPECT_EQ(position(s), 4u);
    EXPECT_EQ(kl_session_next(s, &sp, &token, nullptr, 0, nullptr), KL_OK);
    // generate: nothing streamed, nothing appended
    kl_generate_params gp;
    kl_generate_params_default(&gp);
    gp.max_new_tokens = 4;
    size_t generated = 99;
    kl_session_cancel(s);
    EXPECT_EQ(kl_session_generate(s, &gp, nullptr, nullptr, &generated), KL_ERR_CANCELLED);
    EXPECT_EQ(generated, 0u);
    EXPECT_EQ(position(s), 5u);
    EXPECT_EQ(kl_session_generate(s, &gp, nullptr, nullptr, &generated), KL_OK);
    EXPECT_EQ(generated, 4u);

    // Calls that run nothing neither see nor consume it.
    kl_session_cancel(s);
    size_t bytes = 0;
    uint64_t where = 0;
    EXPECT_EQ(kl_session_position(s, &where), KL_OK);
    EXPECT_EQ(kl_session_state_size(s, &bytes), KL_OK);
    EXPECT_EQ(kl_session_sample(s, &sp, &token), KL_OK);
    kl_session* copy = nullptr;
    ASSERT_EQ(kl_session_fork(s, &copy), KL_OK);
    EXPECT_EQ(kl_session_append(copy, &kOne, 1, KL_LOGITS_NONE, nullptr), KL_OK)
        << "a fork starts with no pending cancel";
    kl_session_free(copy);
    EXPECT_EQ(kl_session_append(s, &kOne, 1, KL_LOGITS_NONE, nullptr), KL_ERR_CANCELLED);
    kl_session_free(s);
}

TEST_F(CApiCancelRule, ClearCancelResetAndGeneratorCreateDropAPendingCancel) {
    kl_session* s = session_with_prompt();
    kl_session_cancel(s);
    kl_session_clear_cancel(s);
    EXPECT_EQ(kl_session_append(s, &kOne, 1, KL_LOGITS_NONE, nullptr), KL_OK);

    kl_session_cancel(s);
    ASSERT_EQ(kl_session_reset(s), KL_OK);
    EXPECT_EQ(kl_session_append(s, &kOne, 1, KL_LOGITS_NONE, nullptr), KL_OK);

    // A generator starts a new generation: a cancel from before it was aimed at what came
    // before. One requested after it stops its next step, even a prompt appended by hand.
    kl_session_cancel(s);
    kl_generator* g = nullptr;
    ASSERT_EQ(kl_generator_create(s, nullptr, &g), KL_OK);
    kl_generation_step step;
    step.struct_size = sizeof(step);
    EXPECT_EQ(kl_generator_next(g, &step), KL_OK) << kl_last_error();
    kl_session_cancel(s);
    EXPECT_EQ(kl_session_append(s, &kOne, 1, KL_LOGITS_NONE, nullptr), KL_ERR_CANCELLED);
    kl_session_cancel(s);
    EXPECT_EQ(kl_generator_next(g, &step), KL_ERR_CANCELLED);
    EXPECT_EQ(kl_generator_next(g, &step), KL_OK);
    kl_generator_free(g);
    kl_session_clear_cancel(nullptr);  // a no-op, like kl_session_cancel(NULL)
    kl_session_free(s);
}

// The measured bug: a kl_session_next loop with a cancel from another thread at a random
// moment ran to its end in about half the trials, because each call wiped the request.
// Every cancel must stop the loop: the call running when it lands, or the next one.
enum class Loop { Next, Generator, Generate };

int ignored_cancels(kl_model* model, Loop loop, int trials) {
    std::mt19937 rng(1234);
    std::uniform_int_distribution<int> delay_us(0, 3000);
    constexpr uint32_t kMaxSteps = 3000;  // far longer than the largest delay
    int ignored = 0;
    for (int trial = 0; trial < trials; ++trial) {
        kl_session* s = nullptr;
        EXPECT_EQ(kl_session_create(model, nullptr, &s), KL_OK);
        const int32_t prompt[] = {1, 2, 3};
        EXPECT_EQ(kl_session_append(s, prompt, 3, KL_LOGITS_NONE, nullptr), KL_OK);
        kl_generate_params gp;
        kl_generate_params_default(&gp);
        gp.max_new_tokens = kMaxSteps;
        kl_generator* g = nullptr;
        if (loop == Loop::Generator) {
            EXPECT_EQ(kl_generator_create(s, &gp, &g), KL_OK);
        }

        const int wait = delay_us(rng);
        std::thread canceller([s, wait] {
            std::this_thread::sleep_for(std::chrono::microseconds(wait));
            kl_session_cancel(s);
        });
        kl_status status = KL_OK;
        if (loop == Loop::Generate) {
            status = kl_session_generate(s, &gp, nullptr, nullptr, nullptr);
        } else {
            kl_sampling_params sp;
            kl_sampling_params_default(&sp);
            kl_generation_step step;
            step.struct_size = sizeof(step);
            for (uint32_t i = 0; i <= kMaxSteps && status == KL_OK; ++i) {
                int32_t token;
                status = loop == Loop::Next ? kl_session_next(s, &sp, &token, nullptr, 0, nullptr)
                                            : kl_generator_next(g, &step);
            }
        }
        canceller.join();
        if (status != KL_ERR_CANCELLED) ++ignored;
        EXPECT_TRUE(status == KL_OK || status == KL_ERR_CANCELLED) << kl_status_string(status);
        kl_generator_free(g);
        kl_session_free(s);
    }
    return ignored;
}

TEST_F(CApiCancelRule, ACancelAtARandomMomentAlwaysStopsANextLoop) {
    EXPECT_EQ(ignored_cancels(model, Loop::Next, 100), 0) << "of 100 cancels";
}

TEST_F(CApiCancelRule, ACancelAtARandomMomentAlwaysStopsAGenerator) {
    EXPECT_EQ(ignored_cancels(model, Loop::Generator, 100), 0) << "of 100 cancels";
}

TEST_F(CApiCancelRule, ACancelAtARandomMomentAlwaysStopsGenerate) {
    EXPECT_EQ(ignored_cancels(model, Loop::Generate, 100), 0) << "of 100 cancels";
}

}  // namespace
