// MoE routing on the device (sigmoid, bias-corrected grouped top-k, renormalise, scale) and
// the row gather / weighted scatter around the per-expert GEMMs.
#include "cuda_util.h"
#include "moe_route.cuh"
#include "ops.h"

namespace kl::cuda {
namespace {

// One block per token (its first warp alone when route_fits_warp).
__global__ void route_kernel(const float* logits, const float* bias, int experts, int top_k,
                             bool renormalize, float scaling, int groups, int topk_groups,
                             int32_t* chosen, float* weights) {
    extern __shared__ float shared[];
    const size_t t = blockIdx.x;
    if (route_fits_warp(experts, groups, top_k)) {
        if (threadIdx.x < 32)
            route_token_warp(logits + t * experts, bias, experts, top_k, renormalize, scaling,
                             chosen + t * top_k, weights + t * top_k);
        return;
    }
    route_token(logits + t * experts, bias, experts, top_k, renormalize, scaling, groups,
                topk_groups, shared, chosen + t * top_k, weights + t * top_k);
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

__global__ void keep_owned_kernel(int32_t* chosen, size_t slots, int32_t begin, int32_t end) {
    const size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
    if (i < slots && (chosen[i] < begin || chosen[i] >= end)) chosen[i] = -1;
}

}  // namespace

void keep_owned_experts(int32_t* chosen, size_t slots, int64_t begin, int64_t end,
                        cudaStream_t stream) {
    if (slots == 0) return;
    constexpr unsigned kThreads = 256;
    keep_owned_kernel<<<static_cast<unsigned>((slots + kThreads - 1) / kThreads), kThreads, 0,
                        stream>>>(chosen, slots, static_cast<int32_t>(begin),
                                  static_cast<int32_t>(end));
    check_launch("keep_owned_experts");
}

void moe_route(const float* logits, const float* bias, size_t n, size_t experts, size_t top_k,
               bool renormalize, float scaling, size_t groups, size_t topk_groups, int32_t* chosen,
               float* weights, cudaStream_t stream) {
    check_route_limits(experts, groups);
    if (n == 0) return;
    route_kernel<<<static_cast<unsigned>(n), kRouteThreads, route_shared_bytes(experts), stream>>>(
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
