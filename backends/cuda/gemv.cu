// Few-token GEMMs (decode) as bandwidth-bound GEMVs: one warp per weight row, 16-byte loads
// of the row (up to 9 in flight per lane, gemv_row.cuh) and of each token's activations,
// fp32 accumulation. cuBLASLt's n = 1 choices cost several times the bytes' worth on the
// H100 (docs/perf/cuda-bench-v1.md).
#include "cuda_util.h"
#include "gemv_row.cuh"
#include "ops.h"

namespace kl::cuda {
namespace {

constexpr int kWarps = 8;

template <int N>
__global__ void gemv_kernel(const bf16* x, int in, const bf16* w, int out, float* y) {
    const int row = blockIdx.x * kWarps + (threadIdx.x >> 5);
    if (row >= out) return;
    float acc[N];
    warp_row_dot_tokens<N>(x, in, w + static_cast<size_t>(row) * in, acc);
    if ((threadIdx.x & 31) == 0) {
#pragma unroll
        for (int t = 0; t < N; ++t) y[static_cast<size_t>(t) * out + row] = acc[t];
    }
}

}  // namespace

bool gemv_supported(size_t n, size_t in) { return n >= 1 && n <= 4 && in % 8 == 0; }

void gemv_bf16(const bf16* x, size_t n, size_t in, const bf16* w, size_t out, float* y,
               cudaStream_t stream) {
    const unsigned blocks = static_cast<unsigned>((out + kWarps - 1) / kWarps);
    const int i = static_cast<int>(in), o = static_cast<int>(out);
    switch (n) {
        case 1: launch_chained("gemv_bf16", gemv_kernel<1>, blocks, kWarps * 32, 0, stream, x, i, w, o, y); break;
        case 2: launch_chained("gemv_bf16", gemv_kernel<2>, blocks, kWarps * 32, 0, stream, x, i, w, o, y); break;
        case 3: launch_chained("gemv_bf16", gemv_kernel<3>, blocks, kWarps * 32, 0, stream, x, i, w, o, y); break;
        case 4: launch_chained("gemv_bf16", gemv_kernel<4>, blocks, kWarps * 32, 0, stream, x, i, w, o, y); break;
        default: fail(Status::Internal, "gemv_bf16 takes 1..4 rows");
    }
}

}  // namespace kl::cuda
