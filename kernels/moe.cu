// MoE routing on the device (sigmoid, bias-corrected grouped top-k, renormalise, scale) and
// the row gather / weighted scatter around the per-expert GEMMs.
#include "cuda_util.h"
#include "ops.h"

namespace kl::cuda {
namespace {

constexpr int kMaxExperts = 1024;
constexpr int kMaxGroups = 64;

// One thread per token; the serial selection is cheap next to the expert GEMMs.
__global__ void route_kernel(const float* logits, const float* bias, size_t n, int experts,
                             int top_k, bool renormalize, float scaling, int groups,
                             int topk_groups, int32_t* chosen, float* weights) {
    const size_t t = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (t >= n) return;
    const float* row = logits + t * experts;
    auto score = [&](int e) { return 1.0f / (1.0f + expf(-row[e])); };
    auto biased = [&](int e) { return score(e) + bias[e]; };

    // Groups kept: the topk_groups best by the sum of their two best biased scores.
    bool keep[kMaxGroups];
    const int per_group = experts / groups;
    for (int g = 0; g < groups; ++g) keep[g] = groups == 1;
    if (groups > 1) {
        float group_score[kMaxGroups];
        for (int g = 0; g < groups; ++g) {
            float best = -INFINITY, second = -INFINITY;
            for (int e = g * per_group; e < (g + 1) * per_group; ++e) {
                const float b = biased(e);
                if (b > best) {
                    second = best;
                    best = b;
                } else if (b > second) {
                    second = b;
                }
            }
            group_score[g] = per_group > 1 ? best + second : best;
        }
        for (int i = 0; i < topk_groups; ++i) {
            int pick = -1;
            for (int g = 0; g < groups; ++g)
                if (!keep[g] && (pick < 0 || group_score[g] > group_score[pick])) pick = g;
            keep[pick] = true;
        }
    }

    // Top-k experts among kept groups, by biased score; ties to the lower index.
    unsigned taken[kMaxExperts / 32] = {};
    float total = 0.0f;
    for (int i = 0; i < top_k; ++i) {
        int pick = -1;
        float pick_value = -INFINITY;
        for (int e = 0; e < experts; ++e) {
            if (!keep[e / per_group] || (taken[e >> 5] >> (e & 31) & 1u)) continue;
            const float b = biased(e);
            if (pick < 0 || b > pick_value) {
                pick = e;
                pick_value = b;
            }
        }
        taken[pick >> 5] |= 1u << (pick & 31);
        chosen[t * top_k + i] = pick;
        weights[t * top_k + i] = score(pick);
        total += score(pick);
    }
    const float norm = renormalize ? scaling / total : scaling;
    for (int i = 0; i < top_k; ++i) weights[t * top_k + i] *= norm;
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
    route_kernel<<<static_cast<unsigned>((n + 63) / 64), 64, 0, stream>>>(
        logits, bias, n, static_cast<int>(experts), static_cast<int>(top_k), renormalize, scaling,
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
