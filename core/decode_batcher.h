// Decode batching across threads (docs/design/batching.md): concurrent one-token steps on
// sessions of one model run together in one Backend::forward_batch pass, so the weights are
// read once per batch instead of once per session, and concurrent samples run as one
// Backend::sample_batch (on a GPU: one device round trip for all). Both through group commit
// (core/group_commit.h): no thread of its own. A pass of one step runs Backend::forward (a
// backend's fastest one-session path). Owned by a Model loaded with max_batch > 1; used by
// Session::append and Session::sample.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "backend.h"
#include "group_commit.h"
#include "sampler.h"

namespace kl {

class DecodeBatcher {
public:
    // max_batch: the most steps (or samples) one pass runs (> 1); wait: how long a pass waits
    // for the sessions of the previous pass to queue again before it starts without them
    // (0: never waits).
    DecodeBatcher(const Backend& backend, size_t max_batch, std::chrono::microseconds wait);

    // Runs `token` at `position` on `state` in a pass with the steps other threads run
    // meanwhile. The state is used only by this step until it returns (the caller holds
    // its session). Throws Cancelled, running nothing, if `cancel` is set when the step's
    // pass starts; throws what the pass threw (then no state of the pass changed).
    void step(BackendState& state, uint64_t position, int32_t token,
              const std::atomic<bool>& cancel);
    // Backend::sample of `state`, in one sample_batch with the samples other threads take
    // meanwhile.
    int32_t sample(const BackendState& state, const SamplingParams& params,
                   const int32_t* history, size_t history_len, uint64_t position);

    size_t max_batch() const { return max_batch_; }

private:
    struct Step : GroupJob {
        BackendState* state = nullptr;
        uint64_t position = 0;
        int32_t token = 0;
    };
    struct Sample : GroupJob {
        const BackendState* state = nullptr;
        const SamplingParams* params = nullptr;
        const int32_t* history = nullptr;
        size_t history_len = 0;
        uint64_t position = 0;
        int32_t token = -1;  // out
    };

    const Backend& backend_;
    const size_t max_batch_;
    GroupCommit<Step> steps_;
    GroupCommit<Sample> samples_;
};

}  // namespace kl
