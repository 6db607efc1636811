// Decode's weights asked of L2 ahead of their kernel (KL_CUDA_DECODE_L2AHEAD=1): a decode
// step alternates kernels that stream weights at close to the memory's rate with kernels
// whose own work is a chain of latencies (a norm, the KDA step), during which memory idles.
// Such a kernel hands the byte ranges of the weights that come next to Hopper's bulk
// prefetch (one instruction per kL2AheadChunk bytes, no register or shared memory holds the
// data), so that those weights are on their way while it waits; the kernel that reads them
// then finds part of them in L2 (docs/design/kernels.md, "Decode: weights ahead in L2").
#pragma once

#include <cstdint>

#include "ops.h"

namespace kl::cuda {

constexpr uint32_t kL2AheadChunk = 16 * 1024;

// Thread `thread` of `threads` (numbered across the blocks that share the work) issues its
// chunks of the ranges. Ranges are 16-byte aligned and multiples of 16 bytes (l2_range()).
__device__ __forceinline__ void prefetch_ahead(const L2Ahead& ahead, size_t thread,
                                               size_t threads) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    size_t first = 0;  // chunk number of this range's first chunk, counted over all ranges
    for (int r = 0; r < L2Ahead::kRanges; ++r) {
        const size_t chunks = (ahead.bytes[r] + kL2AheadChunk - 1) / kL2AheadChunk;
        // The chunks are dealt round-robin over every range at once, so that a small range
        // does not leave most threads idle.
        size_t c = thread >= first % threads ? thread - first % threads
                                             : thread + threads - first % threads;
        for (; c < chunks; c += threads) {
            const size_t offset = c * kL2AheadChunk;
            const size_t left = ahead.bytes[r] - offset;
            const uint32_t size =
                left < kL2AheadChunk ? static_cast<uint32_t>(left) : kL2AheadChunk;
            asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(
                             static_cast<const char*>(ahead.data[r]) + offset),
                         "r"(size)
                         : "memory");
        }
        first += chunks;
    }
#endif
}

}  // namespace kl::cuda
