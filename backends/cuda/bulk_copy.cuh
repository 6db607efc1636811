// Hopper's bulk asynchronous copies from global to shared memory (cp.async.bulk, sm_90),
// signalled on mbarriers (wgmma.cuh): the decode kernels that stream weight rows into a ring
// of shared-memory stages instead of holding them in registers (gemv_bulk.cu,
// moe_decode_bulk.cu; docs/design/kernels.md, "Decode on bulk copies"). Device code only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "chained_launch.cuh"
#include "quant_row.cuh"
#include "wgmma.cuh"

namespace kl::cuda {
namespace {

// The shared memory a bulk kernel's ring takes: `fallback` bytes, or KL_CUDA_BULK_RING_KB for
// A/B runs (a large ring keeps more bytes in flight; a small one leaves room on the SM for
// the kernels before and after, whose blocks it may share the SM with).
inline size_t bulk_ring_bytes(size_t fallback) {
    static const long kb = [] {
        const char* v = std::getenv("KL_CUDA_BULK_RING_KB");
        return v ? std::atol(v) : 0L;
    }();
    return kb > 0 && kb <= 227 ? size_t(kb) * 1024 : fallback;
}

__device__ __forceinline__ uint32_t shared_address(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Makes barriers just initialised by mbarrier_init visible to the copy engine.
__device__ __forceinline__ void fence_barrier_init() {
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

// Arrives on `bar` and adds `bytes` to the transaction count its phase waits for.
__device__ __forceinline__ void mbarrier_expect_tx(uint64_t* bar, uint32_t bytes) {
    asm volatile(
        "mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(shared_address(bar)),
        "r"(bytes)
        : "memory");
}

// Copies `bytes` (a multiple of 16, both addresses 16-byte aligned) from global to shared
// memory; their landing counts against `bar`'s transaction count.
__device__ __forceinline__ void bulk_load(void* dst, const void* src, uint32_t bytes,
                                          uint64_t* bar) {
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, "
        "[%3];\n" ::"r"(shared_address(dst)),
        "l"(src), "r"(bytes), "r"(shared_address(bar))
        : "memory");
}

// mbarrier_wait (wgmma.cuh) that gives up after ten seconds: a copy that never lands (a bad
// address, a miscounted transaction) traps, so the launch fails with an error instead of
// hanging the stream and every call behind it.
__device__ __forceinline__ void mbarrier_wait_bounded(uint64_t* bar, uint32_t parity) {
    uint64_t start = 0;
    for (uint32_t spins = 0; !mbarrier_try_wait(bar, parity); ++spins)
        if ((spins & 1023) == 0) {
            uint64_t now;
            asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
            if (spins == 0)
                start = now;
            else if (now - start > 10000000000ull)  // far past any copy, even instrumented
                __trap();
        }
}

// The handshake of a ring of `stages` shared-memory stages that one producer thread fills
// with bulk copies, item after item (item i in stage i % stages), and `consumers` warps
// empty. Thread 0 calls init, then the block syncs. The producer warp calls produce: lane 0
// issues the first of the `early` leading items that fit the ring before the warp waits
// for the previous kernel (so only what depends on nothing it writes: weights, or expert
// ids two kernels back, chained_launch.cuh), the rest after, each once its stage is handed
// back. A consumer warp waits with ready(i) before reading item i's stage and hands it back
// with done(i).
template <int MaxStages>
struct BulkRing {
    uint64_t full[MaxStages], empty[MaxStages];

    __device__ void init(int stages, int consumers) {
        for (int s = 0; s < stages; ++s)
            mbarrier_init(&full[s], 1), mbarrier_init(&empty[s], consumers);
        fence_barrier_init();
    }
    // issue(item, bar) arrives on bar, with the bytes it copies as the phase's transactions.
    template <typename Issue>
    __device__ void produce(int items, int early, int stages, Issue issue) {
        const bool lead = (threadIdx.x & 31) == 0;
        const int ahead = min(min(items, early), stages);
        if (lead)
            for (int i = 0; i < ahead; ++i) issue(i, &full[i]);
        wait_for_previous();
        release_next();
        if (lead)
            for (int i = ahead; i < items; ++i) {
                if (i >= stages) mbarrier_wait_bounded(&empty[i % stages], (i / stages - 1) & 1);
                issue(i, &full[i % stages]);
            }
    }
    __device__ void ready(int item, int stages) {
        mbarrier_wait_bounded(&full[item % stages], (item / stages) & 1);
    }
    __device__ void done(int item, int stages) {
        __syncwarp();  // every lane has read the stage before it is handed back
        if ((threadIdx.x & 31) == 0) mbarrier_arrive(&empty[item % stages]);
    }
};

// Values [c, c + 16) of a quantized row held in shared memory (quant_row.cuh's chunk).
template <WeightCode C>
__device__ __forceinline__ QChunk<C> shared_qchunk(const unsigned char* row, int c) {
    QChunk<C> q;
    if constexpr (C == WeightCode::Fp8)
        q.raw = *reinterpret_cast<const uint4*>(row + c);
    else
        q.raw = *reinterpret_cast<const uint2*>(row + c / 2);
    return q;
}

}  // namespace
}  // namespace kl::cuda
