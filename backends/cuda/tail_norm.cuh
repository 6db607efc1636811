// The residual step (x += branch, y = RMSNorm(x) * w) run by the last block of the decode
// kernel that writes branch (ops.h TailNorm), and the last-block count it rests on. Device
// code only.
#pragma once

#include "chained_launch.cuh"
#include "ops.h"
#include "reduce.cuh"

namespace kl::cuda {

// Whether this block is the grid's last to get here (the classic last-block reduction):
// every thread of the block calls it after its stores, which the last block then sees. The
// last block resets the counter, so the launch replays in a graph.
__device__ inline bool last_block_to_finish(unsigned* counter) {
    __shared__ bool last;
    __threadfence();  // publish this block's stores before counting it
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(counter, 1u) == gridDim.x - 1;
    __syncthreads();
    if (!last) return false;
    __threadfence();  // the other blocks' stores are visible from here on
    if (threadIdx.x == 0) *counter = 0;
    return true;
}

// The residual step for `rows` tokens whose branch rows are ldb apart, by the last block,
// once every block has stored its part of branch. Each thread takes the elements i,
// i + blockDim, ... in order, as rms_norm_kernel (elementwise.cu) does: with 256 threads
// (the GEMV's blocks) the same sums, bit for bit. Every thread of every block calls it.
// Only the kernels' kTail instantiations call it, so the kernels without it stay exactly as
// they were; out of line, as inlined into the FP8 down experts' kernel it took that from 150
// to 242 registers (out of line: 148, the 150 it had without).
static __device__ __noinline__ void finish_with_norm(const TailNorm& tail, const float* branch,
                                                     size_t ldb, int rows) {
    wait_for_previous();  // blocks that stored nothing: the kernels before are done
    if (!last_block_to_finish(tail.counter)) return;
    for (int t = 0; t < rows; ++t) {
        float* x = tail.x + static_cast<size_t>(t) * tail.dim;
        const float* add = branch + static_cast<size_t>(t) * ldb;
        float sum = 0.0f;
        for (int c = threadIdx.x; c < tail.dim; c += blockDim.x) {
            // From L2: branch holds other blocks' stores, x earlier kernels' (this SM's L1
            // may hold lines of x from a kernel before those).
            const float v = __ldcg(x + c) + __ldcg(add + c);
            x[c] = v;
            sum += v * v;
        }
        const float inv = rsqrtf(block_sum(sum) / static_cast<float>(tail.dim) + tail.eps);
        bf16* y = tail.y + static_cast<size_t>(t) * tail.dim;
        for (int c = threadIdx.x; c < tail.dim; c += blockDim.x)
            y[c] = __float2bfloat16(__ldcg(x + c) * inv * __bfloat162float(tail.w[c]));
    }
}

}  // namespace kl::cuda
