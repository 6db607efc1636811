// The decode experts of one token on Hopper's bulk copies (KL_CUDA_DECODE_BULK, opt-in until
// measured; bulk_copy.cuh, docs/design/kernels.md "Decode on bulk copies"): blocks that stream
// their weight rows into a ring of shared-memory stages, issued before the chain's wait where the
// rows depend on nothing the previous kernel writes.
#include <algorithm>

#include "bulk_copy.cuh"
#include "chained_launch.cuh"
#include "cuda_util.h"
#include "moe_decode.cuh"

namespace kl::cuda {
namespace {

// One token's down + combine on bulk copies (KL_CUDA_DECODE_BULK=down; bulk_copy.cuh): a
// block owns an even share of the hidden rows, and its producer warp copies those rows of
// each slot's down matrix into a stage of shared memory, one stage per slot, before waiting
// for act: the slots' experts come from the router, two kernels back (complete when this one
// starts, chained_launch.cuh), so the block's share of every down matrix is on its way while
// gate/up still runs. Consumer warp w takes rows w, w + 8, ... of each stage; per row the
// chunks, the slot's scale and the sums in slot order are down_slots' (the same outputs).
constexpr int kBulkConsumers = 8;
constexpr int kBulkThreads = (kBulkConsumers + 1) * 32;
constexpr int kBulkMaxStages = 16;
constexpr int kBulkRowsPerWarp = 4;           // a block's share: at most 32 rows
constexpr size_t kBulkDownRing = 192 * 1024;  // FP8: all 9 slots of 2304 / 132 rows

template <WeightCode C>
__global__ void __launch_bounds__(kBulkThreads)
    down_combine_bulk_kernel(const float* act, int hidden, int inter, Experts experts,
                             bool accumulate, float* out, int stages, int stage_bytes) {
    extern __shared__ __align__(128) unsigned char ring[];
    __shared__ BulkRing<kBulkMaxStages> bars;
    const size_t row_bytes = qrow_bytes<C>(inter);
    const int r0 = static_cast<int>(static_cast<long long>(hidden) * blockIdx.x / gridDim.x);
    const int r1 = static_cast<int>(static_cast<long long>(hidden) * (blockIdx.x + 1) / gridDim.x);
    const int per = experts.per_token;  // token 0's slots
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (threadIdx.x == 0) bars.init(stages, kBulkConsumers);
    __syncthreads();

    if (warp == kBulkConsumers) {  // the producer: item = slot
        bars.produce(per, per, stages, [&](int slot, uint64_t* bar) {
            if (!experts.present(slot)) return mbarrier_arrive(bar);  // an empty stage
            const uint32_t bytes = static_cast<uint32_t>((r1 - r0) * row_bytes);
            mbarrier_expect_tx(bar, bytes);
            bulk_load(
                ring + size_t(slot % stages) * stage_bytes,
                static_cast<const unsigned char*>(experts.down(slot).data) + size_t(r0) * row_bytes,
                bytes, bar);
        });
        return;
    }

    wait_for_previous();  // act is the previous kernel's output
    release_next();
    float total[kBulkRowsPerWarp];
#pragma unroll
    for (int j = 0; j < kBulkRowsPerWarp; ++j) {
        const int row = r0 + warp + j * kBulkConsumers;
        total[j] = accumulate && row < r1 ? out[row] : 0.0f;
    }
    for (int slot = 0; slot < per; ++slot) {
        const int stage = slot % stages;
        bars.ready(slot, stages);
        if (experts.present(slot)) {
            const QMatrix m = experts.down(slot);
            const float* a = act + static_cast<size_t>(slot) * inter;
            const float weight = experts.weight(slot);
#pragma unroll
            for (int j = 0; j < kBulkRowsPerWarp; ++j) {
                const int row = r0 + warp + j * kBulkConsumers;
                if (row >= r1) break;
                const unsigned char* wrow =
                    ring + size_t(stage) * stage_bytes + size_t(row - r0) * row_bytes;
                const float* srow = qscale_row<C>(m.scales, row, inter);
                float dot = 0.0f;
                for (int base = lane * kChunkValues; base < inter; base += kQDownLoads * kQStride) {
                    QChunk<C> q[kQDownLoads];
#pragma unroll
                    for (int i = 0; i < kQDownLoads; ++i)
                        if (base + i * kQStride < inter)
                            q[i] = shared_qchunk<C>(wrow, base + i * kQStride);
#pragma unroll
                    for (int i = 0; i < kQDownLoads; ++i) {
                        const int c = base + i * kQStride;
                        if (c < inter) {
                            float av[kChunkValues];
                            load_x16_f32(a + c, av);
                            dot += qchunk_dot<C>(q[i], av, srow, c);
                        }
                    }
                }
                total[j] += weight * warp_sum(dot);
            }
        }
        bars.done(slot, stages);
    }
    if (lane == 0)
#pragma unroll
        for (int j = 0; j < kBulkRowsPerWarp; ++j) {
            const int row = r0 + warp + j * kBulkConsumers;
            if (row < r1) out[row] = total[j];
        }
}

// One token's gate/up on bulk copies (KL_CUDA_DECODE_BULK=gateup): the token's (slot, 8-row)
// tiles, the shared expert's first (they need no routing, as in gate_task's order), spread
// evenly over a block per SM; a tile's stage holds its 8 gate rows, then its 8 up rows. The
// producer copies the shared expert's tiles before the chain's wait, the routed ones after
// it (their experts come from the router, the kernel before). Consumer warp w takes row w of
// each tile: chunks, scales and silu as gate_up_quantized_kernel's (the same outputs).
constexpr size_t kBulkGateRing = 192 * 1024;

template <WeightCode C>
__global__ void __launch_bounds__(kBulkThreads)
    gate_up_bulk_kernel(const bf16* x, int hidden, int inter, Experts experts, float* act,
                        int stages, int stage_bytes) {
    extern __shared__ __align__(128) unsigned char ring[];
    __shared__ BulkRing<kBulkMaxStages> bars;
    const size_t row_bytes = qrow_bytes<C>(hidden);
    const int per_slot = (inter + kBulkConsumers - 1) / kBulkConsumers;  // a slot's tiles
    const int total = experts.per_token * per_slot;
    const int t0 = static_cast<int>(static_cast<long long>(total) * blockIdx.x / gridDim.x);
    const int t1 = static_cast<int>(static_cast<long long>(total) * (blockIdx.x + 1) / gridDim.x);
    const bool has_shared = experts.per_token > experts.top_k;
    auto slot_of = [&](int tile) {  // the shared slot's tiles first
        const int k = tile / per_slot;
        return has_shared ? (k == 0 ? experts.top_k : k - 1) : k;
    };
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (threadIdx.x == 0) bars.init(stages, kBulkConsumers);
    __syncthreads();

    if (warp == kBulkConsumers) {  // the producer: item i = tile t0 + i
        const int early = has_shared ? max(0, min(t1, per_slot) - t0) : 0;
        bars.produce(t1 - t0, early, stages, [&](int i, uint64_t* bar) {
            const int tile = t0 + i, slot = slot_of(tile);
            if (!experts.present(slot)) return mbarrier_arrive(bar);  // an empty stage
            const int row0 = tile % per_slot * kBulkConsumers;
            const uint32_t bytes =
                static_cast<uint32_t>(min(kBulkConsumers, inter - row0) * row_bytes);
            unsigned char* stage = ring + size_t(i % stages) * stage_bytes;
            mbarrier_expect_tx(bar, 2 * bytes);
            bulk_load(stage,
                      static_cast<const unsigned char*>(experts.gate(slot).data) +
                          size_t(row0) * row_bytes,
                      bytes, bar);
            bulk_load(
                stage + kBulkConsumers * row_bytes,
                static_cast<const unsigned char*>(experts.up(slot).data) + size_t(row0) * row_bytes,
                bytes, bar);
        });
        return;
    }

    wait_for_previous();  // the chosen experts come from the router, the kernel before
    release_next();
    for (int i = 0; i < t1 - t0; ++i) {
        const int tile = t0 + i, slot = slot_of(tile);
        const int row = tile % per_slot * kBulkConsumers + warp;
        bars.ready(i, stages);
        if (row < inter && experts.present(slot)) {
            const unsigned char* stage = ring + size_t(i % stages) * stage_bytes;
            const unsigned char* grow = stage + warp * row_bytes;
            const unsigned char* urow = stage + (kBulkConsumers + warp) * row_bytes;
            const float* gs = qscale_row<C>(experts.gate(slot).scales, row, hidden);
            const float* us = qscale_row<C>(experts.up(slot).scales, row, hidden);
            float ga = 0.0f, ua = 0.0f;
            for (int base = lane * kChunkValues; base < hidden; base += kQGateLoads * kQStride) {
                QChunk<C> gq[kQGateLoads], uq[kQGateLoads];
#pragma unroll
                for (int k = 0; k < kQGateLoads; ++k) {
                    const int c = base + k * kQStride;
                    if (c < hidden)
                        gq[k] = shared_qchunk<C>(grow, c), uq[k] = shared_qchunk<C>(urow, c);
                }
#pragma unroll
                for (int k = 0; k < kQGateLoads; ++k) {
                    const int c = base + k * kQStride;
                    if (c < hidden) {
                        float xv[kChunkValues];
                        load_x16_bf16(x + c, xv);
                        ga += qchunk_dot<C>(gq[k], xv, gs, c);
                        ua += qchunk_dot<C>(uq[k], xv, us, c);
                    }
                }
            }
            const float gr = warp_sum(ga), ur = warp_sum(ua);
            if (lane == 0)
                act[static_cast<size_t>(slot) * inter + row] = gr / (1.0f + __expf(-gr)) * ur;
        }
        bars.done(i, stages);
    }
}

template <WeightCode C>
bool launch_gate_up_bulk(const bf16* x, size_t n, int h, int i, const Experts& experts, float* act,
                         cudaStream_t stream) {
    const size_t row_bytes = C == WeightCode::Fp8 ? size_t(h) : size_t(h) / 2;
    if (n != 1 || !decode_bulk(BulkPart::GateUp) || compute_capability() < 90 ||
        row_bytes % 16 != 0)
        return false;
    const size_t stage_bytes = 2 * kBulkConsumers * row_bytes;
    const int stages = static_cast<int>(
        std::min<size_t>(kBulkMaxStages, bulk_ring_bytes(kBulkGateRing) / stage_bytes));
    if (stages < 2) return false;
    const int tiles = experts.per_token * ((i + kBulkConsumers - 1) / kBulkConsumers);
    const int blocks = std::min(multiprocessors(), tiles);
    const size_t shared = stage_bytes * stages;
    allow_dynamic_shared(reinterpret_cast<const void*>(gate_up_bulk_kernel<C>), shared,
                         "cudaFuncSetAttribute(gate_up_bulk_kernel)");
    launch_chained("moe gate_up (quantized, bulk)", gate_up_bulk_kernel<C>,
                   static_cast<unsigned>(blocks), kBulkThreads, shared, stream, x, h, i, experts,
                   act, stages, static_cast<int>(stage_bytes));
    return true;
}

// The bulk down launch for one token, or false where it does not apply (the caller launches
// the warp-per-row kernels).
template <WeightCode C>
bool launch_down_bulk(const float* act, size_t n, int h, int i, const Experts& experts,
                      bool accumulate, float* out, cudaStream_t stream) {
    const size_t row_bytes = C == WeightCode::Fp8 ? size_t(i) : size_t(i) / 2;
    if (n != 1 || !decode_bulk(BulkPart::Down) || compute_capability() < 90 || row_bytes % 16 != 0)
        return false;
    int blocks = std::min(multiprocessors(), (h + kBulkConsumers - 1) / kBulkConsumers);
    const int most = kBulkConsumers * kBulkRowsPerWarp;
    blocks = std::max(blocks, (h + most - 1) / most);
    const size_t stage_bytes = size_t((h + blocks - 1) / blocks) * row_bytes;
    const int stages =
        static_cast<int>(std::min<size_t>({size_t(experts.per_token), size_t(kBulkMaxStages),
                                           bulk_ring_bytes(kBulkDownRing) / stage_bytes}));
    if (stages < std::min(2, experts.per_token)) return false;  // stages to take turns
    const size_t shared = stage_bytes * stages;
    allow_dynamic_shared(reinterpret_cast<const void*>(down_combine_bulk_kernel<C>), shared,
                         "cudaFuncSetAttribute(down_combine_bulk_kernel)");
    launch_chained("moe down_combine (quantized, bulk)", down_combine_bulk_kernel<C>,
                   static_cast<unsigned>(blocks), kBulkThreads, shared, stream, act, h, i, experts,
                   accumulate, out, stages, static_cast<int>(stage_bytes));
    return true;
}

}  // namespace

bool moe_gate_up_bulk(const bf16* x, size_t n, int hidden, int inter, const Experts& experts,
                      float* act, cudaStream_t stream) {
    switch (experts.w.code) {
        case WeightCode::Fp8:
            return launch_gate_up_bulk<WeightCode::Fp8>(x, n, hidden, inter, experts, act, stream);
        case WeightCode::Int4:
            return launch_gate_up_bulk<WeightCode::Int4>(x, n, hidden, inter, experts, act, stream);
        case WeightCode::Bf16:
            break;
    }
    return false;
}

bool moe_down_bulk(const float* act, size_t n, int hidden, int inter, const Experts& experts,
                   bool accumulate, float* out, cudaStream_t stream) {
    switch (experts.w.code) {
        case WeightCode::Fp8:
            return launch_down_bulk<WeightCode::Fp8>(act, n, hidden, inter, experts, accumulate,
                                                     out, stream);
        case WeightCode::Int4:
            return launch_down_bulk<WeightCode::Int4>(act, n, hidden, inter, experts, accumulate,
                                                      out, stream);
        case WeightCode::Bf16:
            break;
    }
    return false;
}

}  // namespace kl::cuda
