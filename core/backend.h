// The interface between the model-level code (sessions, C API) and a compute backend
// (the CPU backend in backends/cpu/, the CUDA backend in backends/cuda/, chosen through
// core/backend_registry.h). A backend owns the weights in its own layout and per-session
// state in its own memory.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "sampler.h"

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

    // Benchmarks: state as if `position` tokens had been read (random KDA/conv state, MLA
    // cache rows [0, position) and logits), without running the model.
    virtual void fill_synthetic(uint64_t position, uint64_t seed) = 0;

    // The logits of the last token of the latest forward() ([vocab] fp32; zeros after
    // reset()). The state keeps them in the backend's memory, so a GPU decode step need
    // not copy 163840 floats to the host when only a sampled token is wanted.
    virtual size_t vocab() const = 0;
    virtual void read_logits(float* out) const = 0;
    virtual void write_logits(const float* logits) = 0;  // a snapshot's logits
    // The token kl::sample_token picks from the kept logits (history: the tokens consumed,
    // position: their count). This default copies the logits to the host; a GPU state
    // samples on the device and copies one token id.
    virtual int32_t sample(const SamplingParams& params, const int32_t* history,
                           size_t history_len, uint64_t position) const;
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
    // caller checked). The state keeps the last token's logits (read_logits); they are
    // also copied to last_logits [vocab] and all rows to all_logits [n, vocab] when those
    // are not null. Checks `cancel` at layer boundaries and throws Cancelled. On any throw
    // the state, its logits included, is exactly as before the call.
    virtual void forward(BackendState& state, uint64_t position, const int32_t* tokens, size_t n,
                         float* last_logits, float* all_logits,
                         const std::atomic<bool>& cancel) const = 0;
};

}  // namespace kl
