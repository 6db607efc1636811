// The selection point: which backends this build has and how the GPU one is reached. The
// only place that knows; core reaches both through core/backend_registry.h.
//   KL_GPU_PLUGIN  the CUDA backend is loaded at run time from its plugin (libkimi_linear.so:
//                  a CPU-only machine needs no CUDA library)
//   KL_GPU_LINKED  the CUDA backend is linked in (the GPU tests, which test it directly)
//   neither        this build has no GPU backend
#include "backends/cpu/cpu_backend.h"
#include "core/backend_registry.h"
#if defined(KL_GPU_PLUGIN)
#include "backends/cuda_plugin/cuda_plugin_loader.h"
#elif defined(KL_GPU_LINKED)
#include "backends/cuda/cuda_backend.h"
#endif

namespace kl {

const BackendProvider& cpu_backend_provider() {
    return cpu::backend_provider();
}

namespace {

GpuBackendLookup find_gpu_backend() {
#if defined(KL_GPU_PLUGIN)
    return load_cuda_plugin();
#elif defined(KL_GPU_LINKED)
    GpuBackendLookup lookup;
    lookup.built = true;
    lookup.provider = &cuda::backend_provider();
    return lookup;
#else
    GpuBackendLookup lookup;
    lookup.why_not = "this build has no CUDA backend";
    return lookup;
#endif
}

}  // namespace

const GpuBackendLookup& gpu_backend() {
    static const GpuBackendLookup lookup = find_gpu_backend();  // once, thread-safe
    return lookup;
}

}  // namespace kl
