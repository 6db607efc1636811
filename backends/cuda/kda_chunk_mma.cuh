// Warp-level tensor-core helpers of the KDA chunked prefill (kda_chunk.cu): fp16 mma.sync
// m16n8k16 with fp32 accumulation, ldmatrix fragment loads and cp.async copies. Fragment
// layouts follow the PTX ISA ("Matrix Fragments for mma.m16n8k16"): with g = lane / 4 and
// t = lane % 4, an accumulator tile holds rows g and g + 8, columns 2t and 2t + 1.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "tensor_core.cuh"

namespace kl::cuda::kda_chunk_detail {

// Two floats -> one register of two fp16 (the lower column in the low half).
__device__ __forceinline__ uint32_t pack_half(float lo, float hi) {
    const __half2 pair = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&pair);
}

// Power-of-two scales of the two accumulator rows a thread holds (g and g + 8), taken so
// that the row's largest magnitude lands in [2^14, 2^15): fp16 then keeps its full 11-bit
// precision and never overflows whatever the size of the state or of v, and scaling by a
// power of two and back is exact in fp32. Rows live in one quad of lanes: two shuffles.
struct RowScale {
    float scale[2], inverse[2];
};

__device__ __forceinline__ float pow2f(int e) {
    return __uint_as_float(static_cast<uint32_t>(e + 127) << 23);
}

__device__ __forceinline__ RowScale row_scale(float max0, float max1) {
    RowScale r;
    float m[2] = {max0, max1};
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        m[i] = fmaxf(m[i], __shfl_xor_sync(0xffffffffu, m[i], 1));
        m[i] = fmaxf(m[i], __shfl_xor_sync(0xffffffffu, m[i], 2));
        // floor(log2 m); zero, denormal or non-finite maxima clamp to a harmless scale.
        int e = static_cast<int>((__float_as_uint(m[i]) >> 23) & 0xff) - 127;
        e = max(-60, min(e, 100));
        r.scale[i] = pow2f(14 - e);
        r.inverse[i] = pow2f(e - 14);
    }
    return r;
}

// Two adjacent 16×8 accumulator tiles (columns 0-7 and 8-15), scaled per row and rounded to
// fp16, are the A operand of a 16×16 tile: a product feeds the next one without smem.
__device__ __forceinline__ void accum_to_a(const float (&lo)[4], const float (&hi)[4],
                                           const RowScale& rs, uint32_t (&a)[4]) {
    a[0] = pack_half(lo[0] * rs.scale[0], lo[1] * rs.scale[0]);
    a[1] = pack_half(lo[2] * rs.scale[1], lo[3] * rs.scale[1]);
    a[2] = pack_half(hi[0] * rs.scale[0], hi[1] * rs.scale[0]);
    a[3] = pack_half(hi[2] * rs.scale[1], hi[3] * rs.scale[1]);
}

// Largest magnitude of row g (elements 0, 1) and row g + 8 (elements 2, 3) over n tiles.
template <int N>
__device__ __forceinline__ void row_max(const float (&t)[N][4], float& max0, float& max1) {
    max0 = 0.0f;
    max1 = 0.0f;
#pragma unroll
    for (int i = 0; i < N; ++i) {
        max0 = fmaxf(max0, fmaxf(fabsf(t[i][0]), fabsf(t[i][1])));
        max1 = fmaxf(max1, fmaxf(fabsf(t[i][2]), fabsf(t[i][3])));
    }
}

// 2^x (ex2.approx, ~2 ulp; results under 2^-126 flush to zero, negligible here).
__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

}  // namespace kl::cuda::kda_chunk_detail
