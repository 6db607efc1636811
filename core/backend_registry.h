// How the model reaches its backends without core naming any: the providers are declared
// here and defined in backends/registry.cpp, the one file that knows which backends the
// build compiled. A program that loads models links that file (CMake target kl_backends).
#pragma once

#include <functional>
#include <memory>

#include "backend.h"

namespace kl {

class Checkpoint;
struct ModelConfig;
struct ModelLayout;

// What a backend is built with besides the model: the knobs of ModelLoadOptions that reach
// it (a backend ignores those that are not its own: the CPU one the device index, a GPU
// one the thread count and the per-tensor progress).
struct BackendOptions {
    int device_index = 0;
    int n_threads = 0;                    // 0 = all hardware threads
    std::function<bool(float)> progress;  // false aborts (Cancelled); may be empty
};

// A backend builds its weights by visiting the layout (built once per load), reading each
// tensor from the checkpoint (already validated against the layout) or generating the
// deterministic random values of core/random_init.h for `seed`.
struct BackendProvider {
    int (*device_count)();  // 0 when there is no usable device
    std::unique_ptr<Backend> (*create)(const ModelConfig& config, const ModelLayout& layout,
                                       const Checkpoint& checkpoint, const BackendOptions& options);
    std::unique_ptr<Backend> (*create_random)(const ModelConfig& config, const ModelLayout& layout,
                                              uint64_t seed, const BackendOptions& options);
};

const BackendProvider& cpu_backend_provider();
// Null when this build has no GPU backend.
const BackendProvider* gpu_backend_provider();

}  // namespace kl
