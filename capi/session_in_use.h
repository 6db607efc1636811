// A session's in-use flag, held by each C API call that reads or writes the session
// (docs/design/capi.md "One call at a time"). A session is used by one thread at a time; a
// second call while one runs (another thread, or a kl_session_generate callback calling back
// into its own session) fails fast with KL_ERR_BUSY instead of racing on the session's
// memory. One atomic exchange per call: nothing waits.
#pragma once

#include <atomic>

#include "core/error.h"

namespace kl {

class SessionInUse {
public:
    explicit SessionInUse(std::atomic<bool>& flag) : flag_(flag) {
        // acquire/release: what one call wrote is visible to the next call that takes the
        // flag, on whichever thread (what the one-thread-at-a-time contract relies on).
        if (flag_.exchange(true, std::memory_order_acquire))
            fail(Status::Busy,
                 "session is in use by another call: a session is used by one thread at a time "
                 "(only kl_session_cancel and kl_session_clear_cancel may be called meanwhile), "
                 "and a kl_session_generate callback may not call into its own session");
    }
    ~SessionInUse() { flag_.store(false, std::memory_order_release); }
    SessionInUse(const SessionInUse&) = delete;
    SessionInUse& operator=(const SessionInUse&) = delete;

private:
    std::atomic<bool>& flag_;
};

}  // namespace kl
