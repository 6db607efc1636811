// One token's routing (device code only), shared by the router kernel of moe.cu and the
// fused decode router of moe_route_decode.cu so both choose identically: sigmoid scores,
// bias, groups kept by the sum of their two best biased scores, then top_k rounds of an
// argmax (ties to the lower index, as the CPU), renormalise, scale. Ungrouped routing
// (route_fits_warp) is one warp's work, the scores in its lanes' registers and each round a
// few shuffles (route_token_warp); grouped routing takes a block (route_token).
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

// Whether route_token_warp can route: one group, top_k within a warp's lanes.
__host__ __device__ inline bool route_fits_warp(int experts, int groups, int top_k) {
    return groups == 1 && experts <= kMaxExperts && top_k <= 32;
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

// A biased score and its expert as one key whose unsigned order is route_better's: the
// float's bits made monotonic in the high word, the complement of the index in the low one
// (ties to the lower index). 0 ranks below every real key (-inf's included): a taken or
// missing expert.
__device__ __forceinline__ unsigned long long route_key(float biased, int e) {
    const unsigned bits = __float_as_uint(biased + 0.0f);  // -0 as +0: equal, as compared
    const unsigned order = bits & 0x80000000u ? ~bits : bits | 0x80000000u;
    return static_cast<unsigned long long>(order) << 32 | ~static_cast<unsigned>(e);
}

__device__ __forceinline__ unsigned warp_max_u32(unsigned v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    return __reduce_max_sync(0xffffffffu, v);
#else
    for (int offset = 16; offset > 0; offset >>= 1)
        v = max(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
#endif
}

// route_token for one group (route_fits_warp), by the calling warp alone: lane l holds the
// keys of experts l, l + 32, ... (PER_LANE of them); each round is a branch-free maximum of
// the lane's keys and two warp reductions (high word, then the low word among the lanes that
// hold it). The same choices and weights, bit for bit, as route_token (the total summed in
// the order chosen). Measured in the fused decode router on the H200 (top-8 of 256, with
// %globaltimer): route_token 10.7 us (9.5 of them its eight rounds: branchy compares, block
// barriers, thread 0's serial merge), this 2.4 us, the loads' latency 1 of them.
template <int PER_LANE>
__device__ inline void route_token_warp_n(const float* row, const float* bias, int experts,
                                          int top_k, bool renormalize, float scaling,
                                          int32_t* chosen, float* weights) {
    const int lane = threadIdx.x & 31;
    // Every load first, then the arithmetic: one memory latency, not one per expert.
    float logit[PER_LANE], add[PER_LANE];
#pragma unroll
    for (int j = 0; j < PER_LANE; ++j) {
        const int e = lane + 32 * j;
        logit[j] = e < experts ? __ldcg(row + e) : 0.0f;
        add[j] = e < experts ? __ldg(bias + e) : 0.0f;
    }
    float score[PER_LANE];
    unsigned long long key[PER_LANE];
#pragma unroll
    for (int j = 0; j < PER_LANE; ++j) {
        const int e = lane + 32 * j;
        const float s = 1.0f / (1.0f + expf(-logit[j]));
        const float b = s + add[j];
        score[j] = s;
        // NaN ranks as route_token ranks it; a missing expert is never chosen.
        key[j] = e < experts ? route_key(isnan(b) ? -INFINITY : b, e) : 0ull;
    }

    float total = 0.0f, mine = 0.0f;  // lane i keeps round i's score and expert
    int my_choice = -1;
    for (int i = 0; i < top_k; ++i) {
        unsigned long long best = key[0];
#pragma unroll
        for (int j = 1; j < PER_LANE; ++j) best = max(best, key[j]);
        const unsigned high = warp_max_u32(static_cast<unsigned>(best >> 32));
        const unsigned low = warp_max_u32(
            static_cast<unsigned>(best >> 32) == high ? static_cast<unsigned>(best) : 0u);
        const int e = high == 0 ? -1 : static_cast<int>(~low);
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < PER_LANE; ++j) {
            const bool hit = lane + 32 * j == e;
            s = hit ? score[j] : s;
            key[j] = hit ? 0ull : key[j];
        }
        s = __shfl_sync(0xffffffffu, s, e & 31);  // the winner's lane holds its score
        total += s;
        if (lane == i) mine = s, my_choice = e;
    }
    const float norm = renormalize ? scaling / total : scaling;
    if (lane < top_k) {
        chosen[lane] = my_choice;
        weights[lane] = mine * norm;
    }
}

__device__ inline void route_token_warp(const float* row, const float* bias, int experts, int top_k,
                                        bool renormalize, float scaling, int32_t* chosen,
                                        float* weights) {
    if (experts <= 256)
        route_token_warp_n<8>(row, bias, experts, top_k, renormalize, scaling, chosen, weights);
    else
        route_token_warp_n<32>(row, bias, experts, top_k, renormalize, scaling, chosen, weights);
}

}  // namespace kl::cuda
