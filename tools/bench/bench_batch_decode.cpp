// Google Benchmark of the CPU backend's batched decode: forward_batch of n sessions (one token
// each, n = 1, 8, 32) against n single-token forward() calls, on a small random model (~60M
// parameters, 240 MB of fp32 weights: larger than the caches, as a real model is).
//   build/tools/bench_batch_decode
#include <benchmark/benchmark.h>

#include <atomic>
#include <memory>
#include <vector>

#include "core/config.h"
#include "core/model.h"

namespace {

constexpr uint64_t kContext = 256;  // each session's position is about this far in

// config.json form, as kl_model_create_random takes it.
constexpr const char* kConfig = R"({
  "hidden_size": 512, "num_hidden_layers": 8, "vocab_size": 8192, "intermediate_size": 1024,
  "rms_norm_eps": 1e-05,
  "num_attention_heads": 4, "kv_lora_rank": 128, "q_lora_rank": null,
  "qk_nope_head_dim": 32, "qk_rope_head_dim": 16, "v_head_dim": 32,
  "linear_attn_config": {"num_heads": 4, "head_dim": 64, "short_conv_kernel_size": 4,
                         "kda_layers": [1, 2, 3, 5, 6, 7], "full_attn_layers": [4, 8]},
  "num_experts": 16, "num_experts_per_token": 4, "num_shared_experts": 1,
  "moe_intermediate_size": 256, "routed_scaling_factor": 2.446, "first_k_dense_replace": 1,
  "model_max_length": 4096
})";

const kl::Model& model() {
    static const std::unique_ptr<kl::Model> m = [] {
        kl::ModelLoadOptions options;
        options.device = kl::DeviceRequest::Cpu;
        return kl::Model::create_random(kl::ModelConfig::from_json(kConfig, "bench config"), 1,
                                        options);
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
