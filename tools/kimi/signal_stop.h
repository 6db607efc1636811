// kimi's Ctrl-C: while a SignalStop lives, SIGINT and SIGTERM only note that they came, so
// that a long call is stopped through its progress callback (which returns non-zero once
// stop_signal() is set) and cleans up after itself, e.g. kl_checkpoint_quantize_with_progress
// removing the files it wrote. Each has its default action back once it came (SA_RESETHAND):
// a second Ctrl-C during the clean-up kills as before. A signal the process started with
// ignored (a background job of a script) stays ignored.
#pragma once

#include <signal.h>

#include <atomic>

namespace kimi {

namespace detail {
// The first signal that came, 0 while none has. Lock-free, so the handler may set it on
// whichever thread the signal lands (the library's threads included).
inline std::atomic<int> stop_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);

// Async-signal-safe: a lock-free store of the first signal only.
extern "C" inline void note_stop_signal(int sig) {
    int none = 0;
    stop_signal.compare_exchange_strong(none, sig);
}
}  // namespace detail

// SIGINT or SIGTERM, the first that came during the last SignalStop, else 0.
inline int stop_signal() {
    return detail::stop_signal.load();
}

class SignalStop {
public:
    SignalStop() {
        detail::stop_signal = 0;
        struct sigaction action = {};
        action.sa_handler = detail::note_stop_signal;
        sigemptyset(&action.sa_mask);
        action.sa_flags = SA_RESTART | SA_RESETHAND;  // reads and writes carry on
        for (int i = 0; i < 2; ++i) {
            installed_[i] = sigaction(kSignals[i], nullptr, &previous_[i]) == 0 &&
                            previous_[i].sa_handler != SIG_IGN &&
                            sigaction(kSignals[i], &action, nullptr) == 0;
        }
    }
    ~SignalStop() {  // the handlers from before
        for (int i = 0; i < 2; ++i)
            if (installed_[i]) sigaction(kSignals[i], &previous_[i], nullptr);
    }
    SignalStop(const SignalStop&) = delete;
    SignalStop& operator=(const SignalStop&) = delete;

private:
    static constexpr int kSignals[2] = {SIGINT, SIGTERM};
    struct sigaction previous_[2] = {};
    bool installed_[2] = {};
};

}  // namespace kimi
