// A conversation: position, backend state, the tokens consumed (for the repetition
// penalty), the last logits, and a cancel flag. One thread at a time uses it, except
// request_cancel (the C API enforces it: kl_session's in-use flag). Every method either
// succeeds or throws leaving the session unchanged.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "backend.h"
#include "model.h"
#include "sampler.h"

namespace kl {

class Session {
public:
    Session(const Model& model, uint64_t max_context);  // 0 = the model's default
    std::unique_ptr<Session> fork() const;

    // Runs tokens at the current position; all rows [n, vocab] and the last token's
    // logits [vocab] are copied out when the pointers are not null (the session keeps the
    // last row either way, in the backend's memory, for sample()).
    void append(const int32_t* tokens, size_t n, float* all_logits, float* last_logits = nullptr);
    void reset();
    // Batched decode (docs/design/batching.md): appends tokens[i] to *sessions[i], one token
    // each, in one backend pass. The sessions belong to one model and are distinct; each is
    // checked as append() checks it (InvalidArgument / ContextFull naming the index). A cancel
    // pending on any of them fails the call with Cancelled, consuming the pending requests of
    // those sessions (this call was the next cancellable call of each). All or nothing: on any
    // throw no session changed.
    static void append_batch(Session* const* sessions, const int32_t* tokens, size_t n);
    // Throws InvalidArgument unless sessions[0..n) is a non-empty batch of distinct non-null
    // sessions of one model (naming the index); O(n log n).
    static void check_batch(const Session* const* sessions, size_t n);
    // sample() for each session with params[i] (one device round trip for a GPU model).
    static void sample_batch(const Session* const* sessions, const SamplingParams* params,
                             size_t n, int32_t* out);
    // Benchmarks: position `n` with deterministic random history, state, cache and logits,
    // as if n tokens had been read, without running the model (the session is usable).
    void fill_synthetic(uint64_t n, uint64_t seed);

    uint64_t position() const { return position_; }
    uint64_t capacity() const { return state_->capacity(); }
    const Model& model() const { return *model_; }
    bool has_logits() const { return has_logits_; }
    // A copy of the last logits [vocab] (InvalidArgument if there are none yet).
    std::vector<float> last_logits() const;

    // Samples from the last logits (InvalidArgument if there are none yet).
    int32_t sample(const SamplingParams& params) const;
    // Samples from logits [vocab] the caller holds (a changed copy of last_logits()) with the
    // session's history and position: the token sample() would give for those logits.
    int32_t sample_from(const float* logits, const SamplingParams& params) const;
    // The tokens consumed so far, in order (position() of them; fork and snapshots keep them).
    const std::vector<int32_t>& history() const { return history_; }

    // Snapshots: see session.cpp for the byte layout.
    size_t snapshot_size() const;
    void save_snapshot(uint8_t* out) const;  // writes exactly snapshot_size() bytes
    void load_snapshot(const uint8_t* data, size_t size);

    // Cancel (docs/design/capi.md "Cancel"): a request stays pending until a cancellable
    // call consumes it by throwing Cancelled (append does: the backend checks it before each
    // layer; throw_if_cancelled for steps that run no layer), or clear_cancel drops it.
    // Requests do not queue: several before one is consumed count as one.
    void request_cancel() { cancel_.store(true); }
    void clear_cancel() { cancel_.store(false); }
    // Throws Cancelled, consuming the request, if one is pending.
    void throw_if_cancelled();
    const std::atomic<bool>& cancel_flag() const { return cancel_; }

private:
    Session(const Session& other);
    const Backend& backend() const { return model_->backend(); }
    size_t state_bytes(uint64_t position) const;

    const Model* model_;
    std::unique_ptr<BackendState> state_;
    uint64_t position_ = 0;
    std::vector<int32_t> history_;
    size_t vocab_ = 0;
    bool has_logits_ = false;
    std::atomic<bool> cancel_{false};
};

}  // namespace kl
