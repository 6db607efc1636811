// The CUDA backend's entry point for the C API and the GPU tests. No CUDA types here: the
// callers are plain C++.
#pragma once

#include "core/backend_registry.h"

namespace kl::cuda {

// For backends/registry.cpp (and the GPU tests' device check).
const BackendProvider& backend_provider();

}  // namespace kl::cuda
