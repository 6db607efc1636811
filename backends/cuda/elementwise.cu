// Embedding gather, RMSNorm (with the residual add fused), the MLA cache write, casts and
// SiLU·mul.
#include <algorithm>
#include <string>

#include "chained_launch.cuh"
#include "cuda_util.h"
#include "ops.h"
#include "reduce.cuh"

namespace kl::cuda {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(size_t n) {
    return static_cast<unsigned>((n + kThreads - 1) / kThreads);
}

__global__ void embedding_kernel(const bf16* embed, int32_t vocab_begin, int32_t vocab_rows,
                                 const int32_t* history, const int32_t* pos_device, size_t hidden,
                                 float* x) {
    wait_for_previous();
    release_next();
    const size_t t = blockIdx.x;
    const int32_t row_index = history[static_cast<size_t>(*pos_device) + t] - vocab_begin;
    float* out = x + t * hidden;
    if (row_index < 0 || row_index >= vocab_rows) {  // another shard's token: its row there
        for (size_t c = threadIdx.x; c < hidden; c += blockDim.x) out[c] = 0.0f;
        return;
    }
    const bf16* row = embed + static_cast<size_t>(row_index) * hidden;
    for (size_t c = threadIdx.x; c < hidden; c += blockDim.x) out[c] = __bfloat162float(row[c]);
}

// RMSNorm of one row per block, optionally with the residual add fused (x += branch first):
// y = RMSNorm(x) * w in bf16. Thread i holds elements i, i + blockDim, ... (at most
// kNormPerThread) in registers: every load of x, branch and w is issued before the first
// use and x is read once (the loop form waited on one load after another, as the stores to
// x may alias branch). Same elements per thread and order as that loop, so the same sums.
constexpr int kNormPerThread = 16;

// 1024: norm_threads() launches up to 1024 threads for the widest rows, and without the bound
// the compiler's register count left such a launch without resources ("too many resources
// requested", seen on the H200 at 16384 wide).
template <bool kAdd>
__global__ void __launch_bounds__(1024) rms_norm_kernel(float* x, size_t x_stride, const float* branch, const bf16* w,
                                int dim, float eps, bf16* y, size_t y_stride) {
    float* row = x + blockIdx.x * x_stride;
    const float* add = kAdd ? branch + blockIdx.x * static_cast<size_t>(dim) : nullptr;
    float v[kNormPerThread], wv[kNormPerThread];
#pragma unroll
    for (int j = 0; j < kNormPerThread; ++j) {
        const int c = threadIdx.x + j * blockDim.x;
        if (c < dim) wv[j] = __bfloat162float(w[c]);
    }
    wait_for_previous();  // x and branch come from the kernels before (chained_launch.cuh)
    release_next();
#pragma unroll
    for (int j = 0; j < kNormPerThread; ++j) {
        const int c = threadIdx.x + j * blockDim.x;
        if (c < dim) {
            v[j] = row[c];
            if (kAdd) v[j] += add[c];
        }
    }
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < kNormPerThread; ++j) {
        const int c = threadIdx.x + j * blockDim.x;
        if (c < dim) {
            if (kAdd) row[c] = v[j];
            sum += v[j] * v[j];
        }
    }
    const float inv = rsqrtf(block_sum(sum) / static_cast<float>(dim) + eps);
    bf16* out = y + blockIdx.x * y_stride;
#pragma unroll
    for (int j = 0; j < kNormPerThread; ++j) {
        const int c = threadIdx.x + j * blockDim.x;
        if (c < dim) out[c] = __float2bfloat16(v[j] * inv * wv[j]);
    }
}

// kThreads per row up to kThreads * kNormPerThread elements (the model's 2304), more
// threads for longer rows.
unsigned norm_threads(size_t dim) {
    const size_t per_warp = 32 * kNormPerThread;
    const size_t threads = std::max<size_t>(kThreads, (dim + per_warp - 1) / per_warp * 32);
    if (threads > 1024)
        fail(Status::Unsupported, "RMSNorm over " + std::to_string(dim) +
                                      " elements exceeds the CUDA kernel's 16384");
    return static_cast<unsigned>(threads);
}

// Latent part normalised, k_pe copied: one cache row per block, at row *pos_device + block
// of cache (one session), or at row pos_device[block] of caches[block] (a batch).
__global__ void latent_to_cache_kernel(const float* kv, size_t rank, size_t width, const bf16* w,
                                       float eps, const int32_t* pos_device, bf16* cache,
                                       bf16* const* caches) {
    wait_for_previous();
    release_next();
    const float* row = kv + blockIdx.x * width;
    float sum = 0.0f;
    for (size_t c = threadIdx.x; c < rank; c += blockDim.x) sum += row[c] * row[c];
    const float inv = rsqrtf(block_sum(sum) / static_cast<float>(rank) + eps);
    bf16* out = caches ? caches[blockIdx.x] + static_cast<size_t>(pos_device[blockIdx.x]) * width
                       : cache + (static_cast<size_t>(*pos_device) + blockIdx.x) * width;
    for (size_t c = threadIdx.x; c < width; c += blockDim.x)
        out[c] = __float2bfloat16(c < rank ? row[c] * inv * __bfloat162float(w[c]) : row[c]);
}

__global__ void cast_kernel(const float* x, size_t n, bf16* y) {
    wait_for_previous();
    release_next();
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

void embedding_gather(const bf16* embed, int64_t vocab_begin, int64_t vocab_rows,
                      const int32_t* history, const int32_t* pos_device, size_t n, size_t hidden,
                      float* x, cudaStream_t stream) {
    if (n == 0) return;
    launch_chained("embedding_gather", embedding_kernel, static_cast<unsigned>(n), kThreads, 0,
                   stream, embed, static_cast<int32_t>(vocab_begin),
                   static_cast<int32_t>(vocab_rows), history, pos_device, hidden, x);
}

void rms_norm_to_bf16(const float* x, size_t x_stride, const bf16* w, size_t rows, size_t dim,
                      float eps, bf16* y, size_t y_stride, cudaStream_t stream) {
    if (rows == 0) return;
    // The kernel writes x only when it adds a branch.
    launch_chained("rms_norm", rms_norm_kernel<false>, static_cast<unsigned>(rows),
                   norm_threads(dim), 0, stream, const_cast<float*>(x), x_stride, nullptr, w,
                   static_cast<int>(dim), eps, y, y_stride);
}

void add_rms_norm_to_bf16(float* x, const float* branch, const bf16* w, size_t rows, size_t dim,
                          float eps, bf16* y, cudaStream_t stream) {
    if (rows == 0) return;
    launch_chained("add_rms_norm", rms_norm_kernel<true>, static_cast<unsigned>(rows),
                   norm_threads(dim), 0, stream, x, dim, branch, w, static_cast<int>(dim), eps, y,
                   dim);
}

void latent_to_cache(const float* kv, size_t rows, size_t rank, size_t width, const bf16* w,
                     float eps, const int32_t* pos_device, bf16* cache, cudaStream_t stream) {
    if (rows == 0) return;
    launch_chained("latent_to_cache", latent_to_cache_kernel, static_cast<unsigned>(rows),
                   kThreads, 0, stream, kv, rank, width, w, eps, pos_device, cache, nullptr);
}

void latent_to_cache_batch(const float* kv, size_t rows, size_t rank, size_t width, const bf16* w,
                           float eps, const int32_t* positions, bf16* const* caches,
                           cudaStream_t stream) {
    if (rows == 0) return;
    launch_chained("latent_to_cache_batch", latent_to_cache_kernel, static_cast<unsigned>(rows),
                   kThreads, 0, stream, kv, rank, width, w, eps, positions, nullptr, caches);
}

void cast_to_bf16(const float* x, size_t n, bf16* y, cudaStream_t stream) {
    if (n == 0) return;
    launch_chained("cast_to_bf16", cast_kernel, blocks_for(n), kThreads, 0, stream, x, n, y);
}

void silu_mul_to_bf16(const float* gate, const float* up, size_t n, bf16* out,
                      cudaStream_t stream) {
    if (n == 0) return;
    silu_mul_kernel<<<blocks_for(n), kThreads, 0, stream>>>(gate, up, n, out);
    check_launch("silu_mul");
}

}  // namespace kl::cuda
