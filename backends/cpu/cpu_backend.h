// The CPU backend: fp32 weights and state in host memory, the whole forward pass built from
// the ops in ops.h. It is the executable specification the CUDA backend is tested against.
#pragma once

#include "core/backend_registry.h"

namespace kl::cpu {

// For backends/registry.cpp: the host always has the one device.
const BackendProvider& backend_provider();

}  // namespace kl::cpu
