// The tensor-core core of MLA attention in the absorbed form: query rows (token, head) hold
// [W_uk^T q_nope, q_pe] * scale * log2(e) in bf16, keys are whole cache rows (576 wide) and
// values their first `rank` columns, so the cache is read once per query tile and never
// decompressed. One CTA owns BM query rows and one contiguous split of the cache rows; it
// writes the unnormalised latent output and its (max, sum) per row, and mla_attention.cu's
// combine kernel merges the splits (FlashMLA-style split-K for decode, one split in prefill).
//
// Per block of BN cache rows: cp.async ring of STAGES blocks (zero-filled past the valid
// rows, so cache garbage never reaches P·V), S = Q·K^T on mma.sync m16n8k16 (bf16 in, fp32
// accumulation) into shared memory, a base-2 online softmax with 8 threads per row, then
// O += P·V with O in registers (each warp a 32 x RANK/8 slice).
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "chained_launch.cuh"
#include "tensor_core.cuh"

namespace kl::cuda::mla {

using bf16 = __nv_bfloat16;

struct FlashParams {
    // Per session z (blockIdx.z; one session unless a batch): its query rows, cache, the
    // position of its first query token and its partial results, session z's at offset z.
    const bf16* q_lat;          // [sessions, m, width] (width = rank + rope)
    const bf16* cache;          // [max_rows, width] (one session)
    const bf16* const* caches;  // device array of each session's cache (a batch), or null
    const int32_t* pos;         // device: [sessions]
    float* partial_o;           // [sessions, splits, m_padded, rank], unnormalised
    float2* partial_ml;         // [sessions, splits, m_padded]: (running max in log2 units, sum)
    int m, heads, width, width_padded, max_rows, splits, m_padded;
};

// Shared memory layout sizes (bytes). Rows are padded by 16 bytes: a row of 576 bf16 is a
// multiple of 128 bytes, which would put all 8 rows of an ldmatrix in one bank group.
template <int BM, int BN, int STAGES, int KS>
constexpr size_t flash_smem_bytes(int width_padded) {
    const size_t ld = static_cast<size_t>(width_padded) + 8;
    return (BM + STAGES * BN) * ld * 2 + KS * BM * (BN + 4) * 4 + BM * (BN + 8) * 2 + 3 * BM * 4;
}

// Copies `rows` rows of `width` bf16 from src (row stride width) into dst (row stride ld),
// zero-filling rows >= valid and columns [width, width_padded).
template <int THREADS>
__device__ __forceinline__ void load_rows(bf16* dst, int ld, const bf16* src, int rows, int valid,
                                          int width, int width_padded) {
    const int chunks = width_padded / 8, real = width / 8;
    for (int i = threadIdx.x; i < rows * chunks; i += THREADS) {
        const int r = i / chunks, ch = i - r * chunks;
        const bool ok = r < valid && ch < real;
        const bf16* from = ok ? src + static_cast<size_t>(r) * width + ch * 8 : src;
        cp_async16(smem_u32(dst + r * ld + ch * 8), from, ok);
    }
}

// BM query rows (multiple of 32), BN = 32 cache rows per block, S computed by warps of
// (16*SMT) x (8*SNT) tiles, each tile by KS warps over KS slices of the 576-long dot
// products (shorter dependent chains; the softmax adds the KS partial scores); P·V by BM/4
// warps of 32 rows x RANK/8 columns.
template <int RANK, int BM, int BN, int STAGES, int SMT, int SNT, int KS>
__global__ void __launch_bounds__(BM * 8) mla_flash_kernel(FlashParams p) {
    constexpr int NW = BM / 4, THREADS = NW * 32;
    constexpr int SWM = BM / (16 * SMT), SWN = BN / (8 * SNT), S_WARPS = SWM * SWN;
    constexpr int PV_MG = BM / 32, PV_N = RANK / (NW / PV_MG), PV_NT = PV_N / 8;
    static_assert(BN == 32 && BM % 32 == 0 && SNT % 2 == 0 && S_WARPS * KS <= NW, "tile shape");
    static_assert(PV_N % 16 == 0 || PV_N == 8, "rank slice per warp");
    constexpr int LDS = BN + 4, LDP = BN + 8;  // fp32 scores, bf16 probabilities

    wait_for_previous();  // chained_launch.cuh
    release_next();
    extern __shared__ uint4 smem_raw[];
    const int ld = p.width_padded + 8;
    bf16* q_s = reinterpret_cast<bf16*>(smem_raw);
    bf16* k_s = q_s + BM * ld;
    float* s_s = reinterpret_cast<float*>(k_s + STAGES * BN * ld);
    bf16* p_s = reinterpret_cast<bf16*>(s_s + KS * BM * LDS);
    float* row_m = reinterpret_cast<float*>(p_s + BM * LDP);
    float* row_l = row_m + BM;
    float* row_alpha = row_l + BM;

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
    const int r0 = blockIdx.x * BM, split = blockIdx.y;
    const size_t z = blockIdx.z;
    const int pos = p.pos[z];
    const bf16* const cache = p.caches ? p.caches[z] : p.cache;
    const bf16* const q_lat = p.q_lat + z * p.m * p.width;
    float* const partial_o = p.partial_o + z * p.splits * p.m_padded * RANK;
    float2* const partial_ml = p.partial_ml + z * p.splits * p.m_padded;
    const int last_token = (min(r0 + BM, p.m) - 1) / p.heads;
    const int kv_end = min(pos + last_token + 1, p.max_rows);
    // Split ranges depend on pos at run time, so a graph captured once serves every position.
    const int chunk = ((kv_end + p.splits - 1) / p.splits + BN - 1) / BN * BN;
    const int kv_begin = split * chunk;
    const int kv_stop = min(kv_end, kv_begin + chunk);
    float2* ml_out = partial_ml + static_cast<size_t>(split) * p.m_padded + r0;
    if (kv_begin >= kv_stop) {  // nothing to see: the combine skips rows with sum 0
        if (tid < BM && r0 + tid < p.m) ml_out[tid] = make_float2(-INFINITY, 0.0f);
        return;
    }
    const int blocks = (kv_stop - kv_begin + BN - 1) / BN;
    const bf16* kv_src = cache + static_cast<size_t>(kv_begin) * p.width;

    load_rows<THREADS>(q_s, ld, q_lat + static_cast<size_t>(r0) * p.width, BM, p.m - r0, p.width,
                       p.width_padded);
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < blocks)
            load_rows<THREADS>(k_s + s * BN * ld, ld, kv_src + static_cast<size_t>(s) * BN * p.width,
                               BN, kv_stop - kv_begin - s * BN, p.width, p.width_padded);
        cp_async_commit();
    }
    if (tid < BM) row_m[tid] = -INFINITY, row_l[tid] = 0.0f;

    const int ks = warp / S_WARPS, swm = (warp % S_WARPS) % SWM, swn = (warp % S_WARPS) / SWM;
    const int k_steps = (p.width_padded / 16 + KS - 1) / KS;
    const int k_begin = ks * k_steps * 16, k_end = min(p.width_padded, k_begin + k_steps * 16);
    // Causal limit (exclusive) of the score row this thread's softmax handles; padding rows
    // see nothing.
    const int soft_row = tid >> 3;
    const int limit = r0 + soft_row < p.m ? min(kv_stop, pos + (r0 + soft_row) / p.heads + 1) : 0;

    const int pm = warp % PV_MG, pn = warp / PV_MG;
    float o_acc[2][PV_NT][4] = {};

    for (int b = 0; b < blocks; ++b) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        {
            const int nb = b + STAGES - 1;
            if (nb < blocks)
                load_rows<THREADS>(k_s + (nb % STAGES) * BN * ld, ld,
                                   kv_src + static_cast<size_t>(nb) * BN * p.width, BN,
                                   kv_stop - kv_begin - nb * BN, p.width, p.width_padded);
            cp_async_commit();
        }
        const bf16* kst = k_s + (b % STAGES) * BN * ld;

        if (warp < S_WARPS * KS) {  // S = Q K^T for a (16 SMT) x (8 SNT) tile, one k slice
            float s_acc[SMT][SNT][4] = {};
            const uint32_t a_base =
                smem_u32(q_s + (swm * 16 * SMT + (lane & 15)) * ld + (lane >> 4) * 8);
            const uint32_t b_base = smem_u32(
                kst + (swn * 8 * SNT + (lane & 7) + ((lane >> 4) << 3)) * ld + ((lane >> 3) & 1) * 8);
#pragma unroll 2
            for (int k0 = k_begin; k0 < k_end; k0 += 16) {
                uint32_t a[SMT][4], bq[SNT / 2][4];
#pragma unroll
                for (int i = 0; i < SMT; ++i) ldmatrix_x4(a[i], a_base + (i * 16 * ld + k0) * 2);
#pragma unroll
                for (int j = 0; j < SNT / 2; ++j) ldmatrix_x4(bq[j], b_base + (j * 16 * ld + k0) * 2);
#pragma unroll
                for (int i = 0; i < SMT; ++i)
#pragma unroll
                    for (int j = 0; j < SNT; ++j)
                        mma_bf16(s_acc[i][j], a[i], bq[j / 2][(j & 1) * 2],
                                 bq[j / 2][(j & 1) * 2 + 1]);
            }
            float* s_part = s_s + ks * BM * LDS;
#pragma unroll
            for (int i = 0; i < SMT; ++i)
#pragma unroll
                for (int j = 0; j < SNT; ++j)
#pragma unroll
                    for (int h = 0; h < 2; ++h) {
                        const int row = swm * 16 * SMT + i * 16 + g + h * 8;
                        const int col = swn * 8 * SNT + j * 8 + tq * 2;
                        *reinterpret_cast<float2*>(s_part + row * LDS + col) =
                            make_float2(s_acc[i][j][h * 2], s_acc[i][j][h * 2 + 1]);
                    }
        }
        __syncthreads();

        {  // online softmax, base 2 (the scale carries log2 e): 8 threads per row, 4 columns each
            const int row = soft_row, part = tid & 7;
            float4 s = *reinterpret_cast<const float4*>(s_s + row * LDS + part * 4);
#pragma unroll
            for (int k = 1; k < KS; ++k) {
                const float4 more = *reinterpret_cast<const float4*>(s_s + (k * BM + row) * LDS + part * 4);
                s.x += more.x, s.y += more.y, s.z += more.z, s.w += more.w;
            }
            const int kv = kv_begin + b * BN + part * 4;  // causal and split-end mask
            if (kv >= limit) s.x = -INFINITY;
            if (kv + 1 >= limit) s.y = -INFINITY;
            if (kv + 2 >= limit) s.z = -INFINITY;
            if (kv + 3 >= limit) s.w = -INFINITY;
            float mx = fmaxf(fmaxf(s.x, s.y), fmaxf(s.z, s.w));
#pragma unroll
            for (int off = 1; off < 8; off <<= 1) mx = fmaxf(mx, __shfl_xor_sync(~0u, mx, off));
            const float m_old = row_m[row];
            const float m_new = fmaxf(m_old, mx);
            // A row with nothing visible yet keeps max -inf; 0 as the reference avoids inf-inf.
            const float ref = m_new == -INFINITY ? 0.0f : m_new;
            const __nv_bfloat162 p01 = __floats2bfloat162_rn(exp2f(s.x - ref), exp2f(s.y - ref));
            const __nv_bfloat162 p23 = __floats2bfloat162_rn(exp2f(s.z - ref), exp2f(s.w - ref));
            // The sum uses the rounded probabilities, the ones P·V multiplies.
            const float2 f01 = __bfloat1622float2(p01), f23 = __bfloat1622float2(p23);
            float sum = f01.x + f01.y + f23.x + f23.y;
#pragma unroll
            for (int off = 1; off < 8; off <<= 1) sum += __shfl_xor_sync(~0u, sum, off);
            uint2 packed;
            packed.x = *reinterpret_cast<const uint32_t*>(&p01);
            packed.y = *reinterpret_cast<const uint32_t*>(&p23);
            *reinterpret_cast<uint2*>(p_s + row * LDP + part * 4) = packed;
            __syncwarp();  // every lane of the row has read row_m before part 0 rewrites it
            if (part == 0) {
                const float alpha = exp2f(m_old - ref);
                row_m[row] = m_new;
                row_l[row] = row_l[row] * alpha + sum;
                row_alpha[row] = alpha;
            }
        }
        __syncthreads();

        {  // O = alpha O + P V, V = the first RANK columns of the cache rows
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                const float a0 = row_alpha[pm * 32 + i * 16 + g];
                const float a1 = row_alpha[pm * 32 + i * 16 + g + 8];
#pragma unroll
                for (int j = 0; j < PV_NT; ++j) {
                    o_acc[i][j][0] *= a0, o_acc[i][j][1] *= a0;
                    o_acc[i][j][2] *= a1, o_acc[i][j][3] *= a1;
                }
            }
#pragma unroll
            for (int kk = 0; kk < BN; kk += 16) {
                uint32_t a[2][4];
#pragma unroll
                for (int i = 0; i < 2; ++i)
                    ldmatrix_x4(a[i], smem_u32(p_s + (pm * 32 + i * 16 + (lane & 15)) * LDP + kk +
                                           (lane >> 4) * 8));
                const bf16* v_row = kst + (kk + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + pn * PV_N;
#pragma unroll
                for (int j = 0; j + 1 < PV_NT; j += 2) {
                    uint32_t bv[4];
                    ldmatrix_x4_trans(bv, smem_u32(v_row + j * 8 + (lane >> 4) * 8));
#pragma unroll
                    for (int i = 0; i < 2; ++i) {
                        mma_bf16(o_acc[i][j], a[i], bv[0], bv[1]);
                        mma_bf16(o_acc[i][j + 1], a[i], bv[2], bv[3]);
                    }
                }
                if constexpr (PV_NT % 2 == 1) {
                    uint32_t bv[2];
                    ldmatrix_x2_trans(bv, smem_u32(v_row + (PV_NT - 1) * 8));
#pragma unroll
                    for (int i = 0; i < 2; ++i) mma_bf16(o_acc[i][PV_NT - 1], a[i], bv[0], bv[1]);
                }
            }
        }
    }

    // Unnormalised partial output and the row statistics (final since the last barrier).
    float* o_out = partial_o + (static_cast<size_t>(split) * p.m_padded + r0) * RANK;
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int row = pm * 32 + i * 16 + g + h * 8;
            if (r0 + row >= p.m) continue;
#pragma unroll
            for (int j = 0; j < PV_NT; ++j)
                *reinterpret_cast<float2*>(o_out + static_cast<size_t>(row) * RANK + pn * PV_N +
                                           j * 8 + tq * 2) =
                    make_float2(o_acc[i][j][h * 2], o_acc[i][j][h * 2 + 1]);
        }
    if (tid < BM && r0 + tid < p.m) ml_out[tid] = make_float2(row_m[tid], row_l[tid]);
}

}  // namespace kl::cuda::mla
