// core/decode_batcher.h on a backend that only records its passes: steps that threads run at
// the same time share passes, a pass never exceeds max_batch, each step's row reaches the
// pass with its own state, position and token, a pass waits for the sessions of the previous
// one (batch_wait_us) and stops waiting for one that left, a failed pass fails exactly its
// steps, a
// step whose cancel is set when its pass starts runs nothing, and concurrent samples share
// sample_batch calls, each thread getting its own token.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "allocation_failure.h"
#include "core/decode_batcher.h"
#include "core/error.h"

namespace {

struct Row {
    kl::BackendState* state;
    uint64_t position;
    int32_t token;
};

// A backend whose passes take `pass_time` and are recorded; the rest is never called.
class RecordingBackend final : public kl::Backend {
public:
    explicit RecordingBackend(std::chrono::milliseconds pass_time) : pass_time_(pass_time) {}
    kl::DeviceKind device() const override { return kl::DeviceKind::Cpu; }
    uint64_t weight_bytes() const override { return 0; }
    uint64_t session_fixed_bytes() const override { return 0; }
    uint64_t kv_bytes_per_token() const override { return 0; }
    std::unique_ptr<kl::BackendState> create_state(uint64_t) const override { return nullptr; }
    std::unique_ptr<kl::BackendState> clone_state(const kl::BackendState&) const override {
        return nullptr;
    }
    void reset_state(kl::BackendState&) const override {}
    void fill_synthetic(kl::BackendState&, uint64_t, uint64_t) const override {}
    void read_logits(const kl::BackendState&, float*) const override {}
    void write_logits(kl::BackendState&, const float*) const override {}
    void save_layer(const kl::BackendState&, size_t, uint64_t, uint8_t*) const override {}
    void load_layer(kl::BackendState&, size_t, uint64_t, const uint8_t*) const override {}
    // A lone step comes through forward(), a pass of several through forward_batch().
    void forward(kl::BackendState& state, uint64_t position, const int32_t* tokens, size_t n,
                 float* last, float* all, const std::atomic<bool>&) const override {
        EXPECT_EQ(n, 1u);
        EXPECT_EQ(last, nullptr);
        EXPECT_EQ(all, nullptr);
        kl::BackendState* states[] = {&state};
        record(states, &position, tokens, 1);
    }
    void forward_batch(kl::BackendState* const* states, const uint64_t* positions,
                       const int32_t* tokens, size_t n) const override {
        EXPECT_GT(n, 1u);
        record(states, positions, tokens, n);
    }
    void record(kl::BackendState* const* states, const uint64_t* positions,
                const int32_t* tokens, size_t n) const {
        std::this_thread::sleep_for(pass_time_);
        std::lock_guard<std::mutex> lock(mutex_);
        std::vector<Row> pass;
        for (size_t i = 0; i < n; ++i) pass.push_back({states[i], positions[i], tokens[i]});
        passes_.push_back(pass);
        for (const Row& r : pass)
            if (r.token == kFailingToken) kl::fail(kl::Status::OutOfMemory, "device full");
    }
    // Samples: token = 7 * position + 1; records each pass's size.
    void sample_batch(const kl::BackendState* const*, const kl::SamplingParams*,
                      const int32_t* const*, const size_t*, const uint64_t* positions, size_t n,
                      int32_t* out) const override {
        std::this_thread::sleep_for(pass_time_);
        for (size_t i = 0; i < n; ++i) out[i] = static_cast<int32_t>(7 * positions[i] + 1);
        std::lock_guard<std::mutex> lock(mutex_);
        sample_passes_.push_back(n);
    }
    std::vector<size_t> sample_passes() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return sample_passes_;
    }
    std::vector<std::vector<Row>> passes() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return passes_;
    }
    static constexpr int32_t kFailingToken = -7;

private:
    std::chrono::milliseconds pass_time_;
    mutable std::mutex mutex_;
    mutable std::vector<std::vector<Row>> passes_;
    mutable std::vector<size_t> sample_passes_;
};

struct FakeState final : kl::BackendState {
    FakeState() : kl::BackendState(100, 1) {}
};

TEST(DecodeBatcher, ConcurrentStepsShareBoundedPassesWithTheirOwnRows) {
    constexpr int kThreads = 8, kSteps = 5;
    constexpr size_t kMaxBatch = 3;
    RecordingBackend backend(std::chrono::milliseconds(20));
    kl::DecodeBatcher batcher(backend, kMaxBatch, std::chrono::microseconds(0));
    std::vector<FakeState> states(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            const std::atomic<bool> never(false);
            for (int step = 0; step < kSteps; ++step)
                batcher.step(states[t], 10 * t + step, 100 * t + step, never);
        });
    for (auto& th : threads) th.join();

    const auto passes = backend.passes();
    size_t rows = 0, shared = 0;
    std::vector<std::vector<uint64_t>> positions_of(kThreads);
    for (const auto& pass : passes) {
        EXPECT_LE(pass.size(), kMaxBatch);
        rows += pass.size();
        shared += pass.size() > 1;
        for (const Row& r : pass) {
            const auto t = static_cast<size_t>(static_cast<FakeState*>(r.state) - states.data());
            ASSERT_LT(t, states.size());
            EXPECT_EQ(r.token, static_cast<int32_t>(100 * t + r.position - 10 * t));
            positions_of[t].push_back(r.position);
        }
    }
    EXPECT_EQ(rows, static_cast<size_t>(kThreads * kSteps)) << "every step ran exactly once";
    // 8 threads against 20 ms passes: most steps wait for a pass and share the next one.
    EXPECT_GE(shared, 2u) << passes.size() << " passes";
    for (int t = 0; t < kThreads; ++t) {
        std::vector<uint64_t> want;
        for (int step = 0; step < kSteps; ++step) want.push_back(10 * t + step);
        EXPECT_EQ(positions_of[t], want) << "each thread's steps in its order";
    }
}

// Steps of a, then b and c while a's pass runs, then a's next step 50 ms after its pass:
// the pass after a's waits for a (a session of the previous pass) and takes b and c with it,
// so a thread that split off joins the others again (the passes: {a}, {b, c, a}).
void split_off_and_merge(kl::DecodeBatcher& batcher, FakeState& a, FakeState& b, FakeState& c) {
    using std::chrono::milliseconds;
    const std::atomic<bool> never(false);
    std::thread first([&] {
        batcher.step(a, 0, 1, never);  // a pass of one: nothing before it to wait for
        std::this_thread::sleep_for(milliseconds(50));  // the thread's host work
        batcher.step(a, 1, 2, never);
    });
    std::this_thread::sleep_for(milliseconds(30));
    std::thread second([&] { batcher.step(b, 0, 3, never); });
    std::thread third([&] { batcher.step(c, 0, 4, never); });
    first.join(), second.join(), third.join();
}

TEST(DecodeBatcher, APassWaitsForTheSessionsOfThePreviousPass) {
    using std::chrono::milliseconds;
    RecordingBackend backend(milliseconds(100));
    kl::DecodeBatcher batcher(backend, 8, std::chrono::microseconds(2000000));
    FakeState a, b, c;
    const auto start = std::chrono::steady_clock::now();
    split_off_and_merge(batcher, a, b, c);
    EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(1500))
        << "nobody waited the full 2 s";
    const auto passes = backend.passes();
    ASSERT_EQ(passes.size(), 2u);
    ASSERT_EQ(passes[0].size(), 1u);
    EXPECT_EQ(passes[0][0].state, &a);
    ASSERT_EQ(passes[1].size(), 3u) << "a's next step joined b's and c's pass";
    // Queue order: b and c (either first), then a, at its next position.
    EXPECT_EQ(passes[1][2].state, &a);
    EXPECT_EQ(passes[1][2].position, 1u);
}

TEST(DecodeBatcher, ASessionThatLeftCostsOneWaitThenNoMore) {
    using std::chrono::milliseconds;
    using Clock = std::chrono::steady_clock;
    RecordingBackend backend(milliseconds(20));
    kl::DecodeBatcher batcher(backend, 8, std::chrono::microseconds(300000));
    FakeState a, b, c;
    split_off_and_merge(batcher, a, b, c);  // the last pass: a, b and c
    ASSERT_EQ(backend.passes().size(), 2u);
    const std::atomic<bool> never(false);
    // c's conversation ended; a and b go on. The first pass waits 300 ms for c in vain.
    const auto two_steps = [&](uint64_t position) {
        const auto start = Clock::now();
        std::thread other([&] { batcher.step(b, position, 5, never); });
        batcher.step(a, position, 6, never);
        other.join();
        return Clock::now() - start;
    };
    const auto waited = two_steps(2);
    // The second pass expects only a and b: no wait (two 20 ms passes at worst, if they split).
    const auto not_waited = two_steps(3);
    EXPECT_GE(waited, milliseconds(300)) << "the pass waited for c";
    EXPECT_LT(not_waited, milliseconds(250)) << "nobody waited for c again";
    const auto passes = backend.passes();
    size_t rows = 0;
    for (size_t i = 2; i < passes.size(); ++i) {
        rows += passes[i].size();
        for (const Row& r : passes[i]) EXPECT_NE(r.state, &c);
    }
    EXPECT_EQ(rows, 4u);
}

TEST(DecodeBatcher, AFailedPassFailsItsStepsAndACancelledStepRunsNothing) {
    RecordingBackend backend(std::chrono::milliseconds(0));
    kl::DecodeBatcher batcher(backend, 4, std::chrono::microseconds(0));
    FakeState a;
    const std::atomic<bool> never(false), cancelled(true);
    try {
        batcher.step(a, 0, RecordingBackend::kFailingToken, never);
        ADD_FAILURE() << "the pass's failure was not reported";
    } catch (const kl::Error& e) {
        EXPECT_EQ(e.status(), kl::Status::OutOfMemory);
    }
    const size_t before = backend.passes().size();
    try {
        batcher.step(a, 0, 1, cancelled);
        ADD_FAILURE() << "a cancelled step ran";
    } catch (const kl::Error& e) {
        EXPECT_EQ(e.status(), kl::Status::Cancelled);
    }
    EXPECT_EQ(backend.passes().size(), before) << "no pass ran for a cancelled step";
    batcher.step(a, 0, 1, never);  // the batcher still works
    EXPECT_EQ(backend.passes().size(), before + 1);
}

// Each allocation of two steps on two sessions (so that each pass waits for the other's
// session: the member sets are copied) failing in turn: the step that meets it fails with
// out of memory or runs, nothing hangs, and afterwards the batcher runs passes as before.
TEST(DecodeBatcher, AFailedAllocationFailsOrRunsTheStepsAndNothingHangs) {
    if (!kl::test::FailAllocation::available()) GTEST_SKIP() << "operator new not replaced here";
    RecordingBackend backend(std::chrono::milliseconds(0));
    kl::DecodeBatcher batcher(backend, 8, std::chrono::microseconds(1000));
    FakeState a, b;
    const std::atomic<bool> never(false);
    bool all_reached = false;
    for (long index = 0; index < 200 && !all_reached; ++index) {
        kl::test::FailAllocation fail(index);
        try {
            batcher.step(a, uint64_t(index), 1, never);
            batcher.step(b, uint64_t(index), 2, never);
        } catch (const std::bad_alloc&) {
        } catch (const kl::Error& e) {
            EXPECT_EQ(e.status(), kl::Status::OutOfMemory) << e.what();
        }
        all_reached = !fail.fired();
    }
    EXPECT_TRUE(all_reached) << "two steps made more than 200 allocations";
    const size_t before = backend.passes().size();
    batcher.step(a, 1000, 3, never);
    batcher.step(b, 1000, 4, never);
    EXPECT_EQ(backend.passes().size(), before + 2);
}

TEST(DecodeBatcher, ConcurrentSamplesSharePassesAndEachGetsItsOwnToken) {
    constexpr int kThreads = 8;
    RecordingBackend backend(std::chrono::milliseconds(20));
    kl::DecodeBatcher batcher(backend, 4, std::chrono::microseconds(0));
    std::vector<FakeState> states(kThreads);
    std::vector<int32_t> got(kThreads, -1);
    std::vector<std::thread> threads;
    const kl::SamplingParams greedy;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] { got[t] = batcher.sample(states[t], greedy, nullptr, 0, t); });
    for (auto& th : threads) th.join();
    for (int t = 0; t < kThreads; ++t) EXPECT_EQ(got[t], 7 * t + 1) << "thread " << t;
    const auto passes = backend.sample_passes();
    size_t total = 0, shared = 0;
    for (size_t n : passes) {
        EXPECT_LE(n, 4u);
        total += n;
        shared += n > 1;
    }
    EXPECT_EQ(total, static_cast<size_t>(kThreads));
    EXPECT_GE(shared, 1u) << passes.size() << " sample passes";
}

}  // namespace
