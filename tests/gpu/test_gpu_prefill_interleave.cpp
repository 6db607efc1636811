// A long prefill on the CUDA backend lets the decode steps of other sessions run between its
// pieces (CudaBackend::forward yields its FIFO lock to waiting passes after each kPiece
// tokens): a thread decoding one session while another prefills four pieces (three of
// 4096 tokens) never waits much longer than one piece for its next step (the longest gap
// between steps under 60% of the prefill; with the model's lock held for the whole prefill
// it was all of it), and both sessions end as they would alone (the pieces never share the
// workspace with the passes between them). Skipped (GTEST_SKIP) without a usable GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "backends/cuda/cuda_model.h"
#include "compare.h"
#include "core/model.h"
#include "gpu_test_util.h"
#include "random_tokens.h"
#include "tiny_model.h"

namespace {

using kl::test::random_tokens;
using kl::test::rel_error;

TEST(GpuPrefillInterleave, DecodeStepsOfOtherSessionsRunBetweenThePieces) {
    if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
    kl::ModelLoadOptions options;
    options.device = kl::DeviceRequest::Cuda;
    auto model = kl::Model::load(kl::test::tiny_model_dir("--preset tiny --seed 1"), options);
    const kl::Backend& b = model->backend();
    const size_t vocab = model->config().vocab_size;
    const std::atomic<bool> never(false);
    const size_t n = 3 * kl::cuda::kPiece + 37;  // four pieces: three places to step aside
    const std::vector<int32_t> prompt = random_tokens(n, int64_t(vocab), 11);
    const std::vector<int32_t> decode_prompt = random_tokens(5, int64_t(vocab), 12);
    constexpr size_t kMaxSteps = 200;
    const std::vector<int32_t> steps = random_tokens(kMaxSteps, int64_t(vocab), 13);

    // Alone: the prefill twice (how far two identical runs may differ: the tolerance), and
    // the decode session's state to step a twin from.
    std::vector<float> alone[2];
    for (auto& logits : alone) {
        auto st = b.create_state(n + 1);
        b.forward(*st, 0, prompt.data(), n, nullptr, nullptr, never);
        logits = logits_of(b, *st, vocab);
    }
    const double tolerance = std::max(1e-6, 2 * rel_error(alone[1], alone[0]));
    auto decoding = b.create_state(decode_prompt.size() + kMaxSteps + 1);
    b.forward(*decoding, 0, decode_prompt.data(), decode_prompt.size(), nullptr, nullptr, never);
    auto twin = b.clone_state(*decoding);

    // Together: one thread prefills, this one steps the other session until it is done.
    using Clock = std::chrono::steady_clock;
    auto prefilled = b.create_state(n + 1);
    std::atomic<bool> started(false), done(false);
    Clock::time_point begin, end;
    std::thread prefill([&] {
        begin = Clock::now();
        started = true;
        b.forward(*prefilled, 0, prompt.data(), n, nullptr, nullptr, never);
        end = Clock::now();
        done = true;
    });
    while (!started) std::this_thread::yield();
    std::vector<Clock::time_point> finished;  // each decode step's end
    while (!done && finished.size() < kMaxSteps) {
        const size_t i = finished.size();
        b.forward(*decoding, decode_prompt.size() + i, &steps[i], 1, nullptr, nullptr, never);
        finished.push_back(Clock::now());
    }
    prefill.join();
    const size_t stepped = finished.size();
    // The longest the decode thread went without a step while the prefill ran.
    Clock::duration longest{0};
    Clock::time_point last = begin;
    size_t during = 0;
    for (const Clock::time_point t : finished)
        if (t > begin && t < end) longest = std::max(longest, t - last), last = t, ++during;
    longest = std::max(longest, end - last);
    const double ms = 1e-6;
    const double whole = double(std::chrono::nanoseconds(end - begin).count()) * ms;
    const double gap = double(std::chrono::nanoseconds(longest).count()) * ms;
    std::printf(
        "[ interleave ] %zu-token prefill %.1f ms, %zu decode steps inside it, longest "
        "wait %.1f ms\n",
        n, whole, during, gap);
    EXPECT_GE(during, 2u) << "decode steps got through between the prefill's pieces";
    EXPECT_LT(gap, 0.6 * whole) << "no decode step waited for most of the prefill";

    EXPECT_LE(rel_error(logits_of(b, *prefilled, vocab), alone[0]), tolerance)
        << "the prefill as alone";
    for (size_t i = 0; i < stepped; ++i)
        b.forward(*twin, decode_prompt.size() + i, &steps[i], 1, nullptr, nullptr, never);
    EXPECT_LE(rel_error(logits_of(b, *decoding, vocab), logits_of(b, *twin, vocab)), 1e-6)
        << "the decode session as alone after " << stepped << " steps";
}

}  // namespace
