// Loading a quantized weight row (ops.h "weight formats") 16 values at a time, device code
// only: the decode GEMVs' inner step (gemv.cu, moe_decode.cu). A lane loads a chunk of 16
// consecutive values (FP8: 16 bytes, INT4: two words) that lies in one 128-column scale
// block, turns them into exact fp32 values of the codes, and the caller multiplies the
// chunk's dot product by the block's scale once.
#pragma once

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "ops.h"

namespace kl::cuda {

constexpr int kChunkValues = 16;

template <WeightCode C>
struct QChunk;
template <>
struct QChunk<WeightCode::Fp8> {
    uint4 raw;
};
template <>
struct QChunk<WeightCode::Int4> {
    uint2 raw;
};

// Bytes of a row of `cols` values in code C.
template <WeightCode C>
__device__ __forceinline__ size_t qrow_bytes(int cols) {
    return C == WeightCode::Fp8 ? size_t(cols) : size_t(cols) / 2;
}

// Values [c, c + 16) of the row at `row` (c a multiple of 16), read past L1: weights are
// streamed once per step.
template <WeightCode C>
__device__ __forceinline__ QChunk<C> load_qchunk(const void* row, int c) {
    QChunk<C> q;
    if constexpr (C == WeightCode::Fp8) {
        const char* p = static_cast<const char*>(row) + c;
        asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                     : "=r"(q.raw.x), "=r"(q.raw.y), "=r"(q.raw.z), "=r"(q.raw.w)
                     : "l"(p));
    } else {
        const char* p = static_cast<const char*>(row) + c / 2;
        asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];"
                     : "=r"(q.raw.x), "=r"(q.raw.y)
                     : "l"(p));
    }
    return q;
}

// The codes' values (before the scale), exact in fp32.
__device__ __forceinline__ void fp8x4_values(uint32_t word, float* v) {
    const __half2_raw lo =
        __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(word & 0xffffu), __NV_E4M3);
    const __half2_raw hi =
        __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(word >> 16), __NV_E4M3);
    const float2 a = __half22float2(__half2(lo)), b = __half22float2(__half2(hi));
    v[0] = a.x, v[1] = a.y, v[2] = b.x, v[3] = b.y;
}
// Nibble j of `word` is q + 8: 2^23 + nibble as a float's bits, minus 2^23 + 8, is q exactly.
__device__ __forceinline__ void int4x8_values(uint32_t word, float* v) {
#pragma unroll
    for (int j = 0; j < 8; ++j)
        v[j] = __int_as_float(0x4b000000 | ((word >> (4 * j)) & 0xfu)) - 8388616.0f;
}

template <WeightCode C>
__device__ __forceinline__ void qchunk_values(const QChunk<C>& q, float (&v)[kChunkValues]) {
    if constexpr (C == WeightCode::Fp8) {
        fp8x4_values(q.raw.x, v), fp8x4_values(q.raw.y, v + 4);
        fp8x4_values(q.raw.z, v + 8), fp8x4_values(q.raw.w, v + 12);
    } else {
        int4x8_values(q.raw.x, v), int4x8_values(q.raw.y, v + 8);
    }
}

// The scale row of weight row `row` (FP8: its 128-row block's; INT4: its own), for `cols`
// columns; the scale of column c is then [c / 128].
template <WeightCode C>
__device__ __forceinline__ const float* qscale_row(const float* scales, int row, int cols) {
    const int per_row = (cols + kQuantBlock - 1) / kQuantBlock;
    return scales + size_t(C == WeightCode::Fp8 ? row / kQuantBlock : row) * per_row;
}

// 16 bf16 activations from x (16-byte aligned) as fp32.
__device__ __forceinline__ void load_x16_bf16(const bf16* x, float (&v)[kChunkValues]) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const uint4 packed = __ldg(reinterpret_cast<const uint4*>(x) + h);
        const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&packed);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float2 f = __bfloat1622float2(pairs[i]);
            v[8 * h + 2 * i] = f.x, v[8 * h + 2 * i + 1] = f.y;
        }
    }
}
// 16 fp32 activations (16-byte aligned).
__device__ __forceinline__ void load_x16_f32(const float* x, float (&v)[kChunkValues]) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float4 f = __ldg(reinterpret_cast<const float4*>(x) + i);
        v[4 * i] = f.x, v[4 * i + 1] = f.y, v[4 * i + 2] = f.z, v[4 * i + 3] = f.w;
    }
}

__device__ __forceinline__ float dot16(const float (&w)[kChunkValues],
                                       const float (&x)[kChunkValues]) {
    float acc = 0.0f;
#pragma unroll
    for (int j = 0; j < kChunkValues; ++j) acc += w[j] * x[j];
    return acc;
}

}  // namespace kl::cuda
