// Few-token GEMMs (decode) as bandwidth-bound GEMVs: one warp per weight row, 16-byte loads
// of the row and of each token's activations, fp32 accumulation. cuBLASLt's n = 1 choices
// cost several times the bytes' worth on the H100 (docs/perf/cuda-bench-v1.md).
#include "cuda_util.h"
#include "ops.h"

namespace kl::cuda {
namespace {

constexpr int kWarps = 8;

__device__ float dot8(const uint4& a, const uint4& b) {
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

template <int N>
__global__ void gemv_kernel(const bf16* x, int in, const bf16* w, int out, float* y) {
    const int row = blockIdx.x * kWarps + (threadIdx.x >> 5);
    if (row >= out) return;
    const int lane = threadIdx.x & 31;
    const bf16* wr = w + static_cast<size_t>(row) * in;
    float acc[N] = {};
    for (int c = lane * 8; c < in; c += 32 * 8) {
        const uint4 wv = *reinterpret_cast<const uint4*>(wr + c);
#pragma unroll
        for (int t = 0; t < N; ++t)
            acc[t] += dot8(wv, *reinterpret_cast<const uint4*>(x + static_cast<size_t>(t) * in + c));
    }
#pragma unroll
    for (int t = 0; t < N; ++t) {
        float v = acc[t];
        for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
        if (lane == 0) y[static_cast<size_t>(t) * out + row] = v;
    }
}

}  // namespace

bool gemv_supported(size_t n, size_t in) { return n >= 1 && n <= 4 && in % 8 == 0; }

void gemv_bf16(const bf16* x, size_t n, size_t in, const bf16* w, size_t out, float* y,
               cudaStream_t stream) {
    const unsigned blocks = static_cast<unsigned>((out + kWarps - 1) / kWarps);
    const int i = static_cast<int>(in), o = static_cast<int>(out);
    switch (n) {
        case 1: gemv_kernel<1><<<blocks, kWarps * 32, 0, stream>>>(x, i, w, o, y); break;
        case 2: gemv_kernel<2><<<blocks, kWarps * 32, 0, stream>>>(x, i, w, o, y); break;
        case 3: gemv_kernel<3><<<blocks, kWarps * 32, 0, stream>>>(x, i, w, o, y); break;
        case 4: gemv_kernel<4><<<blocks, kWarps * 32, 0, stream>>>(x, i, w, o, y); break;
        default: fail(Status::Internal, "gemv_bf16 takes 1..4 rows");
    }
    check_launch("gemv_bf16");
}

}  // namespace kl::cuda
