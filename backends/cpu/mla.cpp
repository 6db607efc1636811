#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "ops.h"
#include "simd.h"

namespace kl::cpu {
namespace {

// Per-thread score block budget (floats) of the expanded form: bounds its memory for long
// prompts while keeping the query blocks tall enough for the GEMM tiles.
constexpr size_t kScoreFloats = size_t(1) << 20;

// out[i, :dim] += sum_r p[i*ld + r] * src[r*stride, :dim] over rows [r0, r1), for n_q
// queries. Query i sees rows below limit0 + i / group (its probabilities past that are zero
// and skipped here by whole queries). Four source rows per pass share one read-modify-write
// of out; rows outer, queries inner, so a block of source rows is read from memory once for
// all queries.
KL_MULTIVERSION void accumulate_rows(const float* p, size_t ld, size_t n_q, size_t limit0,
                                     size_t group, const float* src, size_t stride, size_t dim,
                                     size_t r0, size_t r1, float* out, size_t out_ld) {
    const size_t vec_end = dim - dim % 8;
    auto first_query = [&](size_t r) { return r < limit0 ? 0 : (r - limit0 + 1) * group; };
    size_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        const float* s0 = src + r * stride;
        const float* s1 = s0 + stride;
        const float* s2 = s1 + stride;
        const float* s3 = s2 + stride;
        for (size_t i = first_query(r); i < n_q; ++i) {
            const float* pi = p + i * ld + r;
            const float p0 = pi[0], p1 = pi[1], p2 = pi[2], p3 = pi[3];
            float* o = out + i * out_ld;
            for (size_t k = 0; k < vec_end; k += 8) {
                const v8f acc = load8(o + k) + p0 * load8(s0 + k) + p1 * load8(s1 + k) +
                                p2 * load8(s2 + k) + p3 * load8(s3 + k);
                std::memcpy(o + k, &acc, sizeof(acc));
            }
            for (size_t k = vec_end; k < dim; ++k)
                o[k] += p0 * s0[k] + p1 * s1[k] + p2 * s2[k] + p3 * s3[k];
        }
    }
    for (; r < r1; ++r) {
        const float* s0 = src + r * stride;
        for (size_t i = first_query(r); i < n_q; ++i) {
            const float p0 = p[i * ld + r];
            float* o = out + i * out_ld;
            for (size_t k = 0; k < dim; ++k) o[k] += p0 * s0[k];
        }
    }
}

// In place: row[0, limit) -> softmax probabilities (max-subtracted), row[limit, width) -> 0.
void causal_softmax(float* row, size_t limit, size_t width) {
    const float top = *std::max_element(row, row + limit);
    float total = 0.0f;
    for (size_t i = 0; i < limit; ++i) total += row[i] = std::exp(row[i] - top);
    const float inv = 1.0f / total;
    for (size_t i = 0; i < limit; ++i) row[i] *= inv;
    std::fill(row + limit, row + width, 0.0f);
}

}  // namespace

void mla_attention_expanded(ThreadPool& pool, const MlaShape& s, const float* q, size_t T,
                            size_t pos, const float* cache, const float* kv_b, float* out,
                            const std::atomic<bool>* cancel) {
    if (T == 0) return;
    const size_t rows = pos + T, width = s.cache_width(), qk = s.nope + s.rope;
    const float scale = 1.0f / std::sqrt(static_cast<float>(qk));
    // The up-projections are GEMMs over the latents, which the cache interleaves with k_pe.
    std::vector<float> latents(rows * s.rank);
    for (size_t r = 0; r < rows; ++r)
        std::copy(cache + r * width, cache + r * width + s.rank, latents.data() + r * s.rank);
    const size_t block = std::min(T, std::max<size_t>(4, kScoreFloats / rows));

    // Heads in parallel; the GEMMs inside a head run inline on its thread.
    pool.parallel_for(s.heads, 1, [&](size_t h_begin, size_t h_end) {
        std::vector<float> keys(rows * qk), values(rows * s.v_dim), queries(block * qk),
            scratch(std::max(rows * s.nope, block * rows)), head_out(block * s.v_dim);
        for (size_t h = h_begin; h < h_end; ++h) {
            const float* w_uk = kv_b + h * (s.nope + s.v_dim) * s.rank;
            const float* w_uv = w_uk + s.nope * s.rank;
            // Key rows [k_nope, k_pe] against query rows [q_nope, q_pe]: one dot per score.
            matmul_wt(pool, latents.data(), rows, s.rank, w_uk, s.nope, scratch.data());
            for (size_t r = 0; r < rows; ++r) {
                float* key = keys.data() + r * qk;
                std::copy(scratch.data() + r * s.nope, scratch.data() + (r + 1) * s.nope, key);
                std::copy(cache + r * width + s.rank, cache + (r + 1) * width, key + s.nope);
            }
            matmul_wt(pool, latents.data(), rows, s.rank, w_uv, s.v_dim, values.data());

            for (size_t t0 = 0; t0 < T; t0 += block) {
                // Thrown on a pool thread: parallel_for stops the other shares and rethrows.
                if (cancel && cancel->load(std::memory_order_relaxed))
                    fail(Status::Cancelled, "cancelled");
                const size_t nb = std::min(block, T - t0);
                const size_t visible = pos + t0 + nb;  // rows seen by the block's last query
                for (size_t i = 0; i < nb; ++i) {
                    const float* qh = q + (t0 + i) * s.q_width() + h * qk;
                    for (size_t d = 0; d < qk; ++d) queries[i * qk + d] = qh[d] * scale;
                }
                float* scores = scratch.data();
                matmul_wt(pool, queries.data(), nb, qk, keys.data(), visible, scores);
                for (size_t i = 0; i < nb; ++i)
                    causal_softmax(scores + i * visible, pos + t0 + i + 1, visible);
                std::fill(head_out.begin(), head_out.begin() + nb * s.v_dim, 0.0f);
                accumulate_rows(scores, visible, nb, pos + t0 + 1, 1, values.data(), s.v_dim,
                                s.v_dim, 0, visible, head_out.data(), s.v_dim);
                for (size_t i = 0; i < nb; ++i)
                    std::copy(head_out.data() + i * s.v_dim, head_out.data() + (i + 1) * s.v_dim,
                              out + (t0 + i) * s.heads * s.v_dim + h * s.v_dim);
            }
        }
    });
}

void mla_attention_absorbed(ThreadPool& pool, const MlaShape& s, const float* q, size_t T,
                            size_t pos, const float* cache, const float* kv_b, float* out) {
    if (T == 0) return;
    const size_t rows = pos + T, width = s.cache_width(), qk = s.nope + s.rope;
    const size_t n_q = T * s.heads;  // latent queries, ordered [t, h]
    const float scale = 1.0f / std::sqrt(static_cast<float>(qk));
    auto w_uk_of = [&](size_t h) { return kv_b + h * (s.nope + s.v_dim) * s.rank; };

    // Latent query rows [W_uk_h^T q_nope, q_pe] * scale: one dot with a cache row is a score.
    std::vector<float> queries(n_q * width, 0.0f);
    pool.parallel_for(n_q, 4, [&](size_t begin, size_t end) {
        std::vector<float> q_nope(s.nope);
        for (size_t i = begin; i < end; ++i) {
            const float* qh = q + (i / s.heads) * s.q_width() + (i % s.heads) * qk;
            float* row = queries.data() + i * width;
            for (size_t d = 0; d < s.nope; ++d) q_nope[d] = qh[d] * scale;
            accumulate_rows(q_nope.data(), 0, 1, s.nope, 1, w_uk_of(i % s.heads), s.rank, s.rank,
                            0, s.nope, row, 0);
            for (size_t d = 0; d < s.rope; ++d) row[s.rank + d] = qh[s.nope + d] * scale;
        }
    });

    // All heads' scores in one GEMM: the cache is read once per step, not once per head.
    std::vector<float> probs(n_q * rows);
    matmul_wt(pool, queries.data(), n_q, width, cache, rows, probs.data());
    pool.parallel_for(n_q, std::max<size_t>(1, 65536 / rows), [&](size_t begin, size_t end) {
        for (size_t i = begin; i < end; ++i)
            causal_softmax(probs.data() + i * rows, pos + i / s.heads + 1, rows);
    });

    // o_lat [n_q, rank] = P · C, the cache split into row ranges with one partial sum each.
    const size_t parts =
        std::max<size_t>(1, std::min<size_t>(size_t(pool.size()), rows / 256));
    std::vector<float> partial(parts * n_q * s.rank, 0.0f);
    pool.parallel_for(parts, 1, [&](size_t begin, size_t end) {
        for (size_t part = begin; part < end; ++part)
            accumulate_rows(probs.data(), rows, n_q, pos + 1, s.heads, cache, width, s.rank,
                            rows * part / parts, rows * (part + 1) / parts,
                            partial.data() + part * n_q * s.rank, s.rank);
    });
    for (size_t part = 1; part < parts; ++part)
        for (size_t k = 0; k < n_q * s.rank; ++k) partial[k] += partial[part * n_q * s.rank + k];

    // The value up-projection, applied once per (token, head) after attention.
    pool.parallel_for(n_q, 1, [&](size_t begin, size_t end) {
        for (size_t i = begin; i < end; ++i)
            matmul_wt(pool, partial.data() + i * s.rank, 1, s.rank,
                      w_uk_of(i % s.heads) + s.nope * s.rank, s.v_dim, out + i * s.v_dim);
    });
}

}  // namespace kl::cpu
