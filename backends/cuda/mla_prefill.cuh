// What the expanded MLA prefill's two kernels share (mla_prefill.cu: mma.sync, every
// device; mla_prefill_wgmma.cu: wgmma, sm_90a): their parameters, and the work on the rows
// of a tile that both hold the same way. A warp owns 16 query rows; each thread holds two of
// them (g = lane / 4 and g + 8), columns 2 (lane % 4) + {0, 1} of every 8-wide block of the
// score tile S [rows, keys] and of the output tile O [rows, v]: mma.sync's C fragment, which
// is also wgmma's accumulator layout. The 4 threads of a quad share a row.
#pragma once

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "ops.h"

namespace kl::cuda::mla_prefill {

struct PrefillParams {
    const float* q;     // [T, heads, nope + rope] fp32 (rope already applied)
    const bf16* cache;  // [rows, rank + rope]: k_pe at columns [rank, rank + rope)
    const bf16* kv;     // [keys, heads, nope + v]: the chunk's decompressed rows
    const bf16* vt;     // wgmma: [heads, v, kMlaPrefillChunkKeys], the chunk's values by column
    float2* state;      // [T, heads]: (running max in log2 units, sum) between chunks
    float* out;         // [T, heads, v]: running unnormalised output, normalised at the end
    float scale;        // softmax scale * log2(e), folded into q
    int T, heads, nope, rope, rank;
    long long pos;        // position of query 0
    long long key_begin;  // position of the chunk's first key
    int keys;             // keys in the chunk
    bool first, last;
};

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
}

__device__ __forceinline__ float bf16_round(float x) {
    return __bfloat162float(__float2bfloat16(x));
}

// A thread's two rows and their running softmax state across key blocks and chunks.
template <int VT>
struct Rows {
    int t[2];            // query index (rows past T take the last query's, never written)
    long long limit[2];  // the last key position each sees
    float o[VT][4];      // unnormalised output, accumulator layout
    float max[2], sum[2];

    // Rows `first_row` + g and + 8 of head h: the state of the chunks before, or empty.
    __device__ __forceinline__ void begin(const PrefillParams& p, int h, int first_row, int g,
                                          int t4) {
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            t[i] = first_row + g + 8 * i;
            limit[i] = p.pos + min(t[i], p.T - 1);
            max[i] = -INFINITY, sum[i] = 0.0f;
        }
#pragma unroll
        for (int n = 0; n < VT; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) o[n][e] = 0.0f;
        if (p.first) return;
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            if (t[i] >= p.T) continue;
            const size_t row = size_t(t[i]) * p.heads + h;
            const float2 ml = p.state[row];
            max[i] = ml.x;
            sum[i] = t4 == 0 ? ml.y : 0.0f;  // the quad's sums are added at the end
#pragma unroll
            for (int n = 0; n < VT; ++n) {
                const float2 v =
                    *reinterpret_cast<const float2*>(p.out + row * (VT * 8) + n * 8 + 2 * t4);
                o[n][2 * i] = v.x, o[n][2 * i + 1] = v.y;
            }
        }
    }

    // Scores of keys [key0, key0 + 8 NT) of the chunk that are past the chunk's end or past a
    // row's last key become -inf; `needed` is false when no key of the block can be.
    template <int NT>
    __device__ __forceinline__ void mask(float (&s)[NT][4], const PrefillParams& p, int key0,
                                         int t4) const {
#pragma unroll
        for (int n = 0; n < NT; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int key = key0 + n * 8 + 2 * t4 + (e & 1);
                if (key >= p.keys || p.key_begin + key > limit[e >> 1]) s[n][e] = -INFINITY;
            }
    }

    // Online softmax of one key block (base 2): s becomes the bf16-rounded probabilities that
    // P·V multiplies, the rows' sums add those same values (as mla_flash.cuh does), and o is
    // rescaled to the new maxima.
    template <int NT>
    __device__ __forceinline__ void softmax(float (&s)[NT][4]) {
        float scale_old[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            float mx = -INFINITY;
#pragma unroll
            for (int n = 0; n < NT; ++n) mx = fmaxf(mx, fmaxf(s[n][2 * i], s[n][2 * i + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(~0u, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(~0u, mx, 2));
            const float m_new = fmaxf(max[i], mx);
            const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // a row with no key yet
            scale_old[i] = exp2f(max[i] - m_use);
            max[i] = m_new;
            float block_sum = 0.0f;
#pragma unroll
            for (int n = 0; n < NT; ++n) {
                s[n][2 * i] = bf16_round(exp2f(s[n][2 * i] - m_use));
                s[n][2 * i + 1] = bf16_round(exp2f(s[n][2 * i + 1] - m_use));
                block_sum += s[n][2 * i] + s[n][2 * i + 1];
            }
            sum[i] = sum[i] * scale_old[i] + block_sum;
        }
#pragma unroll
        for (int n = 0; n < VT; ++n) {
            o[n][0] *= scale_old[0], o[n][1] *= scale_old[0];
            o[n][2] *= scale_old[1], o[n][3] *= scale_old[1];
        }
    }

    // The quad's sums, then the state for the next chunk or the normalised output.
    __device__ __forceinline__ void finish(const PrefillParams& p, int h, int t4) {
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            float total = sum[i];
            total += __shfl_xor_sync(~0u, total, 1);
            total += __shfl_xor_sync(~0u, total, 2);
            if (t[i] >= p.T) continue;
            const size_t row = size_t(t[i]) * p.heads + h;
            const float inv = p.last ? (total > 0.0f ? 1.0f / total : 0.0f) : 1.0f;
#pragma unroll
            for (int n = 0; n < VT; ++n)
                *reinterpret_cast<float2*>(p.out + row * (VT * 8) + n * 8 + 2 * t4) =
                    make_float2(o[n][2 * i] * inv, o[n][2 * i + 1] * inv);
            if (!p.last && t4 == 0) p.state[row] = make_float2(max[i], total);
        }
    }
};

// The A fragment of P·V for keys 16 j .. 16 j + 15: score blocks 2 j and 2 j + 1, packed.
template <int NT>
__device__ __forceinline__ void probabilities_a(const float (&s)[NT][4], int j, uint32_t (&a)[4]) {
    a[0] = pack_bf16(s[2 * j][0], s[2 * j][1]);
    a[1] = pack_bf16(s[2 * j][2], s[2 * j][3]);
    a[2] = pack_bf16(s[2 * j + 1][0], s[2 * j + 1][1]);
    a[3] = pack_bf16(s[2 * j + 1][2], s[2 * j + 1][3]);
}

}  // namespace kl::cuda::mla_prefill

namespace kl::cuda {
// mla_prefill_wgmma.cu's launch (where mla_prefill_wgmma_usable, ops.h): V^T of the chunk
// into vt ([heads, v, kMlaPrefillChunkKeys]), then the attention.
void mla_prefill_chunk_wgmma(const mla_prefill::PrefillParams& params, bf16* vt,
                             cudaStream_t stream);
}  // namespace kl::cuda
