// Google Benchmark of the decode batcher's scheduling (core/group_commit.h) with the model
// taken out: T threads each take turns at a sample pass and a step pass, as the threads of
// kl_session_next and kl_session_generate do, and each pass only sleeps for the time a GPU
// pass of its size took (docs/perf/batched-decode.md, 48B model at 4K: a step of n sessions
// ~ 4.0 + 0.36 n ms, a sample ~ 0.1 + 0.002 n ms). What it measures is how well the passes
// stay whole: the mean step pass size (ideal: T) and the rate next to that of one whole pass
// per round ("ideal tok/s").
//   build/tools/bench_group_commit
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "core/group_commit.h"

namespace {

using Micros = std::chrono::microseconds;

// The sleep of a pass of n jobs: fixed + per_job * n microseconds.
struct PassCost {
    double fixed, per_job;
    Micros of(size_t n) const { return Micros(static_cast<int64_t>(fixed + per_job * n)); }
};

constexpr PassCost kStep{4000, 360};
constexpr PassCost kSample{100, 2};
constexpr int kRounds = 48;  // steps per thread per iteration

struct Job : kl::GroupJob {};

// args: threads, wait (µs).
void BM_ThreadsThroughBatcher(benchmark::State& state) {
    const size_t threads = static_cast<size_t>(state.range(0));
    const Micros wait(state.range(1));
    size_t passes = 0, steps = 0;
    for (auto _ : state) {
        // As core/decode_batcher.cpp has them: only the step lane waits.
        kl::GroupCommit<Job> step_lane(threads, wait), sample_lane(threads, Micros(0));
        std::atomic<size_t> step_passes{0};
        const auto run_step = [&](const std::vector<Job*>& pass) {
            step_passes.fetch_add(1);
            std::this_thread::sleep_for(kStep.of(pass.size()));
        };
        const auto run_sample = [&](const std::vector<Job*>& pass) {
            std::this_thread::sleep_for(kSample.of(pass.size()));
        };
        std::vector<char> members(threads);
        std::vector<std::thread> pool;
        for (size_t t = 0; t < threads; ++t)
            pool.emplace_back([&, t] {
                for (int r = 0; r < kRounds; ++r) {
                    Job sample, step;
                    sample.member = step.member = &members[t];  // one member per thread
                    sample_lane.submit(sample, run_sample);
                    step_lane.submit(step, run_step);
                }
            });
        for (auto& t : pool) t.join();
        passes += step_passes.load();
        steps += threads * kRounds;
    }
    const double ideal_round_s = (kStep.of(threads) + kSample.of(threads)).count() * 1e-6;
    state.counters["tokens/s"] =
        benchmark::Counter(static_cast<double>(steps), benchmark::Counter::kIsRate);
    state.counters["ideal tok/s"] = threads / ideal_round_s;
    state.counters["mean pass"] = static_cast<double>(steps) / passes;
}

BENCHMARK(BM_ThreadsThroughBatcher)
    ->ArgNames({"threads", "wait_us"})
    ->ArgsProduct({{8, 32, 64}, {0, 500, 2000}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
