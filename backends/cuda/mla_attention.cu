// MLA attention in the absorbed form (model.md "MLA layer"), for decode and prefill alike:
//   1. mla_absorb_query: q_lat[t, h] = [W_uk_h^T q_nope, q_pe] * scale * log2(e) in bf16;
//   2. mla_flash_kernel (mla_flash.cuh): causal MQA of all (token, head) rows against the
//      576-wide latent cache on tensor cores, split over the context into partial results;
//   3. mla_combine: merges the splits' partial latent outputs (weights by their maxima);
//   4. mla_project: applies W_uv (the value half of kv_b) to the merged latents.
// The absorbed form costs 2 * heads * (width + rank) FLOPs per (query, row) pair (69.6 K at
// the real shapes, ~3.4x the expanded form's 2 * heads * (192 + 128)), but needs no
// decompression of the cache, which the expanded form would redo for every 256-token piece.
// Prefill pieces of many queries can take the expanded form instead (mla_prefill.cu).
// Shapes the tensor-core kernel does not take (rank not 64/128/256/512, shared memory over
// the limit, misaligned pointers) run mla_simple_kernel: fp32, one block per (query, head).
#include <algorithm>
#include <cmath>
#include <string>

#include "chained_launch.cuh"
#include "cuda_util.h"
#include "mla_flash.cuh"
#include "ops.h"

namespace kl::cuda {
namespace {

using mla::FlashParams;
using mla::flash_smem_bytes;
using mla::mla_flash_kernel;

// CTAs the split over the context aims for: the H100 and H200 have 132 SMs and the flash
// kernel runs one CTA per SM. A constant, not a device query, so that the workspace size
// (computed before the device is current) and the launch always agree.
constexpr size_t kTargetCtas = 132;
constexpr int kBlockRows = 32;            // cache rows per pipeline block (BN)
constexpr int kTokensPerBlock = 8;        // tokens sharing one read of W_uk / W_uv
constexpr size_t kMaxSharedBytes = 227 * 1024;  // sm_90 opt-in limit per block
constexpr float kLog2e = 1.4426950408889634f;

// Decode tiles hold 32 query rows (one token of 32 heads) and keep 3 blocks in flight;
// prefill tiles hold 64 rows (twice the reuse of each cache block) with 2 in flight.
constexpr int kDecodeBM = 32, kDecodeStages = 4;
constexpr int kPrefillBM = 64, kPrefillStages = 3;
constexpr int kScoreSlices = 2;  // KS: warps sharing one score tile's dot products

size_t round_up(size_t x, size_t to) {
    return (x + to - 1) / to * to;
}

size_t absorb_shared_bytes(size_t nope);

struct Plan {
    bool fast = false;
    int bm = 0;
    size_t sessions = 1, m = 0, tiles = 0, splits = 0, m_padded = 0, width_padded = 0, smem = 0;
    size_t q_bytes = 0, ml_bytes = 0, o_bytes = 0;
    size_t workspace() const { return q_bytes + ml_bytes + o_bytes; }
};

// T query tokens per session, `sessions` sessions (a batch: T = 1), each with its own tiles
// and splits; the CTAs they add up to aim at kTargetCtas.
Plan make_plan(size_t T, size_t heads, size_t rank, size_t rope, size_t max_rows,
               size_t sessions = 1) {
    Plan p;
    const size_t width = rank + rope;
    p.width_padded = round_up(width, 16);
    p.sessions = sessions;
    p.m = T * heads;
    p.bm = p.m <= kDecodeBM ? kDecodeBM : kPrefillBM;
    p.smem = p.bm == kDecodeBM
                 ? flash_smem_bytes<kDecodeBM, kBlockRows, kDecodeStages, kScoreSlices>(
                       int(p.width_padded))
                 : flash_smem_bytes<kPrefillBM, kBlockRows, kPrefillStages, kScoreSlices>(
                       int(p.width_padded));
    p.fast = (rank == 64 || rank == 128 || rank == 256 || rank == 512) && rope % 8 == 0 &&
             p.smem <= kMaxSharedBytes && p.m > 0 && max_rows <= size_t(INT32_MAX) &&
             sessions * p.m * width <= size_t(INT32_MAX) && sessions <= 65535;
    if (!p.fast) return p;
    p.tiles = (p.m + p.bm - 1) / p.bm;
    p.m_padded = p.tiles * p.bm;
    const size_t blocks = std::max<size_t>(1, (max_rows + kBlockRows - 1) / kBlockRows);
    p.splits = std::clamp<size_t>(kTargetCtas / (p.tiles * sessions), 1, blocks);
    p.q_bytes = round_up(sessions * p.m * width * sizeof(bf16), 256);
    p.ml_bytes = round_up(sessions * p.splits * p.m_padded * sizeof(float2), 256);
    p.o_bytes = sessions * p.splits * p.m_padded * rank * sizeof(float);
    return p;
}

// ---- query absorption ------------------------------------------------------------------
// Block (head, 256 latent columns, 8 tokens), 4 warps splitting nope: each lane owns 8
// columns (16-byte loads of W_uk, 8 rows in flight per warp), so the 4 MB of W_uk at the
// real shapes is streamed with enough loads outstanding even at T = 1; a row of W_uk is
// read once per 8 tokens. The 4 warps' sums meet in shared memory.
constexpr int kAbsorbWarps = 4, kAbsorbCols = 256;

size_t absorb_shared_bytes(size_t nope) {
    return (kTokensPerBlock * nope + kAbsorbWarps * kTokensPerBlock * kAbsorbCols) * sizeof(float);
}

__global__ void __launch_bounds__(kAbsorbWarps * 32)
    mla_absorb_query(const float* q, int T, int heads, int nope, int rope, int v_dim, int rank,
                     float scale, const bf16* kv_b, bf16* q_lat) {
    extern __shared__ float absorb_shared[];
    float* q_nope = absorb_shared;                            // [kTokensPerBlock][nope]
    float* sums = q_nope + kTokensPerBlock * nope;            // [warps][tokens][kAbsorbCols]
    const int h = blockIdx.x, t0 = blockIdx.z * kTokensPerBlock;
    const int n_tok = min(kTokensPerBlock, T - t0), qk = nope + rope, width = rank + rope;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int c = blockIdx.y * kAbsorbCols + lane * 8;
    // W_uk is a weight: on its way to L2 while the kernels before finish (chained_launch.cuh).
    if (c < rank)
        for (int d = warp; d < nope; d += kAbsorbWarps)
            prefetch_l2(kv_b + (size_t(h) * (nope + v_dim) + d) * rank + c);
    wait_for_previous();
    release_next();
    for (int i = threadIdx.x; i < kTokensPerBlock * nope; i += blockDim.x) {
        const int g = i / nope, d = i - g * nope;
        q_nope[i] = g < n_tok ? q[(size_t(t0 + g) * heads + h) * qk + d] : 0.0f;
    }
    __syncthreads();
    float acc[kTokensPerBlock][8] = {};
    if (c < rank) {
        const bf16* w = kv_b + size_t(h) * (nope + v_dim) * rank + c;
#pragma unroll 8
        for (int d = warp; d < nope; d += kAbsorbWarps) {
            const uint4 raw = *reinterpret_cast<const uint4*>(w + size_t(d) * rank);
            const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const float2 wv = __bfloat1622float2(pairs[k]);
#pragma unroll
                for (int g = 0; g < kTokensPerBlock; ++g) {
                    acc[g][2 * k] += q_nope[g * nope + d] * wv.x;
                    acc[g][2 * k + 1] += q_nope[g * nope + d] * wv.y;
                }
            }
        }
    }
#pragma unroll
    for (int g = 0; g < kTokensPerBlock; ++g)
#pragma unroll
        for (int k = 0; k < 8; k += 4)
            *reinterpret_cast<float4*>(sums + (warp * kTokensPerBlock + g) * kAbsorbCols + lane * 8 + k) =
                make_float4(acc[g][k], acc[g][k + 1], acc[g][k + 2], acc[g][k + 3]);
    __syncthreads();
    for (int i = threadIdx.x; i < n_tok * kAbsorbCols / 2; i += blockDim.x) {
        const int g = i / (kAbsorbCols / 2), col = (i - g * (kAbsorbCols / 2)) * 2;
        if (blockIdx.y * kAbsorbCols + col >= rank) continue;
        float2 total = make_float2(0.0f, 0.0f);
        for (int w = 0; w < kAbsorbWarps; ++w) {
            const float2 part = *reinterpret_cast<const float2*>(
                sums + (w * kTokensPerBlock + g) * kAbsorbCols + col);
            total.x += part.x, total.y += part.y;
        }
        *reinterpret_cast<__nv_bfloat162*>(q_lat + (size_t(t0 + g) * heads + h) * width +
                                           blockIdx.y * kAbsorbCols + col) =
            __floats2bfloat162_rn(total.x * scale, total.y * scale);
    }
    if (blockIdx.y == 0)
        for (int i = threadIdx.x; i < n_tok * rope; i += blockDim.x) {
            const int g = i / rope, d = i - g * rope;
            const size_t row = size_t(t0 + g) * heads + h;
            q_lat[row * width + rank + d] = __float2bfloat16(q[row * qk + nope + d] * scale);
        }
}

// ---- split merge -----------------------------------------------------------------------
// Block (query row, 128 latent columns), 8 warps: the merge weights of the splits that saw
// any of the row's context (compacted), then each warp sums every 8th such split with one
// 16-byte load per lane, so the loads of many splits are in flight at once. The merged,
// normalised latent output overwrites split 0's slot (only this block touches those
// columns of this row, and it has read them before the barrier that precedes the write).
// blockIdx.z is the session of a batch (its partial results at offset z).
constexpr int kCombineWarps = 8, kCombineCols = 128;

__global__ void __launch_bounds__(kCombineWarps * 32)
    mla_combine(const float2* partial_ml, float* partial_o, int splits, int m_padded, int rank) {
    wait_for_previous();  // chained_launch.cuh
    release_next();
    const int session_rows = int(blockIdx.z) * splits * m_padded;  // < 2^31: the plan's sizes
    partial_ml += session_rows;
    partial_o += size_t(session_rows) * rank;
    extern __shared__ float combine_shared[];
    const int slots = (splits + 3) & ~3;  // keeps `sums` 16-byte aligned
    float* weight = combine_shared;                              // [splits], compacted
    int* active = reinterpret_cast<int*>(weight + slots);        // [splits]
    float4* sums = reinterpret_cast<float4*>(active + slots);    // [warps][32]
    __shared__ int n_active;
    const size_t row = blockIdx.x;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

    if (warp == 0) {
        float mx = -INFINITY;
        for (int s = lane; s < splits; s += 32) {
            const float2 ml = partial_ml[size_t(s) * m_padded + row];
            if (ml.y > 0.0f) mx = fmaxf(mx, ml.x);
        }
        for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(~0u, mx, off));
        float total = 0.0f;
        int count = 0;
        for (int s0 = 0; s0 < splits; s0 += 32) {
            const int s = s0 + lane;
            const float2 ml = s < splits ? partial_ml[size_t(s) * m_padded + row]
                                         : make_float2(-INFINITY, 0.0f);
            const bool live = ml.y > 0.0f;  // splits that saw none of this row wrote no output
            const unsigned mask = __ballot_sync(~0u, live);
            if (live) {
                const int slot = count + __popc(mask & ((1u << lane) - 1));
                const float w = exp2f(ml.x - mx);
                weight[slot] = w;
                active[slot] = s;
                total += w * ml.y;
            }
            count += __popc(mask);
        }
        for (int off = 16; off > 0; off >>= 1) total += __shfl_xor_sync(~0u, total, off);
        __syncwarp();
        const float inv = total > 0.0f ? 1.0f / total : 0.0f;
        for (int k = lane; k < count; k += 32) weight[k] *= inv;
        if (lane == 0) n_active = count;
    }
    __syncthreads();

    const int c = blockIdx.y * kCombineCols + lane * 4;
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (c < rank) {
#pragma unroll 4
        for (int k = warp; k < n_active; k += kCombineWarps) {
            const float w = weight[k];
            const float4 o = *reinterpret_cast<const float4*>(
                partial_o + (size_t(active[k]) * m_padded + row) * rank + c);
            acc.x += w * o.x, acc.y += w * o.y, acc.z += w * o.z, acc.w += w * o.w;
        }
    }
    sums[warp * 32 + lane] = acc;
    __syncthreads();
    if (warp == 0 && c < rank) {
        float4 total = sums[lane];
        for (int w = 1; w < kCombineWarps; ++w) {
            const float4 part = sums[w * 32 + lane];
            total.x += part.x, total.y += part.y, total.z += part.z, total.w += part.w;
        }
        *reinterpret_cast<float4*>(partial_o + row * rank + c) = total;
    }
}

// ---- value projection --------------------------------------------------------------------
// Block (head, 16 output dims, 8 tokens), 4 warps of 4 dims: the tokens' merged latents in
// shared memory, then each warp issues its 4 W_uv rows' 16-byte loads together. Token t's
// latents start at o_lat + t * token_stride (heads * rank for one session's tokens; a
// batch's sessions sit one partial-result area apart).
constexpr int kProjectWarps = 4, kProjectRowsPerWarp = 4;
constexpr int kProjectRows = kProjectWarps * kProjectRowsPerWarp;

__global__ void __launch_bounds__(kProjectWarps * 32)
    mla_project(const float* o_lat, size_t token_stride, int T, int heads, int nope, int v_dim,
                int rank, const bf16* kv_b, float* out) {
    extern __shared__ float o_shared[];  // [kTokensPerBlock][rank]
    const int h = blockIdx.x, t0 = blockIdx.z * kTokensPerBlock;
    const int n_tok = min(kTokensPerBlock, T - t0);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int d0 = blockIdx.y * kProjectRows + warp * kProjectRowsPerWarp;
    const bf16* w_uv = kv_b + (size_t(h) * (nope + v_dim) + nope) * rank;
    // W_uv on its way to L2 while the kernels before finish (chained_launch.cuh).
    for (int r = 0; r < kProjectRowsPerWarp && d0 + r < v_dim; ++r)
        for (int c = lane * 8; c < rank; c += 256) prefetch_l2(w_uv + size_t(d0 + r) * rank + c);
    wait_for_previous();
    release_next();
    for (int i = threadIdx.x * 4; i < kTokensPerBlock * rank; i += blockDim.x * 4) {
        const int g = i / rank, c = i - g * rank;
        *reinterpret_cast<float4*>(o_shared + i) =
            g < n_tok ? *reinterpret_cast<const float4*>(o_lat + size_t(t0 + g) * token_stride +
                                                         size_t(h) * rank + c)
                      : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    __syncthreads();

    float acc[kProjectRowsPerWarp][kTokensPerBlock] = {};
    for (int c = lane * 8; c < rank; c += 256) {
        uint4 raw[kProjectRowsPerWarp];
#pragma unroll
        for (int r = 0; r < kProjectRowsPerWarp; ++r)
            raw[r] = d0 + r < v_dim ? *reinterpret_cast<const uint4*>(w_uv + size_t(d0 + r) * rank + c)
                                    : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int g = 0; g < kTokensPerBlock; ++g) {
            const float4 lo = *reinterpret_cast<const float4*>(o_shared + g * rank + c);
            const float4 hi = *reinterpret_cast<const float4*>(o_shared + g * rank + c + 4);
            const float o[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
#pragma unroll
            for (int r = 0; r < kProjectRowsPerWarp; ++r) {
                const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&raw[r]);
#pragma unroll
                for (int k = 0; k < 4; ++k) {
                    const float2 wv = __bfloat1622float2(pairs[k]);
                    acc[r][g] += wv.x * o[2 * k] + wv.y * o[2 * k + 1];
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < kProjectRowsPerWarp; ++r)
#pragma unroll
        for (int g = 0; g < kTokensPerBlock; ++g) {
            float v = acc[r][g];
            for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(~0u, v, off);
            if (lane == 0 && g < n_tok && d0 + r < v_dim)
                out[(size_t(t0 + g) * heads + h) * v_dim + d0 + r] = v;
        }
}

// ---- simple fp32 path for the shapes the tensor-core kernel does not take ---------------
constexpr int kSimpleThreads = 128;  // also the tile of cache rows scored at once

__device__ float block_max(float value, float* scratch) {
    for (int offset = 16; offset > 0; offset >>= 1)
        value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
    if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = value;
    __syncthreads();
    float m = scratch[0];
    for (int w = 1; w < kSimpleThreads / 32; ++w) m = fmaxf(m, scratch[w]);
    __syncthreads();
    return m;
}

__device__ float block_total(float value, float* scratch) {
    for (int offset = 16; offset > 0; offset >>= 1)
        value += __shfl_xor_sync(0xffffffffu, value, offset);
    if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = value;
    __syncthreads();
    float s = 0.0f;
    for (int w = 0; w < kSimpleThreads / 32; ++w) s += scratch[w];
    __syncthreads();
    return s;
}

// Shared memory: q_latent[rank], q_pe[rope], o_latent[rank], p[kSimpleThreads].
// One session's T tokens (caches null), or a batch: token t is session t's one query, at
// pos_device[t] over caches[t].
__global__ void mla_simple_kernel(const float* q, const int32_t* pos_device, size_t max_rows,
                                  const bf16* one_cache, const bf16* const* caches,
                                  const bf16* kv_b, int heads, int nope, int rope, int v_dim,
                                  int rank, float scale, float* out) {
    wait_for_previous();  // chained_launch.cuh
    release_next();
    extern __shared__ float shared[];
    float* q_latent = shared;
    float* q_pe = q_latent + rank;
    float* o_latent = q_pe + rope;
    float* p = o_latent + rank;
    __shared__ float scratch[kSimpleThreads / 32];

    const size_t t = blockIdx.x / heads;
    const int h = blockIdx.x % heads;
    const bf16* const cache = caches ? caches[t] : one_cache;
    const float* qh = q + (t * heads + h) * static_cast<size_t>(nope + rope);
    const bf16* w_uk = kv_b + static_cast<size_t>(h) * (nope + v_dim) * rank;
    const bf16* w_uv = w_uk + static_cast<size_t>(nope) * rank;
    const int width = rank + rope;

    for (int c = threadIdx.x; c < rank; c += kSimpleThreads) {
        float acc = 0.0f;
        for (int d = 0; d < nope; ++d) acc += qh[d] * __bfloat162float(w_uk[d * rank + c]);
        q_latent[c] = acc;
        o_latent[c] = 0.0f;
    }
    for (int d = threadIdx.x; d < rope; d += kSimpleThreads) q_pe[d] = qh[nope + d];
    __syncthreads();

    const size_t visible = min(
        caches ? static_cast<size_t>(pos_device[t]) + 1 : static_cast<size_t>(*pos_device) + t + 1,
        max_rows);
    float running_max = -INFINITY, running_sum = 0.0f;
    for (size_t tile = 0; tile < visible; tile += kSimpleThreads) {
        const size_t row = tile + threadIdx.x;
        float score = -INFINITY;
        if (row < visible) {
            const bf16* r = cache + row * width;
            float acc = 0.0f;
            for (int c = 0; c < rank; ++c) acc += q_latent[c] * __bfloat162float(r[c]);
            for (int d = 0; d < rope; ++d) acc += q_pe[d] * __bfloat162float(r[rank + d]);
            score = acc * scale;
        }
        const float new_max = fmaxf(running_max, block_max(score, scratch));
        const float prob = row < visible ? expf(score - new_max) : 0.0f;
        p[threadIdx.x] = prob;
        const float correction = expf(running_max - new_max);
        running_sum = running_sum * correction + block_total(prob, scratch);
        running_max = new_max;
        const int rows_here = static_cast<int>(min(static_cast<size_t>(kSimpleThreads), visible - tile));
        for (int c = threadIdx.x; c < rank; c += kSimpleThreads) {
            float acc = o_latent[c] * correction;
            for (int i = 0; i < rows_here; ++i)
                acc += p[i] * __bfloat162float(cache[(tile + i) * width + c]);
            o_latent[c] = acc;
        }
        __syncthreads();
    }

    const float inv = 1.0f / running_sum;
    for (int d = threadIdx.x; d < v_dim; d += kSimpleThreads) {
        float acc = 0.0f;
        for (int c = 0; c < rank; ++c) acc += __bfloat162float(w_uv[d * rank + c]) * o_latent[c];
        out[(t * heads + h) * static_cast<size_t>(v_dim) + d] = acc * inv;
    }
}

template <int RANK, int BM, int STAGES, int SMT>
void launch_flash(const Plan& plan, const FlashParams& params, cudaStream_t stream) {
    auto kernel = mla_flash_kernel<RANK, BM, kBlockRows, STAGES, SMT, 2, kScoreSlices>;
    // The largest size any shape needs, so that the attribute is set once per device.
    allow_dynamic_shared(reinterpret_cast<const void*>(kernel), kMaxSharedBytes,
                         "cudaFuncSetAttribute(mla_flash_kernel)");
    launch_chained("mla_flash_kernel", kernel,
                   dim3(unsigned(plan.tiles), unsigned(plan.splits), unsigned(plan.sessions)),
                   BM * 8, plan.smem, stream, params);
}

template <int RANK>
void launch_flash_rank(const Plan& plan, const FlashParams& params, cudaStream_t stream) {
    if (plan.bm == kDecodeBM)
        launch_flash<RANK, kDecodeBM, kDecodeStages, 1>(plan, params, stream);
    else
        launch_flash<RANK, kPrefillBM, kPrefillStages, 2>(plan, params, stream);
}

bool aligned(const void* p, size_t bytes) {
    return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// The one path of mla_attention and mla_attention_batch: `sessions` sessions of T tokens
// each (a batch: T = 1, caches and pos_device per session; else one session over cache).
void attention(const float* q, size_t T, size_t sessions, const int32_t* pos_device,
               size_t max_rows, const bf16* cache, const bf16* const* caches, const bf16* kv_b,
               size_t heads, size_t nope, size_t rope, size_t v_dim, size_t rank, void* workspace,
               float* out, cudaStream_t stream) {
    const std::string what = caches ? "mla_attention_batch: " : "mla_attention: ";
    if (!q || !pos_device || !(cache || caches) || !kv_b || !out)
        fail(Status::InvalidArgument, what + "null pointer argument");
    if (heads == 0 || rank == 0 || v_dim == 0)
        fail(Status::InvalidArgument, what + "heads, rank and v_dim must be positive");
    if (max_rows < T)
        fail(Status::InvalidArgument,
             what + "max_rows " + std::to_string(max_rows) + " < T " + std::to_string(T));
    const float scale = 1.0f / std::sqrt(static_cast<float>(nope + rope));
    const Plan plan = make_plan(T, heads, rank, rope, max_rows, sessions);
    // A batch's cache pointers are in device memory: their alignment is the caller's promise
    // (cudaMalloc'd buffers), as ops.h says.
    const bool fast = plan.fast && (caches || aligned(cache, 16)) && aligned(kv_b, 16) &&
                      absorb_shared_bytes(nope) <= 48 * 1024;
    const size_t tokens = T * sessions;  // query tokens in all
    if (!fast) {
        const size_t shared = (2 * rank + rope + kSimpleThreads) * sizeof(float);
        if (shared > 48 * 1024)
            fail(Status::Unsupported,
                 what + "rank " + std::to_string(rank) + " too large for the simple path");
        launch_chained("mla_simple_kernel", mla_simple_kernel,
                       static_cast<unsigned>(tokens * heads), kSimpleThreads, shared, stream, q,
                       pos_device, max_rows, cache, caches, kv_b, int(heads), int(nope),
                       int(rope), int(v_dim), int(rank), scale, out);
        return;
    }
    if (!workspace)
        fail(Status::InvalidArgument,
             what + "workspace of " + std::to_string(plan.workspace()) + " bytes is null");

    char* base = static_cast<char*>(workspace);
    bf16* q_lat = reinterpret_cast<bf16*>(base);
    float2* partial_ml = reinterpret_cast<float2*>(base + plan.q_bytes);
    float* partial_o = reinterpret_cast<float*>(base + plan.q_bytes + plan.ml_bytes);
    const unsigned token_blocks = unsigned((tokens + kTokensPerBlock - 1) / kTokensPerBlock);

    // The query absorption and (below) the W_uv projection run over all sessions' tokens at
    // once: session z's rows follow session z-1's in q_lat as in q.
    const unsigned col_blocks = unsigned((rank + kAbsorbCols - 1) / kAbsorbCols);
    launch_chained("mla_absorb_query", mla_absorb_query,
                   dim3(unsigned(heads), col_blocks, token_blocks), kAbsorbWarps * 32,
                   absorb_shared_bytes(nope), stream, q, int(tokens), int(heads), int(nope),
                   int(rope), int(v_dim), int(rank), scale * kLog2e, kv_b, q_lat);

    FlashParams params{q_lat,
                       cache,
                       caches,
                       pos_device,
                       partial_o,
                       partial_ml,
                       int(plan.m),
                       int(heads),
                       int(rank + rope),
                       int(plan.width_padded),
                       int(max_rows),
                       int(plan.splits),
                       int(plan.m_padded)};
    switch (rank) {
        case 64: launch_flash_rank<64>(plan, params, stream); break;
        case 128: launch_flash_rank<128>(plan, params, stream); break;
        case 256: launch_flash_rank<256>(plan, params, stream); break;
        default: launch_flash_rank<512>(plan, params, stream); break;
    }

    const size_t combine_shared =
        2 * round_up(plan.splits, 4) * sizeof(float) + kCombineWarps * 32 * sizeof(float4);
    launch_chained("mla_combine", mla_combine,
                   dim3(unsigned(plan.m), unsigned((rank + kCombineCols - 1) / kCombineCols),
                        unsigned(sessions)),
                   kCombineWarps * 32, combine_shared, stream, partial_ml, partial_o,
                   int(plan.splits), int(plan.m_padded), int(rank));

    // The merged latents sit in split 0's slot of each session, rows [0, m) of stride rank:
    // one session's tokens are heads * rank apart, a batch's sessions one partial area.
    const size_t token_stride = caches ? plan.splits * plan.m_padded * rank : heads * rank;
    launch_chained("mla_project", mla_project,
                   dim3(unsigned(heads), unsigned((v_dim + kProjectRows - 1) / kProjectRows),
                        token_blocks),
                   kProjectWarps * 32, kTokensPerBlock * rank * sizeof(float), stream, partial_o,
                   token_stride, int(tokens), int(heads), int(nope), int(v_dim), int(rank), kv_b,
                   out);
}

}  // namespace

size_t mla_workspace_bytes(size_t T, size_t heads, size_t rank, size_t rope, size_t /*v_dim*/,
                           size_t max_rows) {
    // Callers size the workspace once for their largest piece and call with any T' <= T.
    size_t bytes = 0;
    for (size_t t = 1; t <= T; ++t) {
        const Plan plan = make_plan(t, heads, rank, rope, max_rows);
        if (plan.fast) bytes = std::max(bytes, plan.workspace());
    }
    return bytes;
}

size_t mla_batch_workspace_bytes(size_t sessions, size_t heads, size_t rank, size_t rope,
                                 size_t /*v_dim*/, size_t max_rows) {
    size_t bytes = 0;
    for (size_t s = 1; s <= sessions; ++s) {
        const Plan plan = make_plan(1, heads, rank, rope, max_rows, s);
        if (plan.fast) bytes = std::max(bytes, plan.workspace());
    }
    return bytes;
}

void mla_attention(const float* q, size_t T, const int32_t* pos_device, size_t max_rows,
                   const bf16* cache, const bf16* kv_b, size_t heads, size_t nope, size_t rope,
                   size_t v_dim, size_t rank, void* workspace, float* out, cudaStream_t stream) {
    if (T == 0) return;
    attention(q, T, 1, pos_device, max_rows, cache, nullptr, kv_b, heads, nope, rope, v_dim, rank,
              workspace, out, stream);
}

void mla_attention_batch(const float* q, size_t sessions, const int32_t* positions_device,
                         const bf16* const* caches_device, size_t max_rows, const bf16* kv_b,
                         size_t heads, size_t nope, size_t rope, size_t v_dim, size_t rank,
                         void* workspace, float* out, cudaStream_t stream) {
    if (sessions == 0) return;
    if (!caches_device) fail(Status::InvalidArgument, "mla_attention_batch: null cache array");
    if (sessions > 65535)
        fail(Status::InvalidArgument,
             "mla_attention_batch: " + std::to_string(sessions) + " sessions exceed 65535");
    attention(q, 1, sessions, positions_device, max_rows, nullptr, caches_device, kv_b, heads, nope,
              rope, v_dim, rank, workspace, out, stream);
}

}  // namespace kl::cuda
