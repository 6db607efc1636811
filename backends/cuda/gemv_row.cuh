// One weight row times N token vectors by one warp (device code only): the few-token GEMV's
// inner loop, shared by gemv.cu and the fused decode router (moe_route_decode.cu) so that
// both produce bit-identical logits.
// Lane l sums the 8-element pieces at l*8, l*8 + 256, ... in that order. It issues up to
// kRowLoads 16-byte weight loads before the first multiply (a 2304-long row in one batch):
// memory-level parallelism without changing the summation order.
#pragma once

#include "chained_launch.cuh"
#include "ops.h"

namespace kl::cuda {

constexpr int kRowLoads = 9;

__device__ __forceinline__ float dot8_bf16(const uint4& a, const uint4& b) {
    const __nv_bfloat162* pa = reinterpret_cast<const __nv_bfloat162*>(&a);
    const __nv_bfloat162* pb = reinterpret_cast<const __nv_bfloat162*>(&b);
    float acc = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float2 fa = __bfloat1622float2(pa[i]);
        const float2 fb = __bfloat1622float2(pb[i]);
        acc += fa.x * fb.x + fa.y * fb.y;
    }
    return acc;
}

// acc[t] = row . x[t] over `in` (a multiple of 8; x rows `in` apart), summed over the warp:
// every lane gets the totals. The first batch of weight loads is issued before
// wait_for_previous() (chained_launch.cuh): x is the previous kernel's output, the row is
// not; the next chained kernel is released right after.
template <int N>
__device__ __forceinline__ void warp_row_dot_tokens(const bf16* x, int in, const bf16* row,
                                                    float (&acc)[N]) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int t = 0; t < N; ++t) acc[t] = 0.0f;
    for (int base = lane * 8; base < in; base += kRowLoads * 256) {
        uint4 w[kRowLoads];
#pragma unroll
        for (int i = 0; i < kRowLoads; ++i)
            if (base + i * 256 < in) w[i] = *reinterpret_cast<const uint4*>(row + base + i * 256);
        if (base == lane * 8) wait_for_previous(), release_next();
#pragma unroll
        for (int i = 0; i < kRowLoads; ++i) {
            const int c = base + i * 256;
            if (c < in) {
#pragma unroll
                for (int t = 0; t < N; ++t)
                    acc[t] += dot8_bf16(
                        w[i], *reinterpret_cast<const uint4*>(x + static_cast<size_t>(t) * in + c));
            }
        }
    }
    wait_for_previous();  // lanes past a short row's end: before the caller's stores
#pragma unroll
    for (int t = 0; t < N; ++t)
        for (int offset = 16; offset > 0; offset >>= 1)
            acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], offset);
}

}  // namespace kl::cuda
