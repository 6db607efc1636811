// One token's routing by one block (device code only), shared by the router kernel of
// moe.cu and the fused decode router of moe_route_decode.cu so both choose identically:
// sigmoid scores, bias, groups kept by the sum of their two best biased scores, then top_k
// rounds of a block-wide argmax (ties to the lower index, as the CPU), renormalise, scale.
#pragma once

#include <string>

#include "cuda_util.h"
#include "ops.h"

namespace kl::cuda {

constexpr int kMaxExperts = 1024;
constexpr int kMaxGroups = 64;
constexpr int kRouteThreads = 256;  // the block size route_token needs

inline void check_route_limits(size_t experts, size_t groups) {
    if (experts > kMaxExperts || groups > kMaxGroups || groups == 0)
        fail(Status::Unsupported, "MoE with " + std::to_string(experts) + " experts in " +
                                      std::to_string(groups) +
                                      " groups exceeds the CUDA router's limits (1024, 64)");
}

// Dynamic shared memory route_token needs: scores, biased scores, allowed flags.
inline size_t route_shared_bytes(size_t experts) {
    return 2 * experts * sizeof(float) + experts;
}

// (value, index) with the higher value first and, on ties, the lower index.
__device__ __forceinline__ bool route_better(float v, int i, float best_v, int best_i) {
    return v > best_v || (v == best_v && i >= 0 && (best_i < 0 || i < best_i));
}

// Routes the token whose logits are `row` (read through L2: another block may have written
// them in this kernel) into chosen[0, top_k) and weights[0, top_k). `shared` is
// route_shared_bytes(experts) of dynamic shared memory. Called by all kRouteThreads threads.
__device__ inline void route_token(const float* row, const float* bias, int experts, int top_k,
                                   bool renormalize, float scaling, int groups, int topk_groups,
                                   float* shared, int32_t* chosen, float* weights) {
    float* score = shared;
    float* biased = score + experts;
    char* allowed = reinterpret_cast<char*>(biased + experts);  // kept group, not yet taken
    __shared__ float group_score[kMaxGroups];
    __shared__ bool keep[kMaxGroups];
    __shared__ float warp_value[kRouteThreads / 32];
    __shared__ int warp_index[kRouteThreads / 32];
    for (int e = threadIdx.x; e < experts; e += blockDim.x) {
        const float s = 1.0f / (1.0f + expf(-__ldcg(row + e)));
        const float b = s + bias[e];
        score[e] = s;
        // A NaN never wins an argmax round: every slot would be left at -1, an index out of
        // the expert tables. As -inf it ranks last and is still chosen when nothing else is.
        biased[e] = isnan(b) ? -INFINITY : b;
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
        for (int g = 0; g < groups; ++g) keep[g] = groups == 1;
        for (int i = 0; i < topk_groups && groups > 1; ++i) {
            int pick = -1;
            for (int g = 0; g < groups; ++g)
                if (!keep[g] && (pick < 0 || group_score[g] > group_score[pick])) pick = g;
            keep[pick] = true;
        }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < experts; e += blockDim.x) allowed[e] = keep[e / per_group];
    __syncthreads();

    float total = 0.0f;
    for (int i = 0; i < top_k; ++i) {
        float best_v = -INFINITY;
        int best_i = -1;
        for (int e = threadIdx.x; e < experts; e += blockDim.x)
            if (allowed[e] && route_better(biased[e], e, best_v, best_i))
                best_v = biased[e], best_i = e;
        for (int offset = 16; offset > 0; offset >>= 1) {
            const float v = __shfl_xor_sync(0xffffffffu, best_v, offset);
            const int j = __shfl_xor_sync(0xffffffffu, best_i, offset);
            if (j >= 0 && route_better(v, j, best_v, best_i)) best_v = v, best_i = j;
        }
        if ((threadIdx.x & 31) == 0) {
            warp_value[threadIdx.x >> 5] = best_v;
            warp_index[threadIdx.x >> 5] = best_i;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w)
                if (warp_index[w] >= 0 &&
                    route_better(warp_value[w], warp_index[w], best_v, best_i))
                    best_v = warp_value[w], best_i = warp_index[w];
            chosen[i] = best_i;
            weights[i] = score[best_i];
            total += score[best_i];
            allowed[best_i] = 0;
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        const float norm = renormalize ? scaling / total : scaling;
        for (int i = 0; i < top_k; ++i) weights[i] *= norm;
    }
}

}  // namespace kl::cuda
