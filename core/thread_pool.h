// A fixed set of worker threads for data-parallel loops. One pool per model; a session's
// forward pass borrows it (calls are serialised, so sessions on several threads stay safe).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kl {

class ThreadPool {
public:
    // Starts one worker thread running `run` (std::thread by default; tests pass one that
    // fails, as a process at its thread limit does).
    using WorkerStarter = std::function<std::thread(std::function<void()> run)>;

    // n_threads <= 0: std::thread::hardware_concurrency(). If a worker cannot be started,
    // the ones already running are stopped and joined, then Error(OutOfMemory) is thrown.
    explicit ThreadPool(int n_threads, const WorkerStarter& start = {});
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return static_cast<int>(workers_.size()) + 1; }

    // Calls body(begin, end) over disjoint ranges covering [0, n), each at least `grain`
    // long, on the workers and the calling thread; returns when all are done. The first
    // exception thrown by a body is rethrown here. Nested calls run inline.
    void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& body);

private:
    void stop_workers();
    void worker_loop(int index);
    void run_share(int index);

    std::vector<std::thread> workers_;
    std::mutex call_mutex_;  // one parallel_for at a time
    std::mutex mutex_;
    std::condition_variable wake_;
    std::condition_variable done_;
    const std::function<void(size_t, size_t)>* body_ = nullptr;
    size_t n_ = 0;
    size_t chunk_ = 0;
    size_t n_chunks_ = 0;
    size_t next_chunk_ = 0;
    int busy_ = 0;
    unsigned generation_ = 0;
    bool stop_ = false;
    std::exception_ptr error_;
};

}  // namespace kl
