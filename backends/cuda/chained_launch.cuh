// Chained kernel launches (Hopper's programmatic dependent launch): a decode step is ~230
// small kernels in a row, and each used to start only after the previous one had fully
// drained, so every kernel paid its launch latency and ramp-up on top of its bytes. A kernel
// launched with launch_chained() may start while its predecessor is still running; it
// issues the loads that depend on nothing (its weights, a session's recurrent state) and
// then waits in wait_for_previous() until the predecessor has finished and its writes are
// visible (docs/design/kernels.md, "Chained launches").
//
// The rule every kernel launched this way keeps: before wait_for_previous() it only reads
// memory that no kernel of the same stream writes (weights, state written by an earlier
// call that has completed) and writes nothing. After the wait it calls release_next(), which
// lets the next chained kernel start once every block of this one has got that far. A
// kernel launched plainly (<<<>>>, cuBLASLt) still waits for everything before it, and the
// device functions are no-ops where the hardware has no such launch (before sm_90) or it is
// switched off (KL_CUDA_PDL=0, for comparisons).
#pragma once

#include <utility>

#include "cuda_util.h"

namespace kl::cuda {

__device__ __forceinline__ void wait_for_previous() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Asks L2 for the line holding p without waiting for it (no register holds the data): for
// weights a chained kernel reads only after wait_for_previous(), too many to load into
// registers first; the previous kernel's time then covers their trip from memory.
__device__ __forceinline__ void prefetch_l2(const void* p) {
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

__device__ __forceinline__ void release_next() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Whether launches on the current device are chained: compute capability 9.0 or later and
// KL_CUDA_PDL not "0". Host code (chained_launch.cu).
bool chained_launches();

// Profiling by ablation (op_profile.h, KL_CUDA_PROFILE=without:...): while set on this thread,
// launch_chained() launches nothing, so a graph captured meanwhile lacks those kernels.
void drop_chained_launches(bool drop);
bool chained_launches_dropped();

template <typename... Params, typename... Args>
void launch_chained(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block,
                    size_t shared_bytes, cudaStream_t stream, Args&&... args) {
    if (chained_launches_dropped()) return;
    cudaLaunchAttribute chain[1];
    chain[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    chain[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config{};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = shared_bytes;
    config.stream = stream;
    config.attrs = chain;
    config.numAttrs = chained_launches() ? 1 : 0;
    check(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...), name);
}

}  // namespace kl::cuda
