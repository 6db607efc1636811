// Group commit: threads submit jobs; the first thread to find no pass running leads one,
// which runs up to max_batch queued jobs together and wakes their threads; the others sleep
// until their job is done. No thread of its own and no polling. A pass first waits, at most
// `wait`, until as many jobs are queued as the previous pass ran (so batches stay whole when
// threads come back a little apart); 0 never waits. core/decode_batcher.h runs decode steps
// and samples through two of these.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "error.h"

namespace kl {

// What a job carries besides its own fields (a job type derives from it).
struct GroupJob {
    const std::atomic<bool>* cancel = nullptr;  // set when its pass starts: Cancelled, not run
    bool done = false;
    Status status = Status::Ok;  // the failure, as status + message: each thread throws its own
    std::string message;
};

template <typename Job>
class GroupCommit {
public:
    // Runs a pass's jobs (never empty); a throw fails every job of the pass alike.
    using Run = std::function<void(const std::vector<Job*>& jobs)>;

    GroupCommit(size_t max_batch, std::chrono::microseconds wait)
        : max_batch_(max_batch), wait_(wait) {}

    // Returns when `job` ran in some pass; throws its failure.
    void submit(Job& job, const Run& run) {
        std::unique_lock<std::mutex> lock(mutex_);
        queue_.push_back(&job);
        // Only a leader gathering jobs waits for arrivals: waking every waiting thread at
        // each arrival cost n^2 wake-ups per pass (64 threads: 4096, tens of milliseconds).
        if (gathering_) arrived_.notify_one();
        while (!job.done) {
            if (running_)
                passed_.wait(lock);
            else
                lead(lock, run);  // a pass, which may not include this job if it is full
        }
        if (job.status != Status::Ok) fail(job.status, job.message);
    }

private:
    // Called with the lock held and no pass running; returns with the lock held.
    void lead(std::unique_lock<std::mutex>& lock, const Run& run) {
        running_ = true;
        if (wait_.count() > 0) {
            const size_t want = std::min(max_batch_, last_pass_);
            gathering_ = true;
            arrived_.wait_for(lock, wait_, [&] { return queue_.size() >= want; });
            gathering_ = false;
        }
        std::vector<Job*> pass;
        pass.reserve(std::min(max_batch_, queue_.size()));
        while (!queue_.empty() && pass.size() < max_batch_) {
            Job* job = queue_.front();
            queue_.pop_front();
            if (job->cancel && job->cancel->load())
                finish(*job, Status::Cancelled, "cancelled");
            else
                pass.push_back(job);
        }
        if (!pass.empty()) last_pass_ = pass.size();
        lock.unlock();
        Status status = Status::Ok;
        std::string message;
        try {
            if (!pass.empty()) run(pass);
        } catch (const Error& e) {
            status = e.status(), message = e.what();
        } catch (const std::bad_alloc&) {
            status = Status::OutOfMemory, message = "out of memory in a batched pass";
        } catch (const std::exception& e) {
            status = Status::Internal, message = std::string("internal error: ") + e.what();
        } catch (...) {
            status = Status::Internal, message = "internal error: unknown exception";
        }
        lock.lock();
        for (Job* job : pass) finish(*job, status, message);
        running_ = false;
        passed_.notify_all();
    }
    static void finish(Job& job, Status status, const std::string& message) {
        job.status = status;
        job.message = message;
        job.done = true;
    }

    const size_t max_batch_;
    const std::chrono::microseconds wait_;
    std::mutex mutex_;
    std::condition_variable arrived_;  // a job arrived while the leader gathers (gathering_)
    std::condition_variable passed_;   // a pass ended: its jobs are done, a new leader may go
    bool gathering_ = false;
    std::deque<Job*> queue_;           // jobs waiting for a pass, in arrival order
    bool running_ = false;             // a thread is gathering or running a pass
    size_t last_pass_ = 1;             // jobs the previous pass ran: what a pass waits for
};

}  // namespace kl
