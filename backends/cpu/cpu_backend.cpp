#include "cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <utility>

#include "core/config.h"
#include "core/error.h"
#include "core/host_memory.h"
#include "core/random_init.h"
#include "core/thread_pool.h"
#include "core/weight_store.h"
#include "cpu_weights.h"
#include "ops.h"

namespace kl {
namespace {

// The chunk length of the KDA prefill (model.md); decode steps use the recurrence.
constexpr size_t kKdaChunk = 64;

// Per-session state in host memory. Layer vectors are indexed by the 0-based layer number;
// entries of the other attention kind stay empty.
struct CpuState final : BackendState {
    CpuState(const ModelConfig& config, uint64_t capacity)
        : BackendState(capacity, static_cast<size_t>(config.vocab_size)) {
        const size_t layers = static_cast<size_t>(config.num_hidden_layers);
        kda_state.resize(layers);
        conv_state.resize(layers);
        mla_cache.resize(layers);
        for (size_t layer = 0; layer < layers; ++layer) {
            if (config.is_kda_layer(static_cast<int64_t>(layer))) {
                kda_state[layer].assign(static_cast<size_t>(config.kda_state_floats()), 0.0f);
                conv_state[layer].assign(static_cast<size_t>(config.conv_state_floats()), 0.0f);
            }
        }
        logits.assign(vocab(), 0.0f);
    }

    std::vector<std::vector<float>> kda_state;   // [H, K, V] per KDA layer
    std::vector<std::vector<float>> conv_state;  // q, k, v: [kernel-1, H*D] each
    std::vector<std::vector<float>> mla_cache;   // [tokens, rank + rope] per MLA layer
    std::vector<float> logits;                   // [vocab]: the last token's
};

// One session's rows of a pass: rows [begin, begin + count) are its tokens, the first at
// `position`. forward() is one segment of n rows, forward_batch() one segment of one row per
// session, and the layers run every segment through the same code. The recurrent state is
// updated on the segment's copies, committed only after the whole pass succeeded; the MLA
// cache gains its rows in place, past the position, where they stay invisible until the
// caller advances it. So a throw anywhere leaves every session as it was.
struct Segment {
    Segment(CpuState& s, uint64_t pos, size_t first, size_t rows)
        : state(&s),
          position(pos),
          begin(first),
          count(rows),
          kda_state(s.kda_state),
          conv_state(s.conv_state) {}

    CpuState* state;
    uint64_t position;
    size_t begin, count;
    std::vector<std::vector<float>> kda_state, conv_state;  // working copies, per layer

    // Cannot throw: called for every segment once nothing can fail any more.
    void commit(std::vector<float>& logits) noexcept {
        state->logits.swap(logits);
        state->kda_state.swap(kda_state);
        state->conv_state.swap(conv_state);
    }
};

class CpuBackend final : public Backend {
public:
    CpuBackend(const ModelConfig& config, ModelWeights weights, int n_threads)
        : config_(config),
          weights_(std::move(weights)),
          pool_(n_threads),
          vocab_end_(config.vocab_size) {}
    // One shard of a split model (cpu_backend.h): its vocabulary rows [vocab.first,
    // vocab.second) of the embedding and lm_head, its blocks' outputs summed through links.
    CpuBackend(const ModelConfig& config, ModelWeights weights, int n_threads,
               std::pair<int64_t, int64_t> vocab, ShardLinks links)
        : CpuBackend(config, std::move(weights), n_threads) {
        vocab_begin_ = vocab.first, vocab_end_ = vocab.second;
        links_ = std::move(links);
        sharded_ = true;
    }

    DeviceKind device() const override { return DeviceKind::Cpu; }
    uint64_t weight_bytes() const override { return weights_.bytes(); }
    uint64_t session_fixed_bytes() const override { return config_.recurrent_state_bytes(); }
    uint64_t kv_bytes_per_token() const override {
        return static_cast<uint64_t>(config_.mla_cache_values_per_token()) * sizeof(float);
    }

    std::unique_ptr<BackendState> create_state(uint64_t max_context) const override {
        try {
            return std::make_unique<CpuState>(config_, max_context);
        } catch (const std::bad_alloc&) {
            fail(Status::OutOfMemory, "cannot allocate the session state");
        }
    }
    std::unique_ptr<BackendState> clone_state(const BackendState& state) const override {
        return std::make_unique<CpuState>(static_cast<const CpuState&>(state));
    }
    void reset_state(BackendState& state) const override;
    void fill_synthetic(BackendState& state, uint64_t position, uint64_t seed) const override;
    void read_logits(const BackendState& state, float* out) const override {
        const auto& logits = static_cast<const CpuState&>(state).logits;
        std::memcpy(out, logits.data(), logits.size() * sizeof(float));
    }
    void write_logits(BackendState& state, const float* in) const override {
        auto& logits = static_cast<CpuState&>(state).logits;
        std::memcpy(logits.data(), in, logits.size() * sizeof(float));
    }
    void save_layer(const BackendState& state, size_t layer, uint64_t position,
                    uint8_t* out) const override;
    void load_layer(BackendState& state, size_t layer, uint64_t position,
                    const uint8_t* in) const override;

    void forward(BackendState& state_base, uint64_t position, const int32_t* tokens, size_t n,
                 float* last_logits, float* all_logits,
                 const std::atomic<bool>& cancel) const override;
    void forward_batch(BackendState* const* states, const uint64_t* positions,
                       const int32_t* tokens, size_t n) const override;

private:
    void linear(const float* x, size_t n, const Matrix& w, float* y) const {
        cpu::matmul_wt(pool_, x, n, static_cast<size_t>(w.cols), w.data.data(),
                       static_cast<size_t>(w.rows), y);
    }
    void rms_norm_rows(const float* x, size_t n, const std::vector<float>& weight, float* y) const {
        const size_t dim = weight.size();
        for (size_t t = 0; t < n; ++t)
            cpu::rms_norm(x + t * dim, weight.data(), dim, config_.rms_norm_eps, y + t * dim);
    }
    // Per-session work: with fewer segments than threads each one gets the whole pool (its
    // ops split heads or cache rows over it); with more, the segments are spread over it.
    template <class Body>
    void for_each_segment(std::vector<Segment>& segments, const Body& body) const {
        if (segments.size() < static_cast<size_t>(pool_.size())) {
            for (Segment& segment : segments) body(segment);
            return;
        }
        pool_.parallel_for(segments.size(), 1, [&](size_t begin, size_t end) {
            for (size_t i = begin; i < end; ++i) body(segments[i]);
        });
    }
    // The decoder layers over rows [0, n) of tokens, the segments partitioning the rows:
    // returns the hidden rows [n, hidden] before the final norm. cancel may be null.
    std::vector<float> run_layers(std::vector<Segment>& segments, const int32_t* tokens, size_t n,
                                  const std::atomic<bool>* cancel) const;
    // logits [rows, vocab] = lm_head(RMSNorm(x; final_norm)) of x [rows, hidden].
    void output_logits(const float* x, size_t rows, float* logits) const;
    void kda_layer(const KdaWeights& w, size_t layer, const float* x, size_t n,
                   std::vector<Segment>& segments, float* out) const;
    void mla_layer(const MlaWeights& w, size_t layer, const float* x, size_t n,
                   std::vector<Segment>& segments, float* out,
                   const std::atomic<bool>* cancel) const;
    void mlp(const MlpWeights& w, const float* x, size_t n, float* out) const;
    void moe(const MoeWeights& w, const float* x, size_t n, float* out) const;

    // A shard's partial block output summed over the shards (a no-op unsplit).
    void sum_over_shards(std::vector<float>& values) const {
        if (sharded_) links_.sum(values.data(), values.size());
    }

    ModelConfig config_;
    ModelWeights weights_;
    mutable ThreadPool pool_;
    bool sharded_ = false;
    int64_t vocab_begin_ = 0, vocab_end_;  // the embedding's and lm_head's rows held
    ShardLinks links_;
};

void CpuBackend::reset_state(BackendState& state_base) const {
    auto& state = static_cast<CpuState&>(state_base);
    for (auto& s : state.kda_state) std::fill(s.begin(), s.end(), 0.0f);
    for (auto& s : state.conv_state) std::fill(s.begin(), s.end(), 0.0f);
    for (auto& c : state.mla_cache) c.clear();
    std::fill(state.logits.begin(), state.logits.end(), 0.0f);
}

void CpuBackend::fill_synthetic(BackendState& state_base, uint64_t position, uint64_t seed) const {
    auto& state = static_cast<CpuState&>(state_base);
    const RandomInit small{false, 0.0f, 0.05f}, unit{false, 0.0f, 1.0f};
    const size_t width = static_cast<size_t>(config_.mla_cache_width());
    for (size_t layer = 0; layer < state.kda_state.size(); ++layer) {
        for (size_t i = 0; i < state.kda_state[layer].size(); ++i)
            state.kda_state[layer][i] = random_value(seed, 2 * layer, i, small);
        for (size_t i = 0; i < state.conv_state[layer].size(); ++i)
            state.conv_state[layer][i] = random_value(seed, 2 * layer + 1, i, small);
        if (!config_.is_kda_layer(static_cast<int64_t>(layer))) {
            std::vector<float>& cache = state.mla_cache[layer];
            cache.resize(static_cast<size_t>(position) * width);
            for (size_t i = 0; i < cache.size(); ++i)
                cache[i] = random_value(seed, 1000 + layer, i, unit);
        }
    }
    for (size_t i = 0; i < state.logits.size(); ++i)
        state.logits[i] = 4.0f * random_value(seed, 999, i, unit);
}

void CpuBackend::save_layer(const BackendState& state_base, size_t layer, uint64_t position,
                            uint8_t* out) const {
    const auto& state = static_cast<const CpuState&>(state_base);
    if (config_.is_kda_layer(static_cast<int64_t>(layer))) {
        const std::vector<float>& s = state.kda_state[layer];
        const std::vector<float>& conv = state.conv_state[layer];
        std::memcpy(out, s.data(), s.size() * sizeof(float));
        if (!conv.empty())  // kernel size 1 keeps no conv state; memcpy(NULL) is undefined
            std::memcpy(out + s.size() * sizeof(float), conv.data(), conv.size() * sizeof(float));
    } else {
        const size_t floats = static_cast<size_t>(position * config_.mla_cache_width());
        if (floats) std::memcpy(out, state.mla_cache[layer].data(), floats * sizeof(float));
    }
}

void CpuBackend::load_layer(BackendState& state_base, size_t layer, uint64_t position,
                            const uint8_t* in) const {
    auto& state = static_cast<CpuState&>(state_base);
    if (config_.is_kda_layer(static_cast<int64_t>(layer))) {
        std::vector<float>& s = state.kda_state[layer];
        std::vector<float>& conv = state.conv_state[layer];
        std::memcpy(s.data(), in, s.size() * sizeof(float));
        if (!conv.empty())  // kernel size 1 keeps no conv state
            std::memcpy(conv.data(), in + s.size() * sizeof(float), conv.size() * sizeof(float));
    } else {
        std::vector<float>& cache = state.mla_cache[layer];
        cache.resize(static_cast<size_t>(position * config_.mla_cache_width()));
        if (!cache.empty()) std::memcpy(cache.data(), in, cache.size() * sizeof(float));
    }
}

void CpuBackend::kda_layer(const KdaWeights& w, size_t layer, const float* x, size_t n,
                           std::vector<Segment>& segments, float* out) const {
    const size_t H = static_cast<size_t>(config_.kda_num_heads);
    const size_t D = static_cast<size_t>(config_.kda_head_dim);
    const size_t HD = H * D;
    const size_t kernel = static_cast<size_t>(config_.short_conv_kernel_size);
    const size_t conv_floats = (kernel - 1) * HD;

    std::vector<float> projected(n * HD), q(n * HD), k(n * HD), v(n * HD);
    const Matrix* projections[3] = {&w.q_proj, &w.k_proj, &w.v_proj};
    const std::vector<float>* conv_weights[3] = {&w.q_conv, &w.k_conv, &w.v_conv};
    float* conv_out[3] = {q.data(), k.data(), v.data()};
    for (int i = 0; i < 3; ++i) {
        linear(x, n, *projections[i], projected.data());
        for (Segment& s : segments)  // a few multiply-adds per channel: not worth the pool
            cpu::short_conv_silu(
                projected.data() + s.begin * HD, s.count, HD, conv_weights[i]->data(), kernel,
                s.conv_state[layer].data() + i * conv_floats, conv_out[i] + s.begin * HD);
    }
    cpu::l2_normalize_heads(q.data(), n * H, D);
    cpu::l2_normalize_heads(k.data(), n * H, D);

    // Per-channel log decay g = -exp(A_log[h]) * softplus(f_b(f_a(x)) + dt_bias).
    std::vector<float> low_rank(n * D), g(n * HD);
    linear(x, n, w.f_a_proj, low_rank.data());
    linear(low_rank.data(), n, w.f_b_proj, g.data());
    for (size_t t = 0; t < n; ++t)
        for (size_t h = 0; h < H; ++h) {
            const float a = -std::exp(w.a_log[h]);
            float* gt = g.data() + t * HD + h * D;
            const float* bias = w.dt_bias.data() + h * D;
            for (size_t c = 0; c < D; ++c) gt[c] = a * cpu::softplus(gt[c] + bias[c]);
        }

    std::vector<float> beta(n * H);
    linear(x, n, w.b_proj, beta.data());
    for (float& b : beta) b = cpu::sigmoid(b);

    std::vector<float> o(n * HD);
    const float scale = 1.0f / std::sqrt(static_cast<float>(D));
    for_each_segment(segments, [&](Segment& s) {
        const size_t at = s.begin * HD;
        float* state = s.kda_state[layer].data();
        if (s.count == 1)
            cpu::kda_recurrent(pool_, q.data() + at, k.data() + at, v.data() + at, g.data() + at,
                               beta.data() + s.begin * H, 1, H, D, scale, state, o.data() + at);
        else
            cpu::kda_chunked(pool_, q.data() + at, k.data() + at, v.data() + at, g.data() + at,
                             beta.data() + s.begin * H, s.count, H, D, scale, kKdaChunk, state,
                             o.data() + at);
    });

    // Gated RMSNorm per head: RMSNorm_D(o) * o_norm * sigmoid(g_b(g_a(x))).
    std::vector<float> gate(n * HD);
    linear(x, n, w.g_a_proj, low_rank.data());
    linear(low_rank.data(), n, w.g_b_proj, gate.data());
    for (size_t t = 0; t < n; ++t)
        for (size_t h = 0; h < H; ++h) {
            float* oh = o.data() + t * HD + h * D;
            const float* gh = gate.data() + t * HD + h * D;
            cpu::rms_norm(oh, w.o_norm.data(), D, config_.rms_norm_eps, oh);
            for (size_t c = 0; c < D; ++c) oh[c] *= cpu::sigmoid(gh[c]);
        }
    linear(o.data(), n, w.o_proj, out);
}

void CpuBackend::mla_layer(const MlaWeights& w, size_t layer, const float* x, size_t n,
                           std::vector<Segment>& segments, float* out,
                           const std::atomic<bool>* cancel) const {
    cpu::MlaShape shape{static_cast<size_t>(config_.num_attention_heads),
                        static_cast<size_t>(config_.qk_nope_head_dim),
                        static_cast<size_t>(config_.qk_rope_head_dim),
                        static_cast<size_t>(config_.v_head_dim),
                        static_cast<size_t>(config_.kv_lora_rank)};
    const size_t width = shape.cache_width();
    const size_t out_width = shape.heads * shape.v_dim;

    std::vector<float> q(n * shape.q_width());
    linear(x, n, w.q_proj, q.data());

    // New cache rows [RMSNorm(c) * kv_a_layernorm, k_pe] for all rows, then each segment's
    // appended to its session's cache at its position. resize() may reallocate, which keeps
    // the rows before; a throw leaves the earlier segments' new rows past their positions.
    std::vector<float> rows(n * width);
    linear(x, n, w.kv_a_proj_with_mqa, rows.data());
    for (size_t t = 0; t < n; ++t)
        cpu::rms_norm(&rows[t * width], w.kv_a_layernorm.data(), shape.rank, config_.rms_norm_eps,
                      &rows[t * width]);
    for (Segment& s : segments) {
        std::vector<float>& cache = s.state->mla_cache[layer];
        const size_t pos = static_cast<size_t>(s.position);
        cache.resize((pos + s.count) * width);
        std::memcpy(cache.data() + pos * width, &rows[s.begin * width],
                    s.count * width * sizeof(float));
    }

    std::vector<float> attn(n * out_width);
    for_each_segment(segments, [&](Segment& s) {
        const float* cache = s.state->mla_cache[layer].data();
        const size_t pos = static_cast<size_t>(s.position);
        const float* qs = &q[s.begin * shape.q_width()];
        float* os = &attn[s.begin * out_width];
        if (s.count == 1)
            cpu::mla_attention_absorbed(pool_, shape, qs, 1, pos, cache, w.kv_b_proj.data.data(),
                                        os);
        else
            cpu::mla_attention_expanded(pool_, shape, qs, s.count, pos, cache,
                                        w.kv_b_proj.data.data(), os, cancel);
    });
    linear(attn.data(), n, w.o_proj, out);
}

void CpuBackend::mlp(const MlpWeights& w, const float* x, size_t n, float* out) const {
    const size_t inter = static_cast<size_t>(w.gate.rows);
    std::vector<float> gate(n * inter), up(n * inter);
    linear(x, n, w.gate, gate.data());
    linear(x, n, w.up, up.data());
    for (size_t i = 0; i < gate.size(); ++i) gate[i] = cpu::silu(gate[i]) * up[i];
    linear(gate.data(), n, w.down, out);
}

void CpuBackend::moe(const MoeWeights& w, const float* x, size_t n, float* out) const {
    const size_t hidden = static_cast<size_t>(config_.hidden_size);
    const size_t E = static_cast<size_t>(config_.num_experts);
    const size_t top_k = static_cast<size_t>(config_.num_experts_per_token);
    cpu::RouterConfig router{E,
                             top_k,
                             config_.moe_renormalize,
                             config_.routed_scaling_factor,
                             config_.use_grouped_topk,
                             static_cast<size_t>(config_.num_expert_group),
                             static_cast<size_t>(config_.topk_group)};

    std::vector<float> router_logits(n * E);
    linear(x, n, w.gate, router_logits.data());
    std::vector<int32_t> chosen(n * top_k);
    std::vector<float> chosen_weight(n * top_k);
    for (size_t t = 0; t < n; ++t)
        cpu::moe_route(router, router_logits.data() + t * E, w.e_score_correction_bias.data(),
                       chosen.data() + t * top_k, chosen_weight.data() + t * top_k);

    // Group tokens by expert so each expert's weights are read once per call.
    std::vector<std::vector<size_t>> slots_of_expert(E);
    for (size_t slot = 0; slot < n * top_k; ++slot)
        slots_of_expert[static_cast<size_t>(chosen[slot])].push_back(slot);

    if (w.has_shared)
        mlp(w.shared, x, n, out);
    else
        std::fill(out, out + n * hidden, 0.0f);

    std::vector<float> gathered, expert_out;
    for (size_t e = 0; e < E; ++e) {
        const auto& slots = slots_of_expert[e];
        if (slots.empty() || w.experts[e].gate.rows == 0) continue;  // none, or another shard's
        gathered.resize(slots.size() * hidden);
        expert_out.resize(slots.size() * hidden);
        for (size_t i = 0; i < slots.size(); ++i)
            std::memcpy(&gathered[i * hidden], x + (slots[i] / top_k) * hidden,
                        hidden * sizeof(float));
        mlp(w.experts[e], gathered.data(), slots.size(), expert_out.data());
        for (size_t i = 0; i < slots.size(); ++i) {
            float* dst = out + (slots[i] / top_k) * hidden;
            const float weight = chosen_weight[slots[i]];
            const float* src = &expert_out[i * hidden];
            for (size_t c = 0; c < hidden; ++c) dst[c] += weight * src[c];
        }
    }
}

std::vector<float> CpuBackend::run_layers(std::vector<Segment>& segments, const int32_t* tokens,
                                          size_t n, const std::atomic<bool>* cancel) const {
    const size_t hidden = static_cast<size_t>(config_.hidden_size);
    auto check_cancel = [cancel] {
        if (cancel && cancel->load(std::memory_order_relaxed)) fail(Status::Cancelled, "cancelled");
    };

    // A shard holds the embedding rows of its vocabulary: the others' tokens are zeros here,
    // their rows on their shards, and the sum gives every token its row.
    std::vector<float> x(n * hidden), normed(n * hidden), branch(n * hidden);
    for (size_t t = 0; t < n; ++t)
        if (tokens[t] >= vocab_begin_ && tokens[t] < vocab_end_)
            std::memcpy(&x[t * hidden],
                        weights_.embed_tokens.data.data() +
                            static_cast<size_t>(tokens[t] - vocab_begin_) * hidden,
                        hidden * sizeof(float));
    sum_over_shards(x);

    for (size_t layer = 0; layer < weights_.layers.size(); ++layer) {
        check_cancel();
        const LayerWeights& lw = weights_.layers[layer];

        rms_norm_rows(x.data(), n, lw.input_layernorm, normed.data());
        if (lw.is_kda)
            kda_layer(lw.kda, layer, normed.data(), n, segments, branch.data());
        else
            mla_layer(lw.mla, layer, normed.data(), n, segments, branch.data(), cancel);
        sum_over_shards(branch);
        for (size_t i = 0; i < x.size(); ++i) x[i] += branch[i];
        // Between the halves too: a long prefill's layer takes seconds on a CPU.
        check_cancel();

        rms_norm_rows(x.data(), n, lw.post_attention_layernorm, normed.data());
        if (lw.is_moe)
            moe(lw.moe, normed.data(), n, branch.data());
        else
            mlp(lw.mlp, normed.data(), n, branch.data());
        sum_over_shards(branch);
        for (size_t i = 0; i < x.size(); ++i) x[i] += branch[i];
    }
    check_cancel();
    return x;
}

void CpuBackend::output_logits(const float* x, size_t rows, float* logits) const {
    std::vector<float> normed(rows * static_cast<size_t>(config_.hidden_size));
    rms_norm_rows(x, rows, weights_.final_norm, normed.data());
    if (!sharded_) {
        linear(normed.data(), rows, weights_.lm_head, logits);
        return;
    }
    std::vector<float> part(rows * static_cast<size_t>(weights_.lm_head.rows));
    linear(normed.data(), rows, weights_.lm_head, part.data());
    links_.gather(part.data(), rows, logits);
}

void CpuBackend::forward(BackendState& state, uint64_t position, const int32_t* tokens, size_t n,
                         float* last_logits, float* all_logits,
                         const std::atomic<bool>& cancel) const {
    const size_t hidden = static_cast<size_t>(config_.hidden_size);
    const size_t vocab = static_cast<size_t>(config_.vocab_size);
    std::vector<Segment> segments;
    segments.emplace_back(static_cast<CpuState&>(state), position, 0, n);
    const std::vector<float> x = run_layers(segments, tokens, n, &cancel);

    std::vector<float> logits(vocab);
    if (all_logits) {
        output_logits(x.data(), n, all_logits);
        std::memcpy(logits.data(), all_logits + (n - 1) * vocab, vocab * sizeof(float));
    } else {
        output_logits(x.data() + (n - 1) * hidden, 1, logits.data());
    }
    if (last_logits) std::memcpy(last_logits, logits.data(), vocab * sizeof(float));
    segments[0].commit(logits);
}

void CpuBackend::forward_batch(BackendState* const* states, const uint64_t* positions,
                               const int32_t* tokens, size_t n) const {
    if (n == 0) return;
    const size_t vocab = static_cast<size_t>(config_.vocab_size);
    std::vector<Segment> segments;
    segments.reserve(n);
    for (size_t i = 0; i < n; ++i)
        segments.emplace_back(static_cast<CpuState&>(*states[i]), positions[i], i, 1);
    const std::vector<float> x = run_layers(segments, tokens, n, nullptr);

    std::vector<float> all(n * vocab);
    output_logits(x.data(), n, all.data());
    std::vector<std::vector<float>> logits(n);
    for (size_t i = 0; i < n; ++i) logits[i].assign(&all[i * vocab], &all[(i + 1) * vocab]);
    for (size_t i = 0; i < n; ++i) segments[i].commit(logits[i]);
}

int device_count() {
    return 1;
}

// The fp32 weights of the layout must fit in host memory: checked before the first
// allocation, so a config describing terabytes fails at once (docs/design/model.md, "Limits").
void require_memory_for_weights(const ModelLayout& layout) {
    uint64_t floats = 0;
    layout.visit([&](const TensorSpec& spec) { floats += spec.numel(); });
    if (layout.tied) floats += layout.embed_tokens.numel();  // lm_head is a copy
    require_host_memory(floats * sizeof(float), "the model's fp32 weights");
}

std::unique_ptr<Backend> create_shard_from_store(const ModelConfig& config,
                                                 const ModelLayout& layout,
                                                 const WeightStore& store, const ShardPlan& plan,
                                                 int shard, ShardLinks links,
                                                 const BackendOptions& options) {
    return cpu::create_shard(config, layout, plan, shard, store.source(), std::move(links),
                             options.n_threads);
}

// Every tensor dequantized to fp32 (core/weight_store.h): the CPU runs exactly the values
// a quantized tensor stands for, which makes it the reference for GPU kernels reading it.
std::unique_ptr<Backend> create_from_store(const ModelConfig& config, const ModelLayout& layout,
                                           const WeightStore& store,
                                           const BackendOptions& options) {
    require_memory_for_weights(layout);
    ModelWeights weights = build_weights_f32(layout, store.source(), options.progress);
    return std::make_unique<CpuBackend>(config, std::move(weights), options.n_threads);
}

}  // namespace

namespace cpu {

std::unique_ptr<Backend> create_shard(const ModelConfig& config, const ModelLayout& layout,
                                      const ShardPlan& plan, int shard, const TensorSource& whole,
                                      ShardLinks links, int n_threads) {
    const ModelLayout part = plan.layout(layout, shard);
    require_memory_for_weights(part);
    ModelWeights weights = build_weights_f32(part, plan.source(whole, shard), {});
    return std::make_unique<CpuBackend>(plan.config(config, shard), std::move(weights), n_threads,
                                        plan.vocab(shard), std::move(links));
}

const BackendProvider& backend_provider() {
    // Plain checkpoints and random weights reach it through the store too.
    static const BackendProvider provider{&device_count, nullptr, nullptr, &create_from_store,
                                          &create_shard_from_store};
    return provider;
}

}  // namespace cpu
}  // namespace kl
