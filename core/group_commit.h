// Group commit: threads submit jobs; the first thread to find no pass running leads one,
// which runs up to max_batch queued jobs together and wakes their threads; the others sleep
// until their job is done. No thread of its own and no polling. With `wait` > 0 a pass first
// waits, at most `wait`, until every member (a job's `member`: its session) of the previous
// pass is queued again, so that threads which come back a little apart, or a thread which
// split off and led a pass of its own, land in one pass (docs/design/batching.md); 0 never
// waits. core/decode_batcher.h runs decode steps and samples through two of these.
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
#include <unordered_set>
#include <vector>

#include "error.h"

namespace kl {

// What a job carries besides its own fields (a job type derives from it).
struct GroupJob {
    const void* member = nullptr;  // who submits it (a session): what a gathering pass waits for
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
        // Only a gathering leader waits for arrivals, and only for the last one it waits for
        // (or a full pass): waking every waiting thread at each arrival cost n^2 wake-ups per
        // pass (64 threads: 4096, tens of milliseconds).
        const bool last_missing = missing_.erase(job.member) && missing_.empty();
        if (last_missing || (!missing_.empty() && queue_.size() >= max_batch_))
            arrived_.notify_one();
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
            // The previous pass's members not queued yet; the pass starts when none is left
            // (or the queue fills a pass). Jobs of other threads already queued go with it.
            try {
                missing_ = last_members_;
                for (const Job* queued : queue_) missing_.erase(queued->member);
                arrived_.wait_for(lock, wait_,
                                  [&] { return missing_.empty() || queue_.size() >= max_batch_; });
            } catch (const std::bad_alloc&) {  // the copy: then this pass does not wait
            }
            missing_.clear();
        }
        std::vector<Job*> pass;
        try {
            pass.reserve(std::min(max_batch_, queue_.size()));
        } catch (const std::bad_alloc&) {  // nothing ran: every queued job fails alike
            for (Job* job : queue_)
                finish(*job, Status::OutOfMemory, "out of memory gathering a batched pass");
            queue_.clear();
            running_ = false;
            passed_.notify_all();
            return;
        }
        while (!queue_.empty() && pass.size() < max_batch_) {
            Job* job = queue_.front();
            queue_.pop_front();
            if (job->cancel && job->cancel->load())
                finish(*job, Status::Cancelled, "cancelled");
            else
                pass.push_back(job);
        }
        if (!pass.empty()) {
            last_members_.clear();
            try {
                for (const Job* job : pass)
                    if (job->member) last_members_.insert(job->member);
            } catch (const std::bad_alloc&) {  // the next pass waits for fewer, or none
            }
        }
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
    std::condition_variable arrived_;  // the last job a gathering leader waits for arrived
    std::condition_variable passed_;   // a pass ended: its jobs are done, a new leader may go
    std::deque<Job*> queue_;           // jobs waiting for a pass, in arrival order
    bool running_ = false;             // a thread is gathering or running a pass
    std::unordered_set<const void*> last_members_;  // the previous pass's members
    std::unordered_set<const void*> missing_;       // of those, not queued yet (while gathering)
};

}  // namespace kl
