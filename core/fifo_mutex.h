// A mutex that threads get in the order they asked for it (a ticket lock that sleeps), and
// that tells its holder whether anyone is waiting. std::mutex gives no order: a thread that
// unlocks and locks again at once usually gets it back, so a long holder that steps aside
// between pieces of its work (a prefill between its pieces, for the decode passes of other
// sessions: backends/cuda/cuda_model.cu) would still starve them.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace kl {

class FifoMutex {
public:
    void lock() {
        std::unique_lock<std::mutex> guard(mutex_);
        const uint64_t ticket = next_++;
        turn_.wait(guard, [&] { return serving_ == ticket; });
    }
    void unlock() {
        {
            std::lock_guard<std::mutex> guard(mutex_);
            ++serving_;
        }
        turn_.notify_all();  // the waiters are few (the passes of one model)
    }
    // How many threads wait for the lock (besides the holder).
    uint64_t waiting() const {
        std::lock_guard<std::mutex> guard(mutex_);
        return next_ > serving_ ? next_ - serving_ - 1 : 0;
    }
    // The holder lets every thread that waits now go first, then holds the lock again.
    void yield_to_waiters() {
        if (waiting() == 0) return;
        unlock();
        lock();
    }

private:
    mutable std::mutex mutex_;
    std::condition_variable turn_;
    uint64_t next_ = 0;     // the ticket the next lock() takes
    uint64_t serving_ = 0;  // the ticket that holds the lock (== next_: free)
};

}  // namespace kl
