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
// when it has the experts' shape, is one more slot per token (weight 1). A slot whose expert
// id is negative adds nothing (a shard of a split model, whose experts other shards own:
// keep_owned_experts).
#include <algorithm>
#include <string>

#include "chained_launch.cuh"
#include "cuda_util.h"
#include "moe_decode.cuh"
#include "ops.h"
#include "quant_row.cuh"

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

// The gate/up kernels' task order: the shared expert's slots first, then the chosen ones.
// The shared expert needs no routing and x is complete when the kernel starts (the norm that
// writes it ran before the router, the kernel before this one: chained_launch.cuh), so its
// warps, in the first blocks, stream their weights and compute while the router still runs,
// and wait only before writing; the chosen experts' warps wait for the router first.
struct GateTask {
    int slot, row;  // row: the first of the task's rows
    bool shared;
};
__device__ __forceinline__ GateTask gate_task(const Experts& e, int task, int tasks_per_slot,
                                              int slots) {
    const int tokens = slots / e.per_token;
    const int shared_tasks = e.per_token > e.top_k ? tokens * tasks_per_slot : 0;
    if (task < shared_tasks)
        return {task / tasks_per_slot * e.per_token + e.top_k, task % tasks_per_slot, true};
    task -= shared_tasks;
    const int routed = task / tasks_per_slot;
    return {routed / e.top_k * e.per_token + routed % e.top_k, task % tasks_per_slot, false};
}

// The warp's task among slots * groups (false: none, past the end); a routed one waits for
// the router, the kernel before, first.
__device__ __forceinline__ bool start_gate_task(const Experts& e, int groups, int slots,
                                                GateTask& at) {
    const int task = blockIdx.x * kWarps + (threadIdx.x >> 5);
    if (task >= slots * groups) return false;
    at = gate_task(e, task, groups, slots);
    if (!at.shared) {
        wait_for_previous();  // the chosen experts come from the router
        release_next();
    }
    return true;
}

// Warp (slot, row): act[slot][row] = silu(w1[e] row . x_t) * (w3[e] row . x_t). Each lane
// loads kGateLoads 16-byte pieces of both rows before the first multiply.
__global__ void __launch_bounds__(kWarps * 32)
    gate_up_kernel(const bf16* x, int hidden, int inter, int slots, Experts experts, float* act) {
    GateTask at;
    if (!start_gate_task(experts, inter, slots, at)) return;
    const int slot = at.slot, row = at.row, lane = threadIdx.x & 31;
    if (!experts.present(slot)) return;
    const bf16* xt = x + static_cast<size_t>(slot / experts.per_token) * hidden;
    const bf16* g =
        static_cast<const bf16*>(experts.gate(slot).data) + static_cast<size_t>(row) * hidden;
    const bf16* u =
        static_cast<const bf16*>(experts.up(slot).data) + static_cast<size_t>(row) * hidden;
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
    if (at.shared) {  // nothing written before the wait
        wait_for_previous();
        release_next();
    }
    if (lane == 0) act[static_cast<size_t>(slot) * inter + row] = ga / (1.0f + __expf(-ga)) * ua;
}

// w[s] = the pieces of live slot s's down row rows[s] from column base (kDownLoads of them,
// kChunk apart), all issued before any is used.
__device__ __forceinline__ void down_loads(const bf16* const (&rows)[kDownSlots],
                                           const bool (&live)[kDownSlots], int base, int inter,
                                           uint4 (&w)[kDownSlots][kDownLoads]) {
#pragma unroll
    for (int s = 0; s < kDownSlots; ++s)
#pragma unroll
        for (int i = 0; i < kDownLoads; ++i)
            if (live[s] && base + i * kChunk < inter)
                w[s][i] = load_stream(rows[s] + base + i * kChunk);
}

// dot[s] += the loaded pieces w[s] of slot (slot0 + s)'s down row . its act, from column base.
__device__ __forceinline__ void down_dots(const float* act, int inter, int slot0, int base,
                                          const bool (&live)[kDownSlots],
                                          const uint4 (&w)[kDownSlots][kDownLoads],
                                          float (&dot)[kDownSlots]) {
#pragma unroll
    for (int s = 0; s < kDownSlots; ++s) {
        const float* a = act + static_cast<size_t>(slot0 + s) * inter;
#pragma unroll
        for (int i = 0; i < kDownLoads; ++i) {
            const int c = base + i * kChunk;
            if (live[s] && c < inter) {
                float av[8];
                load_x_f32(a + c, av);
                dot[s] = dot8(dot[s], w[s][i], av);
            }
        }
    }
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
    if (lane < experts.per_token && experts.present(first_slot + lane))
        lane_down = static_cast<const bf16*>(experts.down(first_slot + lane).data),
        lane_weight = experts.weight(first_slot + lane);
    auto down_row = [&](int i) -> const bf16* {  // slot first_slot + i's (warp-uniform i)
        const bf16* m = i < 32 ? reinterpret_cast<const bf16*>(__shfl_sync(
                                     0xffffffffu, reinterpret_cast<uintptr_t>(lane_down), i))
                        : experts.present(first_slot + i)
                            ? static_cast<const bf16*>(experts.down(first_slot + i).data)
                            : nullptr;
        return m ? m + static_cast<size_t>(row) * inter : nullptr;  // null: an absent slot
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
        bool live[kDownSlots];
#pragma unroll
        for (int s = 0; s < kDownSlots; ++s) {
            rows[s] = down_row(min(first + s, experts.per_token - 1));
            live[s] = s < count && rows[s];
        }
        float dot[kDownSlots] = {};
        for (int base = lane * 8; base < inter; base += kDownLoads * kChunk) {
            uint4 w[kDownSlots][kDownLoads];
            down_loads(rows, live, base, inter, w);
            if (first == 0 && base == lane * 8) {
                wait_for_previous();
                release_next();
                if (accumulate) total = out[task];
            }
            down_dots(act, inter, first_slot + first, base, live, w, dot);
        }
#pragma unroll
        for (int s = 0; s < kDownSlots; ++s) {
            const float sum = warp_sum(dot[s]);
            const float weight = slot_weight(min(first + s, experts.per_token - 1));
            if (live[s]) total += weight * sum;
        }
    }
    wait_for_previous();  // lanes past inter's end: before the store
    if (lane == 0) out[task] = total;
}

// Block (token, row) (decode_narrow()): the token's slots split evenly over the kWarps warps,
// each loading its slots' rows at once (one round for up to 4 * kDownSlots slots) where a
// down_combine_kernel warp takes three rounds one after another; kWarps times the warps. The
// warps' sums are added in warp order.
__global__ void __launch_bounds__(kWarps * 32)
    down_combine_split_bf16_kernel(const float* act, int hidden, int inter, Experts experts,
                                   bool accumulate, float* out) {
    __shared__ float partial[kWarps];
    const int t = blockIdx.x / hidden, row = blockIdx.x % hidden;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, per = experts.per_token;
    const int first_slot = t * per, end = (warp + 1) * per / kWarps;
    float total = 0.0f;
    bool waited = false;
    for (int first = warp * per / kWarps; first < end; first += kDownSlots) {
        const int count = min(kDownSlots, end - first);
        const bf16* rows[kDownSlots];
        bool live[kDownSlots];
#pragma unroll
        for (int s = 0; s < kDownSlots; ++s) {
            const int slot = first_slot + min(first + s, end - 1);
            live[s] = s < count && experts.present(slot);
            rows[s] = live[s] ? static_cast<const bf16*>(experts.down(slot).data) +
                                    static_cast<size_t>(row) * inter
                              : nullptr;
        }
        float dot[kDownSlots] = {};
        for (int base = lane * 8; base < inter; base += kDownLoads * kChunk) {
            uint4 w[kDownSlots][kDownLoads];
            down_loads(rows, live, base, inter, w);
            if (!waited) {  // act is the gate/up kernel's output (chained_launch.cuh)
                wait_for_previous();
                release_next();
                waited = true;
            }
            down_dots(act, inter, first_slot + first, base, live, w, dot);
        }
#pragma unroll
        for (int s = 0; s < kDownSlots; ++s) {
            const float sum = warp_sum(dot[s]);
            if (live[s]) total += experts.weight(first_slot + first + s) * sum;
        }
    }
    if (!waited) wait_for_previous(), release_next();  // a warp without slots or lanes past inter
    if (lane == 0) partial[warp] = total;
    __syncthreads();
    if (threadIdx.x == 0) {
        float* dst = out + static_cast<size_t>(t) * hidden + row;
        float sum = accumulate ? *dst : 0.0f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) sum += partial[w];
        *dst = sum;
    }
}

// The quantized forms of the two kernels (quant_row.cuh): the same summation order by
// slot, R consecutive rows per warp: kQRows<C> (a quantized row holds half or a quarter of a
// bf16 row's bytes: several rows keep as many bytes in flight per warp as the bf16 kernels,
// and each chunk of x or act is converted once for all of them). Each lane takes 16-value
// chunks (16 l, 16 l + 512, ...) and scales each chunk's dot product by its block's scale;
// all of a row's chunks (2304 wide: 5 per lane) are loaded before the first multiply. With
// decode_narrow() R is half that: half the registers a warp, twice the warps.
template <WeightCode C>
constexpr int kQRows = C == WeightCode::Fp8 ? 2 : 4;
template <WeightCode C, int R>
__global__ void __launch_bounds__(kWarps * 32)
    gate_up_quantized_kernel(const bf16* x, int hidden, int inter, int slots, Experts experts,
                             float* act) {
    const int groups = inter / R;  // inter % 16 == 0
    GateTask at;
    if (!start_gate_task(experts, groups, slots, at)) return;
    const int slot = at.slot, row0 = at.row * R, lane = threadIdx.x & 31;
    if (!experts.present(slot)) return;
    const bf16* xt = x + static_cast<size_t>(slot / experts.per_token) * hidden;
    const QMatrix g = experts.gate(slot), u = experts.up(slot);
    const char* grow = static_cast<const char*>(g.data) + size_t(row0) * qrow_bytes<C>(hidden);
    const char* urow = static_cast<const char*>(u.data) + size_t(row0) * qrow_bytes<C>(hidden);
    const float* gs[R];
    const float* us[R];
#pragma unroll
    for (int r = 0; r < R; ++r)
        gs[r] = qscale_row<C>(g.scales, row0 + r, hidden), us[r] = qscale_row<C>(u.scales, row0 + r, hidden);
    float ga[R] = {}, ua[R] = {};
    for (int base = lane * kChunkValues; base < hidden; base += kQGateLoads * kQStride) {
        QChunk<C> gq[R][kQGateLoads], uq[R][kQGateLoads];
#pragma unroll
        for (int i = 0; i < kQGateLoads; ++i) {
            const int c = base + i * kQStride;
#pragma unroll
            for (int r = 0; r < R; ++r)
                if (c < hidden) {
                    gq[r][i] = load_qchunk<C>(grow + r * qrow_bytes<C>(hidden), c);
                    uq[r][i] = load_qchunk<C>(urow + r * qrow_bytes<C>(hidden), c);
                }
        }
#pragma unroll
        for (int i = 0; i < kQGateLoads; ++i) {
            const int c = base + i * kQStride;
            if (c < hidden) {
                float xv[kChunkValues];
                load_x16_bf16(xt + c, xv);
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    ga[r] += qchunk_dot<C>(gq[r][i], xv, gs[r], c);
                    ua[r] += qchunk_dot<C>(uq[r][i], xv, us[r], c);
                }
            }
        }
    }
    if (at.shared) {  // nothing written before the wait
        wait_for_previous();
        release_next();
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const float gr = warp_sum(ga[r]), ur = warp_sum(ua[r]);
        if (lane == 0)
            act[static_cast<size_t>(slot) * inter + row0 + r] = gr / (1.0f + __expf(-gr)) * ur;
    }
}

// The down rows row0 .. row0 + R - 1 of slots [begin, end) of the token whose first slot is
// first_slot, times act, each slot's dot product times its weight added to total[] in slot
// order; after the first loads the warp waits for act (once: `waited`) and, with init, starts
// total[] from init[] (the output being accumulated into).
template <WeightCode C, int R>
__device__ __forceinline__ void down_slots(const float* act, int inter, const Experts& experts,
                                           int first_slot, int begin, int end, int row0,
                                           const float* init, bool& waited, float (&total)[R]) {
    const int lane = threadIdx.x & 31;
    for (int first = begin; first < end; first += kQDownSlots) {
        const int count = min(kQDownSlots, end - first);
        QMatrix m[kQDownSlots];
        const char* rows[kQDownSlots];
        bool live[kQDownSlots];
#pragma unroll
        for (int s = 0; s < kQDownSlots; ++s) {
            const int slot = first_slot + min(first + s, end - 1);
            live[s] = s < count && experts.present(slot);
            m[s] = live[s] ? experts.down(slot) : QMatrix{};
            rows[s] =
                live[s] ? static_cast<const char*>(m[s].data) + size_t(row0) * qrow_bytes<C>(inter)
                        : nullptr;
        }
        float dot[kQDownSlots][R] = {};
        for (int base = lane * kChunkValues; base < inter; base += kQDownLoads * kQStride) {
            QChunk<C> q[kQDownSlots][R][kQDownLoads];
#pragma unroll
            for (int s = 0; s < kQDownSlots; ++s)
#pragma unroll
                for (int r = 0; r < R; ++r)
#pragma unroll
                    for (int i = 0; i < kQDownLoads; ++i)
                        if (live[s] && base + i * kQStride < inter)
                            q[s][r][i] = load_qchunk<C>(rows[s] + r * qrow_bytes<C>(inter),
                                                        base + i * kQStride);
            if (!waited) {
                wait_for_previous();
                release_next();
                if (init)
#pragma unroll
                    for (int r = 0; r < R; ++r) total[r] = init[r];
                waited = true;
            }
#pragma unroll
            for (int s = 0; s < kQDownSlots; ++s) {
                const float* a = act + static_cast<size_t>(first_slot + first + s) * inter;
#pragma unroll
                for (int i = 0; i < kQDownLoads; ++i) {
                    const int c = base + i * kQStride;
                    if (live[s] && c < inter) {
                        float av[kChunkValues];
                        load_x16_f32(a + c, av);
#pragma unroll
                        for (int r = 0; r < R; ++r)
                            dot[s][r] += qchunk_dot<C>(q[s][r][i], av,
                                                       qscale_row<C>(m[s].scales, row0 + r, inter), c);
                    }
                }
            }
        }
#pragma unroll
        for (int s = 0; s < kQDownSlots; ++s) {
            const float weight = experts.weight(first_slot + min(first + s, end - 1));
#pragma unroll
            for (int r = 0; r < R; ++r) {
                const float sum = warp_sum(dot[s][r]);
                if (live[s]) total[r] += weight * sum;
            }
        }
    }
}

// Warp (token, R rows): every slot of the token, in order.
template <WeightCode C, int R>
__global__ void __launch_bounds__(kWarps * 32)
    down_combine_quantized_kernel(const float* act, int hidden, int inter, int n, Experts experts,
                                  bool accumulate, float* out) {
    const int groups = hidden / R;  // hidden % 16 == 0
    const int task = blockIdx.x * kWarps + (threadIdx.x >> 5);
    if (task >= n * groups) return;
    const int t = task / groups, row0 = task % groups * R, lane = threadIdx.x & 31;
    float* dst = out + static_cast<size_t>(t) * hidden + row0;
    // The chosen experts come from the router, two kernels back: complete when a chained
    // launch starts (chained_launch.cuh), so the first down rows load before the wait for act.
    float total[R] = {};
    bool waited = false;
    down_slots<C, R>(act, inter, experts, t * experts.per_token, 0, experts.per_token, row0,
                     accumulate ? dst : nullptr, waited, total);
    if (!waited) wait_for_previous();  // lanes past inter's end (lane 0 always waited above)
    if (lane == 0)
#pragma unroll
        for (int r = 0; r < R; ++r) dst[r] = total[r];
}

// Block (token, R rows) (decode_narrow()): the token's slots split evenly over the kWarps
// warps, so that each warp issues its slots' loads at once (one round for up to 12 slots) and
// a launch has kWarps times the warps; the warps' sums are added in warp order.
template <WeightCode C, int R>
__global__ void __launch_bounds__(kWarps * 32)
    down_combine_split_kernel(const float* act, int hidden, int inter, Experts experts,
                              bool accumulate, float* out) {
    __shared__ float partial[kWarps][R];
    const int groups = hidden / R;
    const int t = blockIdx.x / groups, row0 = blockIdx.x % groups * R;
    const int warp = threadIdx.x >> 5, per = experts.per_token;
    float* dst = out + static_cast<size_t>(t) * hidden + row0;
    float total[R] = {};
    bool waited = false;
    down_slots<C, R>(act, inter, experts, t * per, warp * per / kWarps, (warp + 1) * per / kWarps,
                     row0, nullptr, waited, total);
    if (!waited) wait_for_previous(), release_next();  // a warp without slots or lanes past inter
    if ((threadIdx.x & 31) == 0)
#pragma unroll
        for (int r = 0; r < R; ++r) partial[warp][r] = total[r];
    __syncthreads();
    if (threadIdx.x < R) {
        float sum = accumulate ? dst[threadIdx.x] : 0.0f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) sum += partial[w][threadIdx.x];
        dst[threadIdx.x] = sum;
    }
}

unsigned blocks_for_warps(size_t warps) {
    return static_cast<unsigned>((warps + kWarps - 1) / kWarps);
}

template <WeightCode C, int G>
void launch_quantized(const bf16* x, size_t n, int h, int i, int slots, const Experts& experts,
                      bool accumulate, float* act, float* out, cudaStream_t stream) {
    constexpr int R = kQRows<C>, Narrow = kQRows<C> / 2;
    launch_chained("moe gate_up (quantized)", gate_up_quantized_kernel<C, G>,
                   blocks_for_warps(static_cast<size_t>(slots) * (i / G)), kWarps * 32, 0, stream,
                   x, h, i, slots, experts, act);
    if (decode_narrow(NarrowPart::Down, C))
        launch_chained("moe down_combine (quantized, split)", down_combine_split_kernel<C, Narrow>,
                       static_cast<unsigned>(n * (h / Narrow)), kWarps * 32, 0, stream, act, h, i,
                       experts, accumulate, out);
    else if (decode_narrow(NarrowPart::DownWide, C))
        launch_chained("moe down_combine (quantized, split wide)", down_combine_split_kernel<C, R>,
                       static_cast<unsigned>(n * (h / R)), kWarps * 32, 0, stream, act, h, i,
                       experts, accumulate, out);
    else
        launch_chained("moe down_combine (quantized)", down_combine_quantized_kernel<C, R>,
                       blocks_for_warps(n * (h / R)), kWarps * 32, 0, stream, act, h, i,
                       static_cast<int>(n), experts, accumulate, out);
}

template <WeightCode C>
void launch_quantized(const bf16* x, size_t n, int h, int i, int slots, const Experts& experts,
                      bool accumulate, float* act, float* out, cudaStream_t stream) {
    if (decode_narrow(NarrowPart::GateUp, C))
        launch_quantized<C, kQRows<C> / 2>(x, n, h, i, slots, experts, accumulate, act, out,
                                           stream);
    else
        launch_quantized<C, kQRows<C>>(x, n, h, i, slots, experts, accumulate, act, out, stream);
}

}  // namespace

void moe_experts_gemv(const bf16* x, size_t n, size_t hidden, size_t inter, size_t top_k,
                      const int32_t* chosen, const float* weights, const ExpertWeights& w,
                      const DecodeSharedExpert& shared, bool accumulate, float* act, float* out,
                      cudaStream_t stream) {
    if (n == 0) return;
    const size_t multiple = w.code == WeightCode::Bf16 ? 8 : kChunkValues;
    if (hidden % multiple != 0 || inter % multiple != 0)
        fail(Status::Unsupported,
             "decode MoE GEMV needs hidden and moe_intermediate_size "
             "divisible by " +
                 std::to_string(multiple));
    if (shared.w1.data && shared.w1.code != w.code)
        fail(Status::Internal, "decode MoE GEMV: the shared expert's format differs");
    const int k = static_cast<int>(top_k);
    const Experts experts{chosen, weights, w, shared, k, shared.w1.data ? k + 1 : k};
    const int slots = static_cast<int>(n) * experts.per_token;
    const int h = static_cast<int>(hidden), i = static_cast<int>(inter);
    const unsigned gate_blocks = blocks_for_warps(static_cast<size_t>(slots) * inter);
    const unsigned down_blocks = blocks_for_warps(n * hidden);
    switch (w.code) {
        case WeightCode::Bf16:
            launch_chained("moe gate_up", gate_up_kernel, gate_blocks, kWarps * 32, 0, stream, x, h,
                           i, slots, experts, act);
            if (decode_narrow(NarrowPart::Down, WeightCode::Bf16))
                launch_chained("moe down_combine (split)", down_combine_split_bf16_kernel,
                               static_cast<unsigned>(n * hidden), kWarps * 32, 0, stream, act, h, i,
                               experts, accumulate, out);
            else
                launch_chained("moe down_combine", down_combine_kernel, down_blocks, kWarps * 32, 0,
                               stream, act, h, i, static_cast<int>(n), experts, accumulate, out);
            break;
        case WeightCode::Fp8:
            launch_quantized<WeightCode::Fp8>(x, n, h, i, slots, experts, accumulate, act, out,
                                              stream);
            break;
        case WeightCode::Int4:
            launch_quantized<WeightCode::Int4>(x, n, h, i, slots, experts, accumulate, act, out,
                                               stream);
            break;
    }
}

}  // namespace kl::cuda
