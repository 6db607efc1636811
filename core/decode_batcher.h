// Decode batching across threads (docs/design/batching.md): concurrent one-token steps on
// sessions of one model run together in one Backend::forward_batch pass, so the weights are
// read once per batch instead of once per session. No thread of its own: the first waiting
// step runs the pass for everything queued ("group commit"); the others sleep until theirs
// is done. A pass of one step runs Backend::forward (a backend's fastest one-session path).
// Owned by a Model loaded with max_batch > 1; used by Session::append.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>

#include "backend.h"

namespace kl {

class DecodeBatcher {
public:
    // max_batch: the most steps one pass runs (> 1); wait: how long a pass waits for as many
    // steps as the previous pass ran before it starts with fewer (0: never waits).
    DecodeBatcher(const Backend& backend, size_t max_batch, std::chrono::microseconds wait);

    // Runs `token` at `position` on `state` in a pass with the steps other threads run
    // meanwhile. The state is used only by this step until it returns (the caller holds
    // its session). Throws Cancelled, running nothing, if `cancel` is set when the step's
    // pass starts; throws what the pass threw (then no state of the pass changed).
    void step(BackendState& state, uint64_t position, int32_t token,
              const std::atomic<bool>& cancel);

    size_t max_batch() const { return max_batch_; }

private:
    struct Request;
    void run_pass(std::unique_lock<std::mutex>& lock);

    const Backend& backend_;
    const size_t max_batch_;
    const std::chrono::microseconds wait_;
    std::mutex mutex_;
    std::condition_variable changed_;  // a request arrived or a pass ended
    std::deque<Request*> queue_;       // steps waiting for a pass, in arrival order
    bool running_ = false;             // a thread is gathering or running a pass
    size_t last_pass_ = 1;             // steps the previous pass ran: what a pass waits for
};

}  // namespace kl
