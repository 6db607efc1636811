// Decode-time MoE experts without a host round trip: every (token, chosen expert) slot runs
// its expert as warp-per-row GEMVs that read the expert's weights once, 16 bytes per lane
// per load. The expert index is read on the device, so the step stays graph-capturable.
// The shared expert, when it has the experts' shape, is one more slot per token (weight 1):
// the whole MoE of a decode step is three launches.
#include "cuda_util.h"
#include "ops.h"

namespace kl::cuda {
namespace {

constexpr int kWarps = 8;  // rows per block, one warp each

// Dot of a bf16 row with an fp32 vector in shared memory, over `len` (a multiple of 8 for
// the vector path; the tail is scalar). Summed over the warp.
__device__ float warp_row_dot(const bf16* row, const float* x, int len) {
    float acc = 0.0f;
    const int lane = threadIdx.x & 31;
    const int vec_len = len & ~7;
    for (int c = lane * 8; c < vec_len; c += 32 * 8) {
        const uint4 packed = *reinterpret_cast<const uint4*>(row + c);
        const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&packed);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float2 f = __bfloat1622float2(pairs[i]);
            acc += f.x * x[c + 2 * i] + f.y * x[c + 2 * i + 1];
        }
    }
    for (int c = vec_len + lane; c < len; c += 32) acc += __bfloat162float(row[c]) * x[c];
    for (int offset = 16; offset > 0; offset >>= 1)
        acc += __shfl_xor_sync(0xffffffffu, acc, offset);
    return acc;
}

// The experts of a token's slots: top_k chosen ones, then the shared one if any.
struct Experts {
    const int32_t* chosen;  // [n, top_k]
    const float* weights;   // [n, top_k]
    const bf16* const* w1;
    const bf16* const* w3;
    const bf16* const* w2;
    const bf16* shared_w1;  // null: no shared slot
    const bf16* shared_w3;
    const bf16* shared_w2;
    int top_k;
    int per_token;  // top_k, + 1 with the shared slot

    __device__ bool is_shared(int slot) const { return slot % per_token == top_k; }
    __device__ int chosen_index(int slot) const {
        return slot / per_token * top_k + slot % per_token;
    }
    __device__ const bf16* gate(int slot) const {
        return is_shared(slot) ? shared_w1 : w1[chosen[chosen_index(slot)]];
    }
    __device__ const bf16* up(int slot) const {
        return is_shared(slot) ? shared_w3 : w3[chosen[chosen_index(slot)]];
    }
    __device__ const bf16* down(int slot) const {
        return is_shared(slot) ? shared_w2 : w2[chosen[chosen_index(slot)]];
    }
    __device__ float weight(int slot) const {
        return is_shared(slot) ? 1.0f : weights[chosen_index(slot)];
    }
};

// Block (slot, row block): act[slot][row] = silu(w1[e] row . x_t) * (w3[e] row . x_t).
__global__ void gate_up_kernel(const bf16* x, int hidden, int inter, Experts experts, float* act) {
    extern __shared__ float xs[];
    const int slot = blockIdx.x;
    const int token = slot / experts.per_token;
    for (int c = threadIdx.x; c < hidden; c += blockDim.x)
        xs[c] = __bfloat162float(x[static_cast<size_t>(token) * hidden + c]);
    __syncthreads();
    const int row = blockIdx.y * kWarps + (threadIdx.x >> 5);
    if (row >= inter) return;
    const float g = warp_row_dot(experts.gate(slot) + static_cast<size_t>(row) * hidden, xs, hidden);
    const float u = warp_row_dot(experts.up(slot) + static_cast<size_t>(row) * hidden, xs, hidden);
    if ((threadIdx.x & 31) == 0)
        act[static_cast<size_t>(slot) * inter + row] = g / (1.0f + __expf(-g)) * u;
}

// Block (slot, row block): y[slot][row] = w2[e] row . act[slot].
__global__ void down_kernel(const float* act, int hidden, int inter, Experts experts, float* y) {
    extern __shared__ float as[];
    const int slot = blockIdx.x;
    for (int c = threadIdx.x; c < inter; c += blockDim.x)
        as[c] = act[static_cast<size_t>(slot) * inter + c];
    __syncthreads();
    const int row = blockIdx.y * kWarps + (threadIdx.x >> 5);
    if (row >= hidden) return;
    const float v = warp_row_dot(experts.down(slot) + static_cast<size_t>(row) * inter, as, inter);
    if ((threadIdx.x & 31) == 0) y[static_cast<size_t>(slot) * hidden + row] = v;
}

// out[t][c] (+)= sum_i weight(slot) * y[slot][c] over the token's slots, in a fixed order
// (deterministic).
__global__ void combine_kernel(const float* y, Experts experts, int hidden, bool accumulate,
                               float* out) {
    const int t = blockIdx.x;
    for (int c = threadIdx.x; c < hidden; c += blockDim.x) {
        float acc = accumulate ? out[static_cast<size_t>(t) * hidden + c] : 0.0f;
        for (int i = 0; i < experts.per_token; ++i) {
            const int slot = t * experts.per_token + i;
            acc += experts.weight(slot) * y[static_cast<size_t>(slot) * hidden + c];
        }
        out[static_cast<size_t>(t) * hidden + c] = acc;
    }
}

}  // namespace

void moe_experts_gemv(const bf16* x, size_t n, size_t hidden, size_t inter, size_t top_k,
                      const int32_t* chosen, const float* weights, const bf16* const* w1,
                      const bf16* const* w3, const bf16* const* w2, const DecodeSharedExpert& shared,
                      bool accumulate, float* act, float* y, float* out, cudaStream_t stream) {
    if (n == 0) return;
    if (hidden % 8 != 0 || inter % 8 != 0)
        fail(Status::Unsupported,
             "decode MoE GEMV needs hidden and moe_intermediate_size "
             "divisible by 8 (16-byte rows)");
    const int k = static_cast<int>(top_k);
    const Experts experts{chosen, weights, w1, w3, w2, shared.w1, shared.w3, shared.w2, k,
                          shared.w1 ? k + 1 : k};
    const unsigned slots = static_cast<unsigned>(n * experts.per_token);
    const dim3 gate_grid(slots, static_cast<unsigned>((inter + kWarps - 1) / kWarps));
    gate_up_kernel<<<gate_grid, kWarps * 32, hidden * sizeof(float), stream>>>(
        x, static_cast<int>(hidden), static_cast<int>(inter), experts, act);
    check_launch("moe gate_up");
    const dim3 down_grid(slots, static_cast<unsigned>((hidden + kWarps - 1) / kWarps));
    down_kernel<<<down_grid, kWarps * 32, inter * sizeof(float), stream>>>(
        act, static_cast<int>(hidden), static_cast<int>(inter), experts, y);
    check_launch("moe down");
    combine_kernel<<<static_cast<unsigned>(n), 256, 0, stream>>>(
        y, experts, static_cast<int>(hidden), accumulate, out);
    check_launch("moe combine");
}

}  // namespace kl::cuda
