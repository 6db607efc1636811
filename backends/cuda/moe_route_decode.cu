// The decode router (up to 4 tokens) as one launch: the router GEMV over the experts' rows
// spread over E / 8 blocks (a warp per row, gemv_row.cuh: the same logits, bit for bit, as
// gemv_bf16), then the last block to finish routes every token (moe_route.cuh: the same
// choices as moe_route; one warp per token when route_fits_warp). Blocks count themselves
// on a device counter that the last one resets, so the launch replays in a graph. Replaces a
// GEMV launch and a route launch whose latencies, not their 1.2 MB, made the router cost.
#include "cuda_util.h"
#include "gemv_row.cuh"
#include "moe_route.cuh"
#include "ops.h"

namespace kl::cuda {
namespace {

constexpr int kRowsPerBlock = kRouteThreads / 32;

template <int N>
__global__ void __launch_bounds__(kRouteThreads)
    route_decode_kernel(const bf16* x, int hidden, const bf16* router, const float* bias,
                        int experts, int top_k, bool renormalize, float scaling, int groups,
                        int topk_groups, float* logits, unsigned* blocks_done, int32_t* chosen,
                        float* weights) {
    extern __shared__ float shared[];
    __shared__ bool last;
    const int row = blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5);
    if (row < experts) {
        float acc[N];
        warp_row_dot_tokens<N>(x, hidden, router + static_cast<size_t>(row) * hidden, acc);
        if ((threadIdx.x & 31) == 0) {
#pragma unroll
            for (int t = 0; t < N; ++t) logits[static_cast<size_t>(t) * experts + row] = acc[t];
        }
    }
    wait_for_previous();  // warps without a row: before the counter (chained_launch.cuh)
    release_next();
    // Publish this block's logits before counting it (the classic last-block reduction).
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(blocks_done, 1u) == gridDim.x - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();  // the other blocks' logits are visible from here on
    if (threadIdx.x == 0) *blocks_done = 0;  // every block has counted: ready for the next call
    if (route_fits_warp(experts, groups, top_k)) {  // warp t routes token t
        const int t = threadIdx.x >> 5;
        if (t < N)
            route_token_warp(logits + static_cast<size_t>(t) * experts, bias, experts, top_k,
                             renormalize, scaling, chosen + t * top_k, weights + t * top_k);
        return;
    }
    for (int t = 0; t < N; ++t) {
        route_token(logits + static_cast<size_t>(t) * experts, bias, experts, top_k, renormalize,
                    scaling, groups, topk_groups, shared, chosen + t * top_k, weights + t * top_k);
        __syncthreads();  // shared memory is reused by the next token
    }
}

}  // namespace

bool moe_route_decode_supported(size_t n, size_t hidden) {
    return gemv_supported(n, hidden);
}

void moe_route_decode(const bf16* x, size_t n, size_t hidden, const bf16* router,
                      const float* bias, size_t experts, size_t top_k, bool renormalize,
                      float scaling, size_t groups, size_t topk_groups, float* logits,
                      unsigned* blocks_done, int32_t* chosen, float* weights,
                      cudaStream_t stream) {
    if (!moe_route_decode_supported(n, hidden))
        fail(Status::Internal, "moe_route_decode takes 1..4 tokens of a multiple of 8");
    check_route_limits(experts, groups);
    const unsigned blocks = static_cast<unsigned>((experts + kRowsPerBlock - 1) / kRowsPerBlock);
    const size_t smem = route_shared_bytes(experts);
    const int h = static_cast<int>(hidden), E = static_cast<int>(experts),
              k = static_cast<int>(top_k), g = static_cast<int>(groups),
              kg = static_cast<int>(topk_groups);
#define KL_ROUTE_DECODE(N)                                                                   \
    launch_chained("moe_route_decode", route_decode_kernel<N>, blocks, kRouteThreads, smem,  \
                   stream, x, h, router, bias, E, k, renormalize, scaling, g, kg, logits,    \
                   blocks_done, chosen, weights)
    switch (n) {
        case 1: KL_ROUTE_DECODE(1); break;
        case 2: KL_ROUTE_DECODE(2); break;
        case 3: KL_ROUTE_DECODE(3); break;
        default: KL_ROUTE_DECODE(4); break;
    }
#undef KL_ROUTE_DECODE
}

}  // namespace kl::cuda
