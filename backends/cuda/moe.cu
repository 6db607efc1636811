// MoE routing on the device (sigmoid, bias-corrected grouped top-k, renormalise, scale) and
// the row gather / weighted scatter around the per-expert GEMMs.
#include "cuda_util.h"
#include "ops.h"

namespace kl::cuda {
namespace {

constexpr int kMaxExperts = 1024;
constexpr int kMaxGroups = 64;

constexpr int kRouteThreads = 256;

// (value, index) with the higher value first and, on ties, the lower index.
__device__ bool better(float v, int i, float best_v, int best_i) {
    return v > best_v || (v == best_v && i >= 0 && (best_i < 0 || i < best_i));
}

// One block per token. Scores and biased scores in shared memory; groups kept by the sum
// of their two best biased scores; then top_k rounds of a block-wide argmax.
__global__ void route_kernel(const float* logits, const float* bias, int experts, int top_k,
                             bool renormalize, float scaling, int groups, int topk_groups,
                             int32_t* chosen, float* weights) {
    extern __shared__ float shared[];
    float* score = shared;
    float* biased = score + experts;
    char* allowed = reinterpret_cast<char*>(biased + experts);  // kept group, not yet taken
    __shared__ float group_score[kMaxGroups];
    __shared__ float warp_value[kRouteThreads / 32];
    __shared__ int warp_index[kRouteThreads / 32];
    const int t = blockIdx.x;
    const float* row = logits + static_cast<size_t>(t) * experts;
    for (int e = threadIdx.x; e < experts; e += blockDim.x) {
        const float s = 1.0f / (1.0f + expf(-row[e]));
        score[e] = s;
        biased[e] = s + bias[e];
    }
    __syncthreads();
    const int per_group = experts / groups;
    if (static_cast<int>(threadIdx.x) < groups && groups > 1) {
        const int g = threadIdx.x;
        float best = -INFINITY, second = -INFINITY;
        for (int e = g * per_group; e < (g + 1) * per_group; ++e) {
            const float b = biased[e];
            if (b > best) {
                second = best;
                best = b;
            } else if (b > second) {
                second = b;
            }
        }
        group_score[g] = per_group > 1 ? best + second : best;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        bool keep[kMaxGroups];
        for (int g = 0; g < groups; ++g) keep[g] = groups == 1;
        for (int i = 0; i < topk_groups && groups > 1; ++i) {
            int pick = -1;
            for (int g = 0; g < groups; ++g)
                if (!keep[g] && (pick < 0 || group_score[g] > group_score[pick])) pick = g;
            keep[pick] = true;
        }
        for (int e = 0; e < experts; ++e) allowed[e] = keep[e / per_group];
    }
    __syncthreads();

    float total = 0.0f;
    for (int i = 0; i < top_k; ++i) {
        float best_v = -INFINITY;
        int best_i = -1;
        for (int e = threadIdx.x; e < experts; e += blockDim.x)
            if (allowed[e] && better(biased[e], e, best_v, best_i)) best_v = biased[e], best_i = e;
        for (int offset = 16; offset > 0; offset >>= 1) {
            const float v = __shfl_xor_sync(0xffffffffu, best_v, offset);
            const int j = __shfl_xor_sync(0xffffffffu, best_i, offset);
            if (j >= 0 && better(v, j, best_v, best_i)) best_v = v, best_i = j;
        }
        if ((threadIdx.x & 31) == 0) {
            warp_value[threadIdx.x >> 5] = best_v;
            warp_index[threadIdx.x >> 5] = best_i;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w)
                if (warp_index[w] >= 0 && better(warp_value[w], warp_index[w], best_v, best_i))
                    best_v = warp_value[w], best_i = warp_index[w];
            chosen[t * top_k + i] = best_i;
            weights[t * top_k + i] = score[best_i];
            total += score[best_i];
            allowed[best_i] = 0;
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        const float norm = renormalize ? scaling / total : scaling;
        for (int i = 0; i < top_k; ++i) weights[t * top_k + i] *= norm;
    }
}

__global__ void gather_kernel(const bf16* src, const int32_t* rows, size_t dim, bf16* dst) {
    const bf16* from = src + static_cast<size_t>(rows[blockIdx.x]) * dim;
    bf16* to = dst + blockIdx.x * dim;
    for (size_t c = threadIdx.x; c < dim; c += blockDim.x) to[c] = from[c];
}

__global__ void scatter_add_kernel(const float* y, const int32_t* rows, const float* weights,
                                   size_t dim, float* out) {
    const float w = weights[blockIdx.x];
    const float* from = y + blockIdx.x * dim;
    float* to = out + static_cast<size_t>(rows[blockIdx.x]) * dim;
    for (size_t c = threadIdx.x; c < dim; c += blockDim.x) to[c] += w * from[c];
}

}  // namespace

void moe_route(const float* logits, const float* bias, size_t n, size_t experts, size_t top_k,
               bool renormalize, float scaling, size_t groups, size_t topk_groups, int32_t* chosen,
               float* weights, cudaStream_t stream) {
    if (experts > kMaxExperts || groups > kMaxGroups || groups == 0)
        fail(Status::Unsupported, "MoE with " + std::to_string(experts) + " experts in " +
                                      std::to_string(groups) +
                                      " groups exceeds the CUDA router's limits (1024, 64)");
    if (n == 0) return;
    const size_t shared = 2 * experts * sizeof(float) + experts;
    route_kernel<<<static_cast<unsigned>(n), kRouteThreads, shared, stream>>>(
        logits, bias, static_cast<int>(experts), static_cast<int>(top_k), renormalize, scaling,
        static_cast<int>(groups), static_cast<int>(topk_groups), chosen, weights);
    check_launch("moe_route");
}

void gather_rows_bf16(const bf16* src, const int32_t* rows, size_t n, size_t dim, bf16* dst,
                      cudaStream_t stream) {
    if (n == 0) return;
    gather_kernel<<<static_cast<unsigned>(n), 256, 0, stream>>>(src, rows, dim, dst);
    check_launch("gather_rows");
}

void scatter_add_weighted(const float* y, const int32_t* rows, const float* weights, size_t n,
                          size_t dim, float* out, cudaStream_t stream) {
    if (n == 0) return;
    scatter_add_kernel<<<static_cast<unsigned>(n), 256, 0, stream>>>(y, rows, weights, dim, out);
    check_launch("scatter_add");
}

}  // namespace kl::cuda
