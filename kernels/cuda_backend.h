// The CUDA backend's entry point for the C API and the GPU tests. No CUDA types here: the
// callers are plain C++.
#pragma once

#include "core/backend.h"

namespace kl::cuda {

// device_count() and create() for Model::load (ModelLoadOptions::gpu).
const GpuBackendProvider& backend_provider();

}  // namespace kl::cuda
