// The CPU backend's ops: the executable specification of the model math (docs/design/model.md),
// in fp32 with blocked, vectorisable loops. The CUDA backend is tested against these.
// All arrays are row-major and contiguous; shapes are given in comments as [dim0, dim1, ...].
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/thread_pool.h"

namespace kl::cpu {

// ---- dense ----------------------------------------------------------------------------

// y[n, out] = x[n, in] · W^T  with W row-major [out, in] (PyTorch Linear layout).
// Blocked over rows of x and W, threaded over output columns. y may not alias x.
void matmul_wt(ThreadPool& pool, const float* x, size_t n, size_t in, const float* w, size_t out,
               float* y);

// y[d] = x[d] * rsqrt(mean(x^2) + eps) * weight[d]. y may alias x.
void rms_norm(const float* x, const float* weight, size_t dim, float eps, float* y);

// ---- KDA ------------------------------------------------------------------------------

// Depthwise causal conv (no bias) over T tokens of `channels`, kernel `kernel`, then SiLU.
// x [T, channels], weight [channels, kernel], state [kernel-1, channels] (the last kernel-1
// inputs before x, oldest first; zeros at start), updated in place to the last kernel-1
// inputs after x. y [T, channels] may not alias x.
void short_conv_silu(const float* x, size_t T, size_t channels, const float* weight, size_t kernel,
                     float* state, float* y);

// In place: each of the `heads` vectors of length `dim` in x becomes x / sqrt(sum x^2 + 1e-6).
void l2_normalize_heads(float* x, size_t heads, size_t dim);

// The KDA core on already-prepared inputs for T tokens and H heads of size D (K = V = D):
//   q, k [T, H, D]  (L2-normalised; q NOT yet scaled), v [T, H, D],
//   g [T, H, D]  log-space per-channel decay (< 0, may be << -1),
//   beta [T, H], scale (D^-0.5 in the model),
//   state [H, D(K), D(V)] fp32, read and updated in place, o [T, H, D] output.
// Per step: S *= exp(g)[:,None]; S += beta k ⊗ (v - k^T S); o = (scale q)^T S.
// The recurrence is the definition.
void kda_recurrent(ThreadPool& pool, const float* q, const float* k, const float* v, const float* g,
                   const float* beta, size_t T, size_t H, size_t D, float scale, float* state,
                   float* o);

// The same function in chunkwise form (WY representation / UT transform, chunk C tokens,
// C = 64 in the model). Never forms e^{G_i} and e^{-G_j} as separate factors, so it is safe
// for strong decay. Must equal kda_recurrent up to fp32 rounding for any T (incl. T % C != 0).
void kda_chunked(ThreadPool& pool, const float* q, const float* k, const float* v, const float* g,
                 const float* beta, size_t T, size_t H, size_t D, float scale, size_t chunk,
                 float* state, float* o);

// ---- MLA (NoPE) -----------------------------------------------------------------------

struct MlaShape {
    size_t heads;  // Hm
    size_t nope;   // qk_nope_head_dim
    size_t rope;   // qk_rope_head_dim (never rotated)
    size_t v_dim;  // v_head_dim
    size_t rank;   // kv_lora_rank
    size_t cache_width() const { return rank + rope; }
    size_t q_width() const { return heads * (nope + rope); }
};

// Plain (expanded) causal attention for T new queries at positions [pos, pos+T):
//   q [T, Hm*(nope+rope)], cache [pos+T, rank+rope] (normalised latent c, then k_pe;
//   rows [pos, pos+T) already hold the new tokens), kv_b [Hm*(nope+v), rank],
//   out [T, Hm*v]. Query t attends cache rows s <= pos + t. Score scale (nope+rope)^-0.5.
//   cancel (may be null) is checked before each block of queries: a long prefill's attention,
//   quadratic in T, is most of its layer (docs/design/architecture.md "Cancel").
void mla_attention_expanded(ThreadPool& pool, const MlaShape& shape, const float* q, size_t T,
                            size_t pos, const float* cache, const float* kv_b, float* out,
                            const std::atomic<bool>* cancel = nullptr);

// Absorbed (MQA over the latent cache) form for T queries, typically T == 1: q_nope is
// folded through kv_b's key half into a rank-wide latent query, attention runs over the
// cache rows [0, pos+t], and kv_b's value half is applied after. Same result as
// mla_attention_expanded up to fp32 rounding.
void mla_attention_absorbed(ThreadPool& pool, const MlaShape& shape, const float* q, size_t T,
                            size_t pos, const float* cache, const float* kv_b, float* out);

// ---- MoE router ----------------------------------------------------------------------

struct RouterConfig {
    size_t n_experts;
    size_t top_k;
    bool renormalize;
    float routed_scaling_factor;
    bool grouped;        // use_grouped_topk
    size_t n_groups;     // num_expert_group
    size_t topk_groups;  // topk_group
};

// One token: logits [E] (router output before the sigmoid), bias [E] (correction bias).
// s = sigmoid(logits); choose top_k of s + bias (grouped: DeepSeek-V3 rule, group score =
// sum of its top-2 biased scores, keep topk_groups groups, then top_k inside them). Ties
// go to the lower expert index. Weights = s of the chosen (not biased), renormalised if
// asked, times routed_scaling_factor. experts[top_k], weights[top_k], in descending
// biased-score order.
void moe_route(const RouterConfig& config, const float* logits, const float* bias, int32_t* experts,
               float* weights);

// ---- scalar helpers -------------------------------------------------------------------

inline float silu(float x) {
    return x / (1.0f + __builtin_expf(-x));
}
inline float sigmoid(float x) {
    return 1.0f / (1.0f + __builtin_expf(-x));
}
// log(1 + e^x), stable for large x.
inline float softplus(float x) {
    return x > 20.0f ? x : __builtin_log1pf(__builtin_expf(x));
}

}  // namespace kl::cpu
