// The selection point: which backends this build has. The only place that knows whether
// the CUDA backend was compiled (KL_HAVE_CUDA); core reaches both through
// core/backend_registry.h.
#include "backends/cpu/cpu_backend.h"
#include "core/backend_registry.h"
#ifdef KL_HAVE_CUDA
#include "backends/cuda/cuda_backend.h"
#endif

namespace kl {

const BackendProvider& cpu_backend_provider() {
    return cpu::backend_provider();
}

const BackendProvider* gpu_backend_provider() {
#ifdef KL_HAVE_CUDA
    return &cuda::backend_provider();
#else
    return nullptr;
#endif
}

}  // namespace kl
