// Finds and loads the CUDA backend's plugin, libkimi_linear_cuda.so.<ABI major>, from the
// folder of the library that holds this code (docs/design/architecture.md "The CUDA backend
// is a plugin"). Host code only: it includes nothing of CUDA.
#pragma once

#include "core/backend_registry.h"

namespace kl {

// Loads the plugin (never unloaded once accepted); on any failure the lookup's provider is
// null and why_not names the file and the loader's reason.
GpuBackendLookup load_cuda_plugin();

}  // namespace kl
