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

// One session's per-layer state: KDA recurrent + conv state, the MLA latent cache, the last
// logits, in the backend's memory. Plain data: each backend derives its own and the
// operations on it are the Backend's, so a state never calls back into its backend.
class BackendState {
public:
    BackendState(uint64_t capacity, size_t vocab) : capacity_(capacity), vocab_(vocab) {}
    virtual ~BackendState() = default;
    uint64_t capacity() const { return capacity_; }  // MLA cache capacity in tokens
    size_t vocab() const { return vocab_; }          // the length of the kept logits

private:
    uint64_t capacity_;
    size_t vocab_;
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
    // A copy of everything the state holds (a fork, or the copy a snapshot load or a
    // synthetic fill works on so that a failure changes nothing).
    virtual std::unique_ptr<BackendState> clone_state(const BackendState& state) const = 0;
    // Zero recurrent state and logits; the cache needs no clearing (rows past the position
    // are never read).
    virtual void reset_state(BackendState& state) const = 0;

    // Benchmarks: state as if `position` tokens had been read (random KDA/conv state, MLA
    // cache rows [0, position) and logits), without running the model.
    virtual void fill_synthetic(BackendState& state, uint64_t position, uint64_t seed) const = 0;

    // The logits of the last token of the latest forward() ([vocab] fp32; zeros after
    // reset_state()). The state keeps them in the backend's memory, so a GPU decode step
    // need not copy 163840 floats to the host when only a sampled token is wanted.
    virtual void read_logits(const BackendState& state, float* out) const = 0;
    virtual void write_logits(BackendState& state, const float* logits) const = 0;  // a snapshot's
    // The token kl::sample_token picks from the kept logits (history: the tokens consumed,
    // position: their count). This default copies the logits to the host; a GPU backend
    // samples on the device and copies one token id.
    virtual int32_t sample(const BackendState& state, const SamplingParams& params,
                           const int32_t* history, size_t history_len, uint64_t position) const;

    // One layer's part of a snapshot body, laid out by core/state_io.h: a KDA layer's
    // recurrent state (ModelConfig::recurrent_floats_per_kda_layer() fp32: S, then the conv
    // state), an MLA layer's cache rows [0, position) as fp32. `out` / `in` may be unaligned.
    virtual void save_layer(const BackendState& state, size_t layer, uint64_t position,
                            uint8_t* out) const = 0;
    virtual void load_layer(BackendState& state, size_t layer, uint64_t position,
                            const uint8_t* in) const = 0;

    // Runs tokens[0..n) at `position` (0 < n, position + n <= capacity, ids in range: the
    // caller checked). The state keeps the last token's logits (read_logits); they are
    // also copied to last_logits [vocab] and all rows to all_logits [n, vocab] when those
    // are not null. Checks `cancel` at layer boundaries and throws Cancelled. On any throw
    // the state, its logits included, is exactly as before the call.
    virtual void forward(BackendState& state, uint64_t position, const int32_t* tokens, size_t n,
                         float* last_logits, float* all_logits,
                         const std::atomic<bool>& cancel) const = 0;

    // Batched decode (docs/design/batching.md): one token for each of n sessions in one pass,
    // so the weights are read once for all of them. Row i runs tokens[i] at positions[i] on
    // *states[i]: distinct states of this backend, each with room for one more token, ids in
    // range (the caller checked). Each state then holds its row's logits, as forward() of
    // that one token would leave them: the same computation, equal up to rounding (the CPU's
    // to float rounding; a GPU's batched matrix and attention kernels round bf16 differently
    // from its one-session ones). On any throw no state changed. Not cancellable: a step is
    // one token (Session checks the cancel flags first).
    virtual void forward_batch(BackendState* const* states, const uint64_t* positions,
                               const int32_t* tokens, size_t n) const = 0;
    // sample() for each of n states: out[i] = sample(*states[i], params[i], histories[i],
    // history_lens[i], positions[i]). This default loops over sample(); a GPU backend samples
    // all of them on the device and copies the n ids back with one wait.
    virtual void sample_batch(const BackendState* const* states, const SamplingParams* params,
                              const int32_t* const* histories, const size_t* history_lens,
                              const uint64_t* positions, size_t n, int32_t* out) const;
};

}  // namespace kl
