#include <algorithm>
#include <cmath>
#include <vector>

#include "ops.h"

namespace kl::cpu {
namespace {

float dot(const float* a, const float* b, size_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; ++i) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

// In place: scores[0..n) -> softmax probabilities (max-subtracted).
void softmax(float* scores, size_t n) {
    const float top = *std::max_element(scores, scores + n);
    float total = 0.0f;
    for (size_t i = 0; i < n; ++i) total += scores[i] = std::exp(scores[i] - top);
    const float inv = 1.0f / total;
    for (size_t i = 0; i < n; ++i) scores[i] *= inv;
}

}  // namespace

void mla_attention_expanded(ThreadPool& pool, const MlaShape& s, const float* q, size_t T,
                            size_t pos, const float* cache, const float* kv_b, float* out) {
    const size_t rows = pos + T;
    const size_t width = s.cache_width();
    const size_t qk = s.nope + s.rope;
    const float scale = 1.0f / std::sqrt(static_cast<float>(qk));
    pool.parallel_for(s.heads, 1, [&](size_t h_begin, size_t h_end) {
        std::vector<float> keys(rows * s.nope), values(rows * s.v_dim), scores(rows);
        for (size_t h = h_begin; h < h_end; ++h) {
            // Up-project every cached latent to this head's key and value.
            const float* w_uk = kv_b + h * (s.nope + s.v_dim) * s.rank;
            const float* w_uv = w_uk + s.nope * s.rank;
            for (size_t r = 0; r < rows; ++r) {
                const float* c = cache + r * width;
                for (size_t d = 0; d < s.nope; ++d)
                    keys[r * s.nope + d] = dot(w_uk + d * s.rank, c, s.rank);
                for (size_t d = 0; d < s.v_dim; ++d)
                    values[r * s.v_dim + d] = dot(w_uv + d * s.rank, c, s.rank);
            }
            for (size_t t = 0; t < T; ++t) {
                const float* qh = q + t * s.q_width() + h * qk;
                const size_t visible = pos + t + 1;
                for (size_t r = 0; r < visible; ++r)
                    scores[r] = (dot(qh, &keys[r * s.nope], s.nope) +
                                 dot(qh + s.nope, cache + r * width + s.rank, s.rope)) *
                                scale;
                softmax(scores.data(), visible);
                float* o = out + t * s.heads * s.v_dim + h * s.v_dim;
                std::fill(o, o + s.v_dim, 0.0f);
                for (size_t r = 0; r < visible; ++r) {
                    const float p = scores[r];
                    const float* v = &values[r * s.v_dim];
                    for (size_t d = 0; d < s.v_dim; ++d) o[d] += p * v[d];
                }
            }
        }
    });
}

void mla_attention_absorbed(ThreadPool& pool, const MlaShape& s, const float* q, size_t T,
                            size_t pos, const float* cache, const float* kv_b, float* out) {
    const size_t width = s.cache_width();
    const size_t qk = s.nope + s.rope;
    const float scale = 1.0f / std::sqrt(static_cast<float>(qk));
    pool.parallel_for(s.heads, 1, [&](size_t h_begin, size_t h_end) {
        std::vector<float> q_latent(s.rank), o_latent(s.rank), scores(pos + T);
        for (size_t h = h_begin; h < h_end; ++h) {
            const float* w_uk = kv_b + h * (s.nope + s.v_dim) * s.rank;
            const float* w_uv = w_uk + s.nope * s.rank;
            for (size_t t = 0; t < T; ++t) {
                const float* qh = q + t * s.q_width() + h * qk;
                // q_latent = W_uk^T q_nope: the key up-projection folded into the query.
                std::fill(q_latent.begin(), q_latent.end(), 0.0f);
                for (size_t d = 0; d < s.nope; ++d) {
                    const float qd = qh[d];
                    const float* row = w_uk + d * s.rank;
                    for (size_t c = 0; c < s.rank; ++c) q_latent[c] += qd * row[c];
                }
                const size_t visible = pos + t + 1;
                for (size_t r = 0; r < visible; ++r) {
                    const float* row = cache + r * width;
                    scores[r] = (dot(q_latent.data(), row, s.rank) +
                                 dot(qh + s.nope, row + s.rank, s.rope)) *
                                scale;
                }
                softmax(scores.data(), visible);
                std::fill(o_latent.begin(), o_latent.end(), 0.0f);
                for (size_t r = 0; r < visible; ++r) {
                    const float p = scores[r];
                    const float* row = cache + r * width;
                    for (size_t c = 0; c < s.rank; ++c) o_latent[c] += p * row[c];
                }
                // The value up-projection applied once, after attention.
                float* o = out + t * s.heads * s.v_dim + h * s.v_dim;
                for (size_t d = 0; d < s.v_dim; ++d)
                    o[d] = dot(w_uv + d * s.rank, o_latent.data(), s.rank);
            }
        }
    });
}

}  // namespace kl::cpu
