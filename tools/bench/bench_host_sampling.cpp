// The host's share of a generation step that samples on the host (kl_generate_params with a
// logit bias, a logits processor or log-probabilities; always on the CPU backend): the
// sampler and the log-probabilities over the released model's vocabulary (163,840).
//   build/tools/bench_host_sampling
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "core/sampler.h"
#include "core/token_logprobs.h"

namespace {

constexpr size_t kVocab = 163840;

std::vector<float> random_logits() {
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    std::vector<float> logits(kVocab);
    for (float& v : logits) v = normal(rng);
    return logits;
}

void sample(benchmark::State& state, float temperature, float top_p) {
    const std::vector<float> logits = random_logits();
    const std::vector<int32_t> history(64, 11);
    kl::SamplingParams params;
    params.temperature = temperature;
    params.top_p = top_p;
    uint64_t position = 0;
    for (auto _ : state)
        benchmark::DoNotOptimize(kl::sample_token(logits.data(), kVocab, params, history.data(),
                                                  history.size(), ++position));
}

void BM_SampleGreedy(benchmark::State& state) { sample(state, 0.0f, 1.0f); }
void BM_SampleTemperatureTopP(benchmark::State& state) { sample(state, 0.8f, 0.9f); }

void BM_TokenLogprob(benchmark::State& state) {
    const std::vector<float> logits = random_logits();
    for (auto _ : state) benchmark::DoNotOptimize(kl::TokenLogprobs(logits.data(), kVocab).of(5));
}

void BM_TopLogprobs(benchmark::State& state) {
    const std::vector<float> logits = random_logits();
    const auto k = static_cast<size_t>(state.range(0));
    for (auto _ : state) benchmark::DoNotOptimize(kl::TokenLogprobs(logits.data(), kVocab).top(k));
}

BENCHMARK(BM_SampleGreedy)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SampleTemperatureTopP)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TokenLogprob)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TopLogprobs)->Arg(5)->Arg(20)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
