// Decode GEMVs of quantized weights on tensor cores (KL_CUDA_DECODE_MMA=1), device code
// shared by the experts' gate/up and down (moe_decode.cu) and the few-token GEMV (gemv.cu).
// The CUDA-core kernels spend ~50 instructions per 16 weight bytes (each code converted to
// fp32, one FMA per value; the experts' gate/up with 154 registers, 12 warps an SM), which
// leaves the memory system idle for part of each warp's life. Here each code pair becomes
// one f16x2 (an exact conversion) and mma.sync m16n8k16 does the multiply-adds: the weights
// are the B operand (8 rows of a matrix, one per lane quad), x the A operand (a token a row,
// the other rows zero), fp32 accumulation. x enters as f16 times a power of two that puts
// its largest |x| in [2^14, 2^15) (bf16 values are then exact in f16 down to 2^-29 of that
// largest one); the result is scaled back exactly. Lane p of a quad holds its row's 16-value
// chunk at column 64 s + 16 p of step s; as a dot product's terms may come in any order, the
// k order inside an mma is the lanes' load order, the same for x and weights.
#pragma once

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "ops.h"
#include "quant_row.cuh"
#include "tensor_core.cuh"

namespace kl::cuda {

constexpr int kMmaRows = 8;   // rows of each matrix per warp (the mma's n)
constexpr int kMmaStep = 64;  // columns per step: 4 lanes x 16
constexpr int kMmaDepth = 6;  // steps whose weights a lane has in flight
constexpr int kMaxStagedSlots = 16;  // slots of a token stage_act_f16 takes
constexpr int kMmaTokensMax = 4;  // tokens of a decode call (gemv_supported): A rows 0-3

constexpr int kStageWords = 4 * 4 * 4;  // 32-bit words of one step of one row
// The word of a staged row holding the pair of values (c, c + 1), c even: step c / 64, lane
// p = c / 16 % 4, mma j = c / 4 % 4, the first or the third word of that operand.
__device__ __forceinline__ int staged_word(int c) {
    return (c >> 6) * kStageWords + ((c >> 4) & 3) * 16 + ((c >> 2) & 3) * 4 + ((c >> 1) & 1) * 2;
}

// scale = 2^(14 - e) for a largest magnitude m in [2^e, 2^(e + 1)), so that m * scale lies in
// [2^14, 2^15) (f16's largest finite value is 65504); unscale = 1 / scale. e is clamped for
// 0, subnormal, infinite or NaN m (both powers stay finite).
__device__ __forceinline__ void pow2_scale(float m, float& scale, float& unscale) {
    const int e = min(max(((__float_as_int(m) >> 23) & 0xff) - 127, -112), 127);
    scale = __int_as_float((127 + 14 - e) << 23);
    unscale = __int_as_float((127 - 14 + e) << 23);
}

// x's n rows as f16 times 2^e_t, laid out as A fragments: for step s, lane p of a quad and
// mma j, 16 bytes {x pair (c, c + 1), 0, x pair (c + 2, c + 3), 0} with c = 64 s + 16 p + 4 j:
// one 16-byte load is the A operand of a quad whose A row holds that token (A rows 8-15 zero).
// After the n rows, one step of zeros: the operand of quads with no token. unscale[t] = 2^-e_t.
__device__ inline void stage_x_f16(const bf16* x, int n, int hidden, uint32_t* xs, float* unscale) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __shared__ float scale[kMmaTokensMax];
    for (int t = warp; t < n; t += blockDim.x >> 5) {
        float m = 0.0f;
        for (int c = lane; c < hidden; c += 32)
            m = fmaxf(m, fabsf(__bfloat162float(x[size_t(t) * hidden + c])));
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        if (lane == 0) pow2_scale(m, scale[t], unscale[t]);
    }
    __syncthreads();
    const int steps = hidden / kMmaStep, row_words = steps * kStageWords;
    for (int t = 0; t < n; ++t) {
        const __nv_bfloat162* pairs =
            reinterpret_cast<const __nv_bfloat162*>(x + size_t(t) * hidden);
        for (int q = threadIdx.x; q < hidden / 2; q += blockDim.x) {
            const int c = 2 * q;  // word ((s * 4 + p) * 4 + j) * 4 + 2 * half
            const int word = staged_word(c);
            const float2 v = __bfloat1622float2(pairs[q]);
            const __half2 h = __floats2half2_rn(v.x * scale[t], v.y * scale[t]);
            xs[t * row_words + word] = reinterpret_cast<const uint32_t&>(h);
            xs[t * row_words + word + 1] = 0u;
        }
    }
    for (int i = threadIdx.x; i < kStageWords; i += blockDim.x) xs[n * row_words + i] = 0u;
    __syncthreads();
}

// The f16x2 pairs of values (4j, 4j+1) and (4j+2, 4j+3) of a 16-value chunk, exact: FP8
// codes as their values, INT4 codes as q (nibble - 8) through 1024 + nibble.
template <WeightCode C>
__device__ __forceinline__ void chunk_pairs(const QChunk<C>& q, int j, uint32_t& b0, uint32_t& b1) {
    if constexpr (C == WeightCode::Fp8) {
        const uint32_t word = j == 0 ? q.raw.x : j == 1 ? q.raw.y : j == 2 ? q.raw.z : q.raw.w;
        const __half2_raw lo = __nv_cvt_fp8x2_to_halfraw2(
            static_cast<__nv_fp8x2_storage_t>(word & 0xffffu), __NV_E4M3);
        const __half2_raw hi =
            __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(word >> 16), __NV_E4M3);
        b0 = reinterpret_cast<const uint32_t&>(lo), b1 = reinterpret_cast<const uint32_t&>(hi);
    } else {
        const uint32_t w = (j < 2 ? q.raw.x : q.raw.y) >> (16 * (j & 1));
        const uint32_t p0 = (w & 0xfu) | ((w & 0xf0u) << 12) | 0x64006400u;
        const uint32_t p1 = ((w >> 8) & 0xfu) | ((w & 0xf000u) << 4) | 0x64006400u;
        const __half2 bias = __halves2half2(__ushort_as_half(0x6408), __ushort_as_half(0x6408));
        const __half2 v0 = __hsub2(reinterpret_cast<const __half2&>(p0), bias);
        const __half2 v1 = __hsub2(reinterpret_cast<const __half2&>(p1), bias);
        b0 = reinterpret_cast<const uint32_t&>(v0), b1 = reinterpret_cast<const uint32_t&>(v1);
    }
}


// t += A · B for one step of a lane: its 16-value chunk b (4 mmas), A operands a (one per mma).
template <WeightCode C>
__device__ __forceinline__ void mma_chunk(float (&t)[4], const uint4 (&a)[4], const QChunk<C>& b) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const uint32_t aj[4] = {a[j].x, a[j].y, a[j].z, a[j].w};
        uint32_t b0, b1;
        chunk_pairs<C>(b, j, b0, b1);
        mma_f16(t, aj, b0, b1);
    }
}

// The scale rows of a warp's rows [row0, row0 + 8): FP8's 128-row block (all 8 rows in it),
// INT4's own rows 2p and 2p + 1 (those of the lane's results).
template <WeightCode C>
__device__ __forceinline__ void mma_scale_rows(const float* scales, int row0, int p, int cols,
                                               const float* (&rows)[2]) {
#pragma unroll
    for (int i = 0; i < 2; ++i)
        rows[i] = qscale_row<C>(scales, C == WeightCode::Fp8 ? row0 : row0 + 2 * p + i, cols);
}

// A token's slots' act (fp32) as f16 hi (A row 0) and lo (A row 8) times 2^e_s, hi + lo
// equal to act to ~2^-22. Per slot, for step s, lane p of a quad and mma j: {hi (c, c + 1),
// lo (c, c + 1), hi (c + 2, c + 3), lo (c + 2, c + 3)} with c = 64 s + 16 p + 4 j; after the
// slots, one step of zeros.
__device__ inline void stage_act_f16(const float* act, int slots, int inter, uint32_t* as,
                                     float* unscale) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __shared__ float scale[kMaxStagedSlots];
    for (int i = warp; i < slots; i += blockDim.x >> 5) {
        float m = 0.0f;
        for (int c = lane; c < inter; c += 32) m = fmaxf(m, fabsf(act[size_t(i) * inter + c]));
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        if (lane == 0) pow2_scale(m, scale[i], unscale[i]);
    }
    __syncthreads();
    const int row_words = inter / kMmaStep * kStageWords;
    for (int i = 0; i < slots; ++i) {
        const float2* pairs = reinterpret_cast<const float2*>(act + size_t(i) * inter);
        for (int q = threadIdx.x; q < inter / 2; q += blockDim.x) {
            const int c = 2 * q;
            const float a = pairs[q].x * scale[i], b = pairs[q].y * scale[i];
            const __half2 hi = __floats2half2_rn(a, b);
            const float2 back = __half22float2(hi);
            const __half2 lo = __floats2half2_rn(a - back.x, b - back.y);
            const int word = i * row_words + staged_word(c);
            as[word] = reinterpret_cast<const uint32_t&>(hi);
            as[word + 1] = reinterpret_cast<const uint32_t&>(lo);
        }
    }
    for (int i = threadIdx.x; i < kStageWords; i += blockDim.x) as[slots * row_words + i] = 0u;
    __syncthreads();
}

// Bytes of stage_x_f16's shared memory for n rows of `hidden` (a multiple of kMmaStep).
inline size_t staged_x_bytes(size_t n, size_t hidden) {
    return (n + 1) * (hidden / kMmaStep) * kStageWords * sizeof(uint32_t);
}

// Whether the decode GEMVs of quantized weights take these kernels (KL_CUDA_DECODE_MMA=1),
// for the shapes they take. Host code (gemv.cu).
bool decode_mma();

}  // namespace kl::cuda
