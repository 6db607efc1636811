// Decode-time MoE experts without a host round trip, as two launches that stream the chosen
// experts' weights once at close to memory bandwidth:
//  1. gate/up: one warp per (slot, row) computes act = silu(gate row . x) * (up row . x);
//  2. down + combine: one warp per (token, row) runs the down row of every slot of its token
//     and sums them with the slot weights in slot order (deterministic, no atomics).
// Bandwidth comes from memory-level parallelism: each lane issues all its 16-byte weight
// loads of a row (9 per 2304-long row, 4 per 1024-long row, for two matrices or two slots at
// once) before using any, so a warp keeps 4-9 KB in flight instead of 512 bytes. Weights are
// read past L1 (read once); x and act are small and re-read by every warp, so they stay cached.
// Expert ids are read on the device, so the step stays graph-capturable. The shared expert,
// when it has the experts' shape, is one more slot per token (weight 1).
#include "chained_launch.cuh"
#include "cuda_util.h"
#include "ops.h"

namespace kl::cuda {
namespace {

constexpr int kWarps = 4;            // warps per block: small blocks spread evenly over the SMs
constexpr int kChunk = 32 * 8;       // elements one warp covers per 16-byte load per lane
constexpr int kGateLoads = 9;        // loads per lane per row and batch: 2304 = 9 * 256
constexpr int kDownLoads = 4;        // 1024 = 4 * 256
constexpr int kDownSlots = 3;        // slots whose down rows a lane loads at once (9 = 3 * 3)

// A 16-byte weight load that skips L1: weights are streamed once per step.
__device__ __forceinline__ uint4 load_stream(const bf16* p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

// acc += the 8 bf16 weights of w times the 8 values of x, in the pairs' order.
__device__ __forceinline__ float dot8(float acc, const uint4& w, const float (&x)[8]) {
    const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&w);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float2 f = __bfloat1622float2(pairs[i]);
        acc += f.x * x[2 * i] + f.y * x[2 * i + 1];
    }
    return acc;
}

__device__ __forceinline__ void load_x_bf16(const bf16* p, float (&x)[8]) {
    const uint4 packed = __ldg(reinterpret_cast<const uint4*>(p));
    const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&packed);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float2 f = __bfloat1622float2(pairs[i]);
        x[2 * i] = f.x, x[2 * i + 1] = f.y;
    }
}

__device__ __forceinline__ void load_x_f32(const float* p, float (&x)[8]) {
    const float4 a = __ldg(reinterpret_cast<const float4*>(p));
    const float4 b = __ldg(reinterpret_cast<const float4*>(p) + 1);
    x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w, x[4] = b.x, x[5] = b.y, x[6] = b.z, x[7] = b.w;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
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

// Warp (slot, row): act[slot][row] = silu(w1[e] row . x_t) * (w3[e] row . x_t). Each lane
// loads kGateLoads 16-byte pieces of both rows before the first multiply.
__global__ void __launch_bounds__(kWarps * 32)
    gate_up_kernel(const bf16* x, int hidden, int inter, int slots, Experts experts, float* act) {
    const int task = blockIdx.x * kWarps + (threadIdx.x >> 5);
    if (task >= slots * inter) return;
    wait_for_previous();  // the chosen experts and x come from the kernels before
    release_next();
    const int slot = task / inter, row = task % inter, lane = threadIdx.x & 31;
    const bf16* xt = x + static_cast<size_t>(slot / experts.per_token) * hidden;
    const bf16* g = experts.gate(slot) + static_cast<size_t>(row) * hidden;
    const bf16* u = experts.up(slot) + static_cast<size_t>(row) * hidden;
    float ga = 0.0f, ua = 0.0f;
    for (int base = lane * 8; base < hidden; base += kGateLoads * kChunk) {
        uint4 gw[kGateLoads], uw[kGateLoads];
#pragma unroll
        for (int i = 0; i < kGateLoads; ++i) {
            const int c = base + i * kChunk;
            if (c < hidden) gw[i] = load_stream(g + c), uw[i] = load_stream(u + c);
        }
#pragma unroll
        for (int i = 0; i < kGateLoads; ++i) {
            const int c = base + i * kChunk;
            if (c < hidden) {
                float xv[8];
                load_x_bf16(xt + c, xv);
                ga = dot8(ga, gw[i], xv);
                ua = dot8(ua, uw[i], xv);
            }
        }
    }
    ga = warp_sum(ga);
    ua = warp_sum(ua);
    if (lane == 0) act[static_cast<size_t>(slot) * inter + row] = ga / (1.0f + __expf(-ga)) * ua;
}

// Warp (token, row): out[t][row] = (accumulate ? out[t][row] : 0) + sum over the token's
// slots, in order, of weight(slot) * (w2[e] row . act[slot]). Each lane loads the row's
// pieces of kDownSlots slots before the first multiply. Lane i looks up slot i's matrix and
// weight once, up front, so the slot loop waits on no pointer chase (slots past 32 look
// theirs up in the loop).
__global__ void __launch_bounds__(kWarps * 32)
    down_combine_kernel(const float* act, int hidden, int inter, int n, Experts experts,
                        bool accumulate, float* out) {
    const int task = blockIdx.x * kWarps + (threadIdx.x >> 5);
    if (task >= n * hidden) return;
    const int t = task / hidden, row = task % hidden, lane = threadIdx.x & 31;
    const int first_slot = t * experts.per_token;
    const bf16* lane_down = nullptr;
    float lane_weight = 0.0f;
    if (lane < experts.per_token)
        lane_down = experts.down(first_slot + lane), lane_weight = experts.weight(first_slot + lane);
    auto down_row = [&](int i) {  // slot first_slot + i's down row (warp-uniform i)
        const bf16* m = i < 32 ? reinterpret_cast<const bf16*>(__shfl_sync(
                                     0xffffffffu, reinterpret_cast<uintptr_t>(lane_down), i))
                               : experts.down(first_slot + i);
        return m + static_cast<size_t>(row) * inter;
    };
    auto slot_weight = [&](int i) {
        return i < 32 ? __shfl_sync(0xffffffffu, lane_weight, i) : experts.weight(first_slot + i);
    };
    // The chosen experts come from the router, two kernels back: complete when a chained
    // launch starts (chained_launch.cuh), so the first down rows load before the wait for
    // act, the gate/up kernel's output.
    float total = 0.0f;
    for (int first = 0; first < experts.per_token; first += kDownSlots) {
        const int count = min(kDownSlots, experts.per_token - first);
        const bf16* rows[kDownSlots];
#pragma unroll
        for (int s = 0; s < kDownSlots; ++s) rows[s] = down_row(min(first + s, experts.per_token - 1));
        float dot[kDownSlots] = {};
        for (int base = lane * 8; base < inter; base += kDownLoads * kChunk) {
            uint4 w[kDownSlots][kDownLoads];
#pragma unroll
            for (int s = 0; s < kDownSlots; ++s)
#pragma unroll
                for (int i = 0; i < kDownLoads; ++i)
                    if (s < count && base + i * kChunk < inter)
                        w[s][i] = load_stream(rows[s] + base + i * kChunk);
            if (first == 0 && base == lane * 8) {
                wait_for_previous();
                release_next();
                if (accumulate) total = out[task];
            }
#pragma unroll
            for (int s = 0; s < kDownSlots; ++s) {
                const float* a = act + static_cast<size_t>(first_slot + first + s) * inter;
#pragma unroll
                for (int i = 0; i < kDownLoads; ++i) {
                    const int c = base + i * kChunk;
                    if (s < count && c < inter) {
                        float av[8];
                        load_x_f32(a + c, av);
                        dot[s] = dot8(dot[s], w[s][i], av);
                    }
                }
            }
        }
#pragma unroll
        for (int s = 0; s < kDownSlots; ++s) {
            const float sum = warp_sum(dot[s]);
            const float weight = slot_weight(min(first + s, experts.per_token - 1));
            if (s < count) total += weight * sum;
        }
    }
    wait_for_previous();  // lanes past inter's end: before the store
    if (lane == 0) out[task] = total;
}

unsigned blocks_for_warps(size_t warps) {
    return static_cast<unsigned>((warps + kWarps - 1) / kWarps);
}

}  // namespace

void moe_experts_gemv(const bf16* x, size_t n, size_t hidden, size_t inter, size_t top_k,
                      const int32_t* chosen, const float* weights, const bf16* const* w1,
                      const bf16* const* w3, const bf16* const* w2, const DecodeSharedExpert& shared,
                      bool accumulate, float* act, float* out, cudaStream_t stream) {
    if (n == 0) return;
    if (hidden % 8 != 0 || inter % 8 != 0)
        fail(Status::Unsupported,
             "decode MoE GEMV needs hidden and moe_intermediate_size "
             "divisible by 8 (16-byte rows)");
    const int k = static_cast<int>(top_k);
    const Experts experts{chosen, weights, w1, w3, w2, shared.w1, shared.w3, shared.w2, k,
                          shared.w1 ? k + 1 : k};
    const int slots = static_cast<int>(n) * experts.per_token;
    const int h = static_cast<int>(hidden), i = static_cast<int>(inter);
    launch_chained("moe gate_up", gate_up_kernel,
                   blocks_for_warps(static_cast<size_t>(slots) * inter), kWarps * 32, 0, stream, x,
                   h, i, slots, experts, act);
    launch_chained("moe down_combine", down_combine_kernel, blocks_for_warps(n * hidden),
                   kWarps * 32, 0, stream, act, h, i, static_cast<int>(n), experts, accumulate,
                   out);
}

}  // namespace kl::cuda
