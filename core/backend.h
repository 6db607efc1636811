// The interface between the model-level code (sessions, C API) and a compute backend
// (the CPU backend in core/cpu/, the CUDA backend in kernels/). A backend owns the weights
// in its own layout and per-session state in its own memory.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace kl {

enum class DeviceKind { Cpu = 1, Cuda = 2 };  // values match kl_device

// One session's per-layer state: KDA recurrent + conv state, the MLA latent cache.
class BackendState {
public:
    virtual ~BackendState() = default;
    virtual std::unique_ptr<BackendState> clone() const = 0;
    virtual void reset() = 0;
    virtual uint64_t capacity() const = 0;  // MLA cache capacity in tokens
    // Serialised state for `position` tokens (fixed-size recurrent parts + cache rows
    // [0, position)) in a backend-independent layout: fp32, little-endian, layer order.
    virtual size_t saved_size(uint64_t position) const = 0;
    virtual void save(uint64_t position, uint8_t* out) const = 0;
    // Restores what save() wrote (the caller checked size == saved_size(position)).
    virtual void load(uint64_t position, const uint8_t* data) = 0;
};

class Backend {
public:
    virtual ~Backend() = default;
    virtual DeviceKind device() const = 0;
    virtual uint64_t weight_bytes() const = 0;
    virtual uint64_t session_fixed_bytes() const = 0;
    virtual uint64_t kv_bytes_per_token() const = 0;

    // Throws OutOfMemory if the state cannot be allocated.
    virtual std::unique_ptr<BackendState> create_state(uint64_t max_context) const = 0;

    // Runs tokens[0..n) at `position` (0 < n, position + n <= capacity, ids in range: the
    // caller checked). Always writes the last token's logits to last_logits [vocab];
    // all_logits [n, vocab] too when not null. Checks `cancel` at layer boundaries and
    // throws Cancelled. On any throw the state is exactly as before the call.
    virtual void forward(BackendState& state, uint64_t position, const int32_t* tokens, size_t n,
                         float* last_logits, float* all_logits,
                         const std::atomic<bool>& cancel) const = 0;
};

class Checkpoint;
struct ModelConfig;

// How the model reaches a GPU backend without the core seeing CUDA: the C API passes the
// CUDA backend's provider (kernels/cuda_backend.h) when the build has one.
struct GpuBackendProvider {
    int (*device_count)();  // 0 when there is no usable device
    std::unique_ptr<Backend> (*create)(const ModelConfig& config, const Checkpoint& checkpoint,
                                       int device_index);
    std::unique_ptr<Backend> (*create_random)(const ModelConfig& config, uint64_t seed,
                                              int device_index);
};

}  // namespace kl
