// Block-wide reductions shared by the kernels (device code only).
#pragma once

namespace kl::cuda {

// Sum of one float per thread over the block (blockDim.x a multiple of 32, <= 1024); every
// thread gets the total.
__device__ inline float block_sum(float value) {
    __shared__ float partial[32];
    for (int offset = 16; offset > 0; offset >>= 1)
        value += __shfl_xor_sync(0xffffffffu, value, offset);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) partial[warp] = value;
    __syncthreads();
    const int warps = blockDim.x >> 5;
    value = lane < warps ? partial[lane] : 0.0f;
    for (int offset = 16; offset > 0; offset >>= 1)
        value += __shfl_xor_sync(0xffffffffu, value, offset);
    __syncthreads();  // partial is reused by the next call
    return value;
}

}  // namespace kl::cuda
