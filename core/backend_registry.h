// How the model reaches its backends without core naming any: the providers are declared
// here and defined in backends/registry.cpp, the one file that knows which backends the
// build compiled and how the GPU one is reached (linked in, or loaded from its plugin). A
// program that loads models links that file (CMake target kl_backends or kl_backends_linked).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "shard_rendezvous.h"

namespace kl {

class Checkpoint;
class ShardPlan;
class WeightStore;
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
    // Builds from a WeightStore (core/weight_store.h): any stored or requested weight format,
    // each tensor dequantized or in its quantized form, as the backend asks. Null for a
    // backend that reads plain weights only (through create / create_random): Model then
    // refuses quantized checkpoints and weight formats for it (Unsupported) before loading.
    std::unique_ptr<Backend> (*create_from_store)(const ModelConfig& config,
                                                  const ModelLayout& layout,
                                                  const WeightStore& weights,
                                                  const BackendOptions& options) = nullptr;
    // Shard `shard` of a model split by `plan` (core/sharded_backend.h): its parts of the
    // weights, meeting the other shards through `links`. Null for a backend that cannot run
    // a split model (Model then refuses one, Unsupported).
    std::unique_ptr<Backend> (*create_shard)(const ModelConfig& config, const ModelLayout& layout,
                                             const WeightStore& weights, const ShardPlan& plan,
                                             int shard, ShardLinks links,
                                             const BackendOptions& options) = nullptr;
    // The ShardGroup (core/shard_rendezvous.h) of a model split over `devices`, made before
    // its shards and handed to each in ShardLinks::group. Null for a backend whose shards
    // meet only at the host rendezvous (the CPU's).
    std::unique_ptr<ShardGroup> (*create_shard_group)(const std::vector<int>& devices) = nullptr;
};

const BackendProvider& cpu_backend_provider();

// The GPU backend of this process, looked up once: provider is null when there is none, and
// then why_not says why (the build has none, or its plugin or a library the plugin needs,
// such as the CUDA runtime's cuBLASLt, could not be loaded).
struct GpuBackendLookup {
    const BackendProvider* provider = nullptr;
    bool built = false;  // the build has a GPU backend (whether or not it could be loaded)
    std::string why_not;
};
const GpuBackendLookup& gpu_backend();

}  // namespace kl
