// Google Benchmark of the CPU backend's hot ops: the GEMM (prefill shapes and decode GEMV)
// and the KDA chunked prefill vs the recurrence. Run: build/tools/bench_cpu_ops
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>
#include <vector>

#include "backends/cpu/ops.h"

namespace {

std::vector<float> random_vector(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal;
    std::vector<float> v(n);
    for (float& x : v) x = normal(rng);
    return v;
}

kl::ThreadPool& pool() {
    static kl::ThreadPool p(0);
    return p;
}

// args: rows of x (tokens), in, out
void BM_Matmul(benchmark::State& state) {
    const size_t n = state.range(0), in = state.range(1), out = state.range(2);
    const auto x = random_vector(n * in, 1), w = random_vector(out * in, 2);
    std::vector<float> y(n * out);
    for (auto _ : state) {
        kl::cpu::matmul_wt(pool(), x.data(), n, in, w.data(), out, y.data());
        benchmark::DoNotOptimize(y.data());
    }
    state.counters["GFLOP/s"] =
        benchmark::Counter(2.0 * n * in * out * state.iterations(), benchmark::Counter::kIsRate,
                           benchmark::Counter::kIs1000);
    state.counters["weight_GB/s"] =
        benchmark::Counter(4.0 * in * out * state.iterations(), benchmark::Counter::kIsRate,
                           benchmark::Counter::kIs1000);
}
BENCHMARK(BM_Matmul)
    ->Args({1, 768, 2048})
    ->Args({1, 768, 32000})
    ->Args({64, 768, 2048})
    ->Args({512, 768, 768})
    ->Args({512, 768, 2048})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// args: T, chunked (1) or recurrent (0); H = 6, D = 128 like the 100m preset.
void BM_Kda(benchmark::State& state) {
    const size_t T = state.range(0), H = 6, D = 128;
    const bool chunked = state.range(1) != 0;
    auto q = random_vector(T * H * D, 1), k = random_vector(T * H * D, 2);
    kl::cpu::l2_normalize_heads(q.data(), T * H, D);
    kl::cpu::l2_normalize_heads(k.data(), T * H, D);
    const auto v = random_vector(T * H * D, 3);
    std::vector<float> g(T * H * D), beta(T * H, 0.5f), o(T * H * D), s(H * D * D, 0.0f);
    std::mt19937 rng(4);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    for (float& x : g) x = -0.2f * u(rng);
    for (auto _ : state) {
        if (chunked)
            kl::cpu::kda_chunked(pool(), q.data(), k.data(), v.data(), g.data(), beta.data(), T, H,
                                 D, 0.088f, 64, s.data(), o.data());
        else
            kl::cpu::kda_recurrent(pool(), q.data(), k.data(), v.data(), g.data(), beta.data(), T,
                                   H, D, 0.088f, s.data(), o.data());
        benchmark::DoNotOptimize(o.data());
    }
    state.counters["tokens/s"] =
        benchmark::Counter(double(T) * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Kda)
    ->Args({512, 1})
    ->Args({512, 0})
    ->Args({1, 0})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
