// The per-session writes of a batched decode pass (CudaBackend::forward_batch): each row's
// token into its session's history, each row's logits into its session's buffer. The
// destinations are device arrays of pointers, so a pass needs one launch, not n copies.
#include <algorithm>

#include "cuda_util.h"
#include "ops.h"

namespace kl::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void scatter_tokens_kernel(const int32_t* tokens, const int32_t* positions,
                                      int32_t* const* histories, size_t n) {
    const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (i < n) histories[i][positions[i]] = tokens[i];
}

// Block (row, slice of columns): float4 copies when the row length allows, else scalars.
__global__ void scatter_rows_kernel(const float* src, size_t dim, float* const* dst) {
    const size_t row = blockIdx.y;
    const float* from = src + row * dim;
    float* to = dst[row];
    const size_t step = static_cast<size_t>(gridDim.x) * blockDim.x;
    const size_t first = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (dim % 4 == 0) {
        for (size_t i = first; i < dim / 4; i += step)
            reinterpret_cast<float4*>(to)[i] = reinterpret_cast<const float4*>(from)[i];
    } else {
        for (size_t i = first; i < dim; i += step) to[i] = from[i];
    }
}

}  // namespace

void scatter_tokens(const int32_t* tokens, const int32_t* positions, int32_t* const* histories,
                    size_t n, cudaStream_t stream) {
    if (n == 0) return;
    scatter_tokens_kernel<<<static_cast<unsigned>((n + kThreads - 1) / kThreads), kThreads, 0,
                            stream>>>(tokens, positions, histories, n);
    check_launch("scatter_tokens");
}

void scatter_rows(const float* src, size_t rows, size_t dim, float* const* dst,
                  cudaStream_t stream) {
    if (rows == 0 || dim == 0) return;
    if (rows > 65535) fail(Status::InvalidArgument, "scatter_rows: more than 65535 rows");
    // src rows and the destinations (cudaMalloc'd) are 16-byte aligned when dim % 4 == 0.
    const size_t per_row = (dim % 4 == 0 ? dim / 4 : dim);
    const unsigned slices =
        static_cast<unsigned>(std::min<size_t>(64, (per_row + kThreads - 1) / kThreads));
    scatter_rows_kernel<<<dim3(slices, static_cast<unsigned>(rows)), kThreads, 0, stream>>>(
        src, dim, dst);
    check_launch("scatter_rows");
}

}  // namespace kl::cuda
