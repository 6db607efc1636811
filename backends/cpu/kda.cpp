#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "ops.h"
#include "simd.h"

namespace kl::cpu {
namespace {

// e^x for x <= 0 (the chunked form's decay exponents), eight at a time: 2^n from exponent
// bits times a degree-6 polynomial for 2^f, f in [-0.5, 0.5]; relative error ~2e-7. Below
// -87 it returns e^-87 ~ 1.6e-38 instead of underflowing: as good as zero next to O(1)
// terms. libm's expf does not vectorise and takes a slow path near underflow, which strong
// decay hits constantly.
inline v8f exp_nonpositive(v8f x) {
    const v8f floor_arg = v8f{} - 87.0f;
    x = x < floor_arg ? floor_arg : x;
    const v8f t = x * 1.44269504088896341f;
    const v8f shifter = v8f{} + 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
    const v8f rounded = (t + shifter) - shifter;
    const v8f f = t - rounded;
    v8f p = v8f{} + 1.5403530393381606e-4f;
    p = p * f + 1.3333558146428443e-3f;
    p = p * f + 9.6181291076284772e-3f;
    p = p * f + 5.5504108664821580e-2f;
    p = p * f + 2.4022650695910071e-1f;
    p = p * f + 6.9314718055994531e-1f;
    p = p * f + 1.0f;
    const v8i bits = (__builtin_convertvector(rounded, v8i) + 127) << 23;
    v8f scale;
    std::memcpy(&scale, &bits, sizeof(scale));
    return p * scale;
}

float exp_nonpositive(float x) {
    v8f v{};
    v[0] = x;
    return exp_nonpositive(v)[0];
}

// sum_c a[c] b[c] e^{Ga[c] - Gb[c]}: the pairwise decayed dot products of the chunk.
inline float decayed_dot(const float* a, const float* b, const float* Ga, const float* Gb,
                         size_t n) {
    v8f acc{};
    size_t c = 0;
    for (; c + 8 <= n; c += 8)
        acc += load8(a + c) * load8(b + c) * exp_nonpositive(load8(Ga + c) - load8(Gb + c));
    float sum = sum8(acc);
    for (; c < n; ++c) sum += a[c] * b[c] * exp_nonpositive(Ga[c] - Gb[c]);
    return sum;
}

// One head over all T tokens, chunk by chunk (the math is above kda_chunked); S is that
// head's state [K, V], G and d scratch of chunk * D floats. Compiled once more for AVX2 + FMA.
KL_MULTIVERSION void kda_chunked_head(const float* q, const float* k, const float* v,
                                      const float* g, const float* beta, size_t T, size_t H,
                                      size_t D, float scale, size_t chunk, size_t h, float* S,
                                      float* o, float* G, float* d) {
    const size_t stride = H * D;
    for (size_t start = 0; start < T; start += chunk) {
        const size_t n = std::min(chunk, T - start);
        auto at = [&](size_t i) { return (start + i) * stride + h * D; };

        for (size_t i = 0; i < n; ++i) {
            const float* gi = g + at(i);
            for (size_t c = 0; c < D; ++c) G[i * D + c] = gi[c] + (i ? G[(i - 1) * D + c] : 0.0f);
        }

        // Right-hand side, then forward substitution for d.
        for (size_t i = 0; i < n; ++i) {
            const float* ki = k + at(i);
            const float* Gi = G + i * D;
            float* di = d + i * D;
            std::memcpy(di, v + at(i), D * sizeof(float));
            for (size_t c = 0; c < D; ++c) {
                const float kc = ki[c] * exp_nonpositive(Gi[c]);
                const float* row = S + c * D;
                for (size_t j = 0; j < D; ++j) di[j] -= kc * row[j];
            }
            const float b = beta[(start + i) * H + h];
            for (size_t j = 0; j < D; ++j) di[j] *= b;
            for (size_t jj = 0; jj < i; ++jj) {
                const float coef = b * decayed_dot(ki, k + at(jj), Gi, G + jj * D, D);
                const float* dj = d + jj * D;
                for (size_t j = 0; j < D; ++j) di[j] -= coef * dj[j];
            }
        }

        // Outputs read the state at the chunk start.
        for (size_t i = 0; i < n; ++i) {
            const float* qi = q + at(i);
            const float* Gi = G + i * D;
            float* oi = o + at(i);
            std::fill(oi, oi + D, 0.0f);
            for (size_t c = 0; c < D; ++c) {
                const float qc = qi[c] * exp_nonpositive(Gi[c]);
                const float* row = S + c * D;
                for (size_t j = 0; j < D; ++j) oi[j] += qc * row[j];
            }
            for (size_t jj = 0; jj <= i; ++jj) {
                const float b = decayed_dot(qi, k + at(jj), Gi, G + jj * D, D);
                const float* dj = d + jj * D;
                for (size_t j = 0; j < D; ++j) oi[j] += b * dj[j];
            }
            for (size_t j = 0; j < D; ++j) oi[j] *= scale;
        }

        // The state to the chunk end.
        const float* G_last = G + (n - 1) * D;
        for (size_t c = 0; c < D; ++c) {
            const float decay = exp_nonpositive(G_last[c]);
            float* row = S + c * D;
            for (size_t j = 0; j < D; ++j) row[j] *= decay;
        }
        for (size_t jj = 0; jj < n; ++jj) {
            const float* kj = k + at(jj);
            const float* Gj = G + jj * D;
            const float* dj = d + jj * D;
            for (size_t c = 0; c < D; ++c) {
                const float kc = kj[c] * exp_nonpositive(G_last[c] - Gj[c]);
                float* row = S + c * D;
                for (size_t j = 0; j < D; ++j) row[j] += kc * dj[j];
            }
        }
    }
}

}  // namespace

void short_conv_silu(const float* x, size_t T, size_t channels, const float* weight, size_t kernel,
                     float* state, float* y) {
    if (kernel == 0) fail(Status::InvalidArgument, "short_conv_silu: conv kernel size is 0");
    const size_t history = kernel - 1;
    // input(t) for t in [-history, T): the carried state, then x.
    auto input = [&](ptrdiff_t t) -> const float* {
        return t < 0 ? state + (static_cast<ptrdiff_t>(history) + t) * channels
                     : x + static_cast<size_t>(t) * channels;
    };
    for (size_t t = 0; t < T; ++t) {
        float* yt = y + t * channels;
        std::fill(yt, yt + channels, 0.0f);
        for (size_t j = 0; j < kernel; ++j) {
            const float* in =
                input(static_cast<ptrdiff_t>(t + j) - static_cast<ptrdiff_t>(history));
            for (size_t c = 0; c < channels; ++c) yt[c] += weight[c * kernel + j] * in[c];
        }
        for (size_t c = 0; c < channels; ++c) yt[c] = silu(yt[c]);
    }
    // The new state is the last `history` inputs, oldest first. With fewer new tokens than
    // that, its older rows come from the old state: shift those up first (rows overlap),
    // then append x. Decode (T = 1) comes here every token, so no allocation.
    const size_t fresh = std::min(history, T);
    const size_t kept = history - fresh;
    if (kept > 0) std::memmove(state, state + fresh * channels, kept * channels * sizeof(float));
    if (fresh > 0)
        std::memcpy(state + kept * channels, x + (T - fresh) * channels,
                    fresh * channels * sizeof(float));
}

void l2_normalize_heads(float* x, size_t heads, size_t dim) {
    for (size_t h = 0; h < heads; ++h) {
        float* v = x + h * dim;
        float sum = 0.0f;
        for (size_t i = 0; i < dim; ++i) sum += v[i] * v[i];
        const float inv = 1.0f / std::sqrt(sum + 1e-6f);
        for (size_t i = 0; i < dim; ++i) v[i] *= inv;
    }
}

void kda_recurrent(ThreadPool& pool, const float* q, const float* k, const float* v, const float* g,
                   const float* beta, size_t T, size_t H, size_t D, float scale, float* state,
                   float* o) {
    const size_t stride = H * D;
    pool.parallel_for(H, 1, [&](size_t h_begin, size_t h_end) {
        std::vector<float> delta(D);
        for (size_t h = h_begin; h < h_end; ++h) {
            float* S = state + h * D * D;  // [K, V]
            for (size_t t = 0; t < T; ++t) {
                const size_t at = t * stride + h * D;
                const float* qt = q + at;
                const float* kt = k + at;
                const float* vt = v + at;
                const float* gt = g + at;
                const float b = beta[t * H + h];
                // Decay each key row, then delta = beta (v - k^T S).
                std::memcpy(delta.data(), vt, D * sizeof(float));
                for (size_t c = 0; c < D; ++c) {
                    float* row = S + c * D;
                    const float decay = std::exp(gt[c]);
                    const float kc = kt[c];
                    for (size_t j = 0; j < D; ++j) {
                        row[j] *= decay;
                        delta[j] -= kc * row[j];
                    }
                }
                for (size_t j = 0; j < D; ++j) delta[j] *= b;
                float* ot = o + at;
                std::fill(ot, ot + D, 0.0f);
                for (size_t c = 0; c < D; ++c) {
                    float* row = S + c * D;
                    const float kc = kt[c];
                    const float qc = qt[c] * scale;
                    for (size_t j = 0; j < D; ++j) {
                        row[j] += kc * delta[j];
                        ot[j] += qc * row[j];
                    }
                }
            }
        }
    });
}

// Chunkwise form. Inside a chunk, with G_i the inclusive cumulative log decay and S0 the
// state at the chunk start, the state before token i's update is
//     S'_i = e^{G_i} ⊙ S0 + sum_{j<i} (k_j ⊙ e^{G_i - G_j}) d_j^T,
// so the scaled innovations d_i = beta_i (v_i - S'_i^T k_i) solve the unit lower-triangular
// system (forward substitution: the UT transform, with w and u folded into one right side)
//     d_i + beta_i sum_{j<i} A_ij d_j = beta_i (v_i - S0^T (k_i ⊙ e^{G_i})),
//     A_ij = sum_c k_i[c] k_j[c] e^{G_i[c] - G_j[c]},
// and then, since S_i = S'_i + k_i d_i^T,
//     o_i = scale (q_i ⊙ e^{G_i})^T S0 + scale sum_{j<=i} B_ij d_j,
//     B_ij = sum_c q_i[c] k_j[c] e^{G_i[c] - G_j[c]},
//     S_n = e^{G_last} ⊙ S0 + sum_j (k_j ⊙ e^{G_last - G_j}) d_j^T.
// Every exponent is G_i - G_j with i >= j, G_i or G_last - G_j: never positive, so strong
// decay underflows to zero instead of overflowing. The pairwise terms cost O(C^2 D) exps per
// chunk and head, which is what keeps them exact in fp32 (e^{-G_j} alone would overflow).
void kda_chunked(ThreadPool& pool, const float* q, const float* k, const float* v, const float* g,
                 const float* beta, size_t T, size_t H, size_t D, float scale, size_t chunk,
                 float* state, float* o) {
    if (chunk == 0) fail(Status::InvalidArgument, "kda_chunked: chunk size is 0");
    pool.parallel_for(H, 1, [&](size_t h_begin, size_t h_end) {
        std::vector<float> G(chunk * D), d(chunk * D);
        for (size_t h = h_begin; h < h_end; ++h)
            kda_chunked_head(q, k, v, g, beta, T, H, D, scale, chunk, h, state + h * D * D, o,
                             G.data(), d.data());
    });
}

}  // namespace kl::cpu
