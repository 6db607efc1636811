// Google Benchmark of the CPU backend's batched decode: forward_batch of n sessions (one token
// each, n = 1, 8, 32) against n single-token forward() calls, on a small random model (~60M
// parameters, 240 MB of fp32 weights: larger than the caches, as a real model is).
//   build/tools/bench_batch_decode
#include <benchmark/benchmark.h>

#include <atomic>
#include <memory>
#include <vector>

#include "core/model.h"

namespace {

constexpr uint64_t kContext = 256;  // each session's position is about this far in

kl::ModelConfig bench_config() {
    kl::ModelConfig c;
    c.hidden_size = 512, c.num_hidden_layers = 8, c.vocab_size = 8192, c.intermediate_size = 1024;
    c.num_attention_heads = 4, c.kv_lora_rank = 128, c.qk_nope_head_dim = 32;
    c.qk_rope_head_dim = 16, c.v_head_dim = 32;
    c.kda_num_heads = 4, c.kda_head_dim = 64, c.short_conv_kernel_size = 4;
    c.kda_layers = {1, 2, 3, 5, 6, 7}, c.full_attn_layers = {4, 8};
    c.num_experts = 16, c.num_experts_per_token = 4, c.moe_intermediate_size = 256;
    c.num_shared_experts = 1, c.first_k_dense_replace = 1, c.routed_scaling_factor = 2.446f;
    c.max_context = 4096;
    return c;
}

const kl::Model& model() {
    static const std::unique_ptr<kl::Model> m = [] {
        kl::ModelLoadOptions options;
        options.device = kl::DeviceRequest::Cpu;
        return kl::Model::create_random(bench_config(), 1, options);
    }();
    return *m;
}

// n sessions at positions kContext + i with synthetic state, and a token for each.
struct Sessions {
    explicit Sessions(size_t n) {
        const kl::Backend& backend = model().backend();
        for (size_t i = 0; i < n; ++i) {
            owned.push_back(backend.create_state(2 * kContext));
            backend.fill_synthetic(*owned.back(), kContext + i, i);
            states.push_back(owned.back().get());
            positions.push_back(kContext + i);
            tokens.push_back(static_cast<int32_t>((97 * i + 5) % 8192));
        }
    }
    std::vector<std::unique_ptr<kl::BackendState>> owned;
    std::vector<kl::BackendState*> states;
    std::vector<uint64_t> positions;  // the same every iteration: each rewrites its cache row
    std::vector<int32_t> tokens;
};

void report_tokens(benchmark::State& state, size_t n) {
    state.counters["tokens/s"] =
        benchmark::Counter(double(n) * state.iterations(), benchmark::Counter::kIsRate);
}

// args: n sessions
void BM_ForwardBatch(benchmark::State& state) {
    const size_t n = static_cast<size_t>(state.range(0));
    Sessions s(n);
    for (auto _ : state)
        model().backend().forward_batch(s.states.data(), s.positions.data(), s.tokens.data(), n);
    report_tokens(state, n);
}

// args: n sessions, each stepped by its own forward() call
void BM_ForwardSingles(benchmark::State& state) {
    const size_t n = static_cast<size_t>(state.range(0));
    Sessions s(n);
    const std::atomic<bool> no_cancel{false};
    for (auto _ : state)
        for (size_t i = 0; i < n; ++i)
            model().backend().forward(*s.states[i], s.positions[i], &s.tokens[i], 1, nullptr,
                                      nullptr, no_cancel);
    report_tokens(state, n);
}

BENCHMARK(BM_ForwardBatch)->Arg(1)->Arg(8)->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ForwardSingles)->Arg(1)->Arg(8)->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
