// The decode experts' device-side building blocks (moe_decode.cu): a token's slots and their
// experts, the quantized kernels' load batches and chunk dot product.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "ops.h"
#include "quant_row.cuh"

namespace kl::cuda {

// The experts of a token's slots: top_k chosen ones, then the shared one if any.
struct Experts {
    const int32_t* chosen;  // [n, top_k]
    const float* weights;   // [n, top_k]
    ExpertWeights w;
    DecodeSharedExpert shared;  // shared.w1.data null: no shared slot
    int top_k;
    int per_token;  // top_k, + 1 with the shared slot

    __device__ bool is_shared(int slot) const { return slot % per_token == top_k; }
    __device__ int chosen_index(int slot) const {
        return slot / per_token * top_k + slot % per_token;
    }
    __device__ int expert(int slot) const { return chosen[chosen_index(slot)]; }
    __device__ bool present(int slot) const { return is_shared(slot) || expert(slot) >= 0; }
    __device__ QMatrix gate(int slot) const {
        return is_shared(slot) ? shared.w1 : matrix(w.w1, w.s1, expert(slot));
    }
    __device__ QMatrix up(int slot) const {
        return is_shared(slot) ? shared.w3 : matrix(w.w3, w.s3, expert(slot));
    }
    __device__ QMatrix down(int slot) const {
        return is_shared(slot) ? shared.w2 : matrix(w.w2, w.s2, expert(slot));
    }
    __device__ float weight(int slot) const {
        return is_shared(slot) ? 1.0f : weights[chosen_index(slot)];
    }
    __device__ QMatrix matrix(const void* const* data, const float* const* scales, int e) const {
        return QMatrix{w.code, data[e], scales ? scales[e] : nullptr};
    }
};

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// The quantized kernels' loads: 16-value chunks, lane l's at 16 l, 16 l + 512, ...
constexpr int kQGateLoads = 5;  // 2304 = 4.5 * 512
constexpr int kQDownLoads = 2;  // 1024 = 2 * 512
constexpr int kQDownSlots = 3;  // slots whose down rows a lane loads at once
constexpr int kQStride = 32 * kChunkValues;

template <WeightCode C>
__device__ __forceinline__ float qchunk_dot(const QChunk<C>& q, const float (&xv)[kChunkValues],
                                            const float* scale_row, int c) {
    float v[kChunkValues];
    qchunk_values<C>(q, v);
    return dot16(v, xv) * __ldg(scale_row + c / kQuantBlock);
}

}  // namespace kl::cuda
