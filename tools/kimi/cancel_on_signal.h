#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "kimi_linear.h"
#include "signal_stop.h"

namespace kimi {

// Cancels a session's running call (or its next one) once SIGINT or SIGTERM came during a
// SignalStop: kl_session_cancel is not documented async-signal-safe, so the handler only sets
// the flag and this thread, looking at it every 10 ms, makes the call. It stops a prompt's
// prefill or a long decode step at a layer boundary; a generation's callback stops between
// tokens itself. The cancel it made may still be pending once it is gone (the call it aimed at
// had ended): kl_session_clear_cancel before the session's next call.
class CancelOnSignal {
public:
    explicit CancelOnSignal(kl_session* session)
        : thread_([this, session] {
              std::unique_lock<std::mutex> lock(mutex_);
              while (!done_) {
                  if (kimi::stop_signal()) {
                      kl_session_cancel(session);
                      return;
                  }
                  wake_.wait_for(lock, std::chrono::milliseconds(10));
              }
          }) {}
    ~CancelOnSignal() {
        {
            const std::lock_guard<std::mutex> lock(mutex_);
            done_ = true;
        }
        wake_.notify_one();
        thread_.join();
    }
    CancelOnSignal(const CancelOnSignal&) = delete;
    CancelOnSignal& operator=(const CancelOnSignal&) = delete;

private:
    std::mutex mutex_;
    std::condition_variable wake_;
    bool done_ = false;
    std::thread thread_;  // last: started once the others exist
};

}  // namespace kimi
