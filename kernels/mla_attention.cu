// MLA attention, first version: the absorbed form (MQA over the latent cache) for every
// query, one block per (query, head), online softmax over tiles of cache rows. The split-K
// decode kernel and the tensor-core prefill replace it in the performance work.
#include <cmath>

#include "cuda_util.h"
#include "ops.h"

namespace kl::cuda {
namespace {

constexpr int kThreads = 128;  // also the tile of cache rows scored at once

__device__ float block_max(float value, float* scratch) {
    for (int offset = 16; offset > 0; offset >>= 1)
        value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
    if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = value;
    __syncthreads();
    float m = scratch[0];
    for (int w = 1; w < kThreads / 32; ++w) m = fmaxf(m, scratch[w]);
    __syncthreads();
    return m;
}

__device__ float block_total(float value, float* scratch) {
    for (int offset = 16; offset > 0; offset >>= 1)
        value += __shfl_xor_sync(0xffffffffu, value, offset);
    if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = value;
    __syncthreads();
    float s = 0.0f;
    for (int w = 0; w < kThreads / 32; ++w) s += scratch[w];
    __syncthreads();
    return s;
}

// Shared memory: q_latent[rank], q_pe[rope], o_latent[rank], p[kThreads].
__global__ void mla_absorbed_kernel(const float* q, const int32_t* pos_device, const bf16* cache, const bf16* kv_b,
                                    int heads, int nope, int rope, int v_dim, int rank, float scale,
                                    float* out) {
    extern __shared__ float shared[];
    float* q_latent = shared;
    float* q_pe = q_latent + rank;
    float* o_latent = q_pe + rope;
    float* p = o_latent + rank;
    __shared__ float scratch[kThreads / 32];

    const size_t t = blockIdx.x / heads;
    const int h = blockIdx.x % heads;
    const float* qh = q + (t * heads + h) * static_cast<size_t>(nope + rope);
    const bf16* w_uk = kv_b + static_cast<size_t>(h) * (nope + v_dim) * rank;
    const bf16* w_uv = w_uk + static_cast<size_t>(nope) * rank;
    const int width = rank + rope;

    // The key up-projection folded into the query: q_latent = W_uk^T q_nope.
    for (int c = threadIdx.x; c < rank; c += kThreads) {
        float acc = 0.0f;
        for (int d = 0; d < nope; ++d) acc += qh[d] * __bfloat162float(w_uk[d * rank + c]);
        q_latent[c] = acc;
        o_latent[c] = 0.0f;
    }
    for (int d = threadIdx.x; d < rope; d += kThreads) q_pe[d] = qh[nope + d];
    __syncthreads();

    const size_t visible = static_cast<size_t>(*pos_device) + t + 1;
    float running_max = -INFINITY, running_sum = 0.0f;
    for (size_t tile = 0; tile < visible; tile += kThreads) {
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
        const int rows_here = static_cast<int>(min(static_cast<size_t>(kThreads), visible - tile));
        for (int c = threadIdx.x; c < rank; c += kThreads) {
            float acc = o_latent[c] * correction;
            for (int i = 0; i < rows_here; ++i)
                acc += p[i] * __bfloat162float(cache[(tile + i) * width + c]);
            o_latent[c] = acc;
        }
        __syncthreads();
    }

    // The value up-projection after attention.
    const float inv = 1.0f / running_sum;
    for (int d = threadIdx.x; d < v_dim; d += kThreads) {
        float acc = 0.0f;
        for (int c = 0; c < rank; ++c) acc += __bfloat162float(w_uv[d * rank + c]) * o_latent[c];
        out[(t * heads + h) * static_cast<size_t>(v_dim) + d] = acc * inv;
    }
}

}  // namespace

size_t mla_workspace_bytes(size_t, size_t, size_t, size_t, size_t, size_t) {
    return 0;
}

void mla_attention(const float* q, size_t T, const int32_t* pos_device, size_t /*max_rows*/,
                   const bf16* cache, const bf16* kv_b, size_t heads, size_t nope, size_t rope,
                   size_t v_dim, size_t rank, void* /*workspace*/, float* out,
                   cudaStream_t stream) {
    if (T == 0) return;
    const size_t shared = (2 * rank + rope + kThreads) * sizeof(float);
    const float scale = 1.0f / std::sqrt(static_cast<float>(nope + rope));
    mla_absorbed_kernel<<<static_cast<unsigned>(T * heads), kThreads, shared, stream>>>(
        q, pos_device, cache, kv_b, static_cast<int>(heads), static_cast<int>(nope),
        static_cast<int>(rope), static_cast<int>(v_dim), static_cast<int>(rank), scale, out);
    check_launch("mla_attention");
}

}  // namespace kl::cuda
