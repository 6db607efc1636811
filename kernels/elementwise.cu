// Embedding gather, RMSNorm, residual add, casts and SiLU·mul.
#include "cuda_util.h"
#include "ops.h"
#include "reduce.cuh"

namespace kl::cuda {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(size_t n) {
    return static_cast<unsigned>((n + kThreads - 1) / kThreads);
}

__global__ void embedding_kernel(const bf16* embed, const int32_t* tokens, size_t hidden,
                                 float* x) {
    const size_t t = blockIdx.x;
    const bf16* row = embed + static_cast<size_t>(tokens[t]) * hidden;
    for (size_t c = threadIdx.x; c < hidden; c += blockDim.x)
        x[t * hidden + c] = __bfloat162float(row[c]);
}

__global__ void rms_norm_kernel(const float* x, size_t x_stride, const bf16* w, size_t dim,
                                float eps, bf16* y, size_t y_stride) {
    const float* row = x + blockIdx.x * x_stride;
    float sum = 0.0f;
    for (size_t c = threadIdx.x; c < dim; c += blockDim.x) sum += row[c] * row[c];
    const float inv = rsqrtf(block_sum(sum) / static_cast<float>(dim) + eps);
    bf16* out = y + blockIdx.x * y_stride;
    for (size_t c = threadIdx.x; c < dim; c += blockDim.x)
        out[c] = __float2bfloat16(row[c] * inv * __bfloat162float(w[c]));
}

// Latent part normalised, k_pe copied: one cache row per block.
__global__ void latent_to_cache_kernel(const float* kv, size_t rank, size_t width, const bf16* w,
                                       float eps, bf16* cache) {
    const float* row = kv + blockIdx.x * width;
    float sum = 0.0f;
    for (size_t c = threadIdx.x; c < rank; c += blockDim.x) sum += row[c] * row[c];
    const float inv = rsqrtf(block_sum(sum) / static_cast<float>(rank) + eps);
    bf16* out = cache + blockIdx.x * width;
    for (size_t c = threadIdx.x; c < width; c += blockDim.x)
        out[c] = __float2bfloat16(c < rank ? row[c] * inv * __bfloat162float(w[c]) : row[c]);
}

__global__ void add_kernel(float* x, const float* y, size_t n) {
    const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (i < n) x[i] += y[i];
}

__global__ void cast_kernel(const float* x, size_t n, bf16* y) {
    const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (i < n) y[i] = __float2bfloat16(x[i]);
}

__global__ void silu_mul_kernel(const float* gate, const float* up, size_t n, bf16* out) {
    const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (i < n) {
        const float g = gate[i];
        out[i] = __float2bfloat16(g / (1.0f + __expf(-g)) * up[i]);
    }
}

}  // namespace

void embedding_gather(const bf16* embed, const int32_t* tokens, size_t n, size_t hidden, float* x,
                      cudaStream_t stream) {
    if (n == 0) return;
    embedding_kernel<<<static_cast<unsigned>(n), kThreads, 0, stream>>>(embed, tokens, hidden, x);
    check_launch("embedding_gather");
}

void rms_norm_to_bf16(const float* x, size_t x_stride, const bf16* w, size_t rows, size_t dim,
                      float eps, bf16* y, size_t y_stride, cudaStream_t stream) {
    if (rows == 0) return;
    rms_norm_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, x_stride, w, dim, eps,
                                                                          y, y_stride);
    check_launch("rms_norm");
}

void rms_norm_rows_to_cache(const float* kv, size_t rows, size_t rank, size_t width, const bf16* w,
                            float eps, bf16* cache_rows, cudaStream_t stream) {
    if (rows == 0) return;
    latent_to_cache_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(kv, rank, width, w,
                                                                                 eps, cache_rows);
    check_launch("latent_to_cache");
}

void add_inplace(float* x, const float* y, size_t n, cudaStream_t stream) {
    if (n == 0) return;
    add_kernel<<<blocks_for(n), kThreads, 0, stream>>>(x, y, n);
    check_launch("add_inplace");
}

void cast_to_bf16(const float* x, size_t n, bf16* y, cudaStream_t stream) {
    if (n == 0) return;
    cast_kernel<<<blocks_for(n), kThreads, 0, stream>>>(x, n, y);
    check_launch("cast_to_bf16");
}

void silu_mul_to_bf16(const float* gate, const float* up, size_t n, bf16* out,
                      cudaStream_t stream) {
    if (n == 0) return;
    silu_mul_kernel<<<blocks_for(n), kThreads, 0, stream>>>(gate, up, n, out);
    check_launch("silu_mul");
}

}  // namespace kl::cuda
