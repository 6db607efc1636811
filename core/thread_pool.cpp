#include "thread_pool.h"

#include <algorithm>
#include <string>

#include "error.h"

namespace kl {

namespace {
thread_local bool t_inside_pool = false;
}

ThreadPool::ThreadPool(int n_threads, const WorkerStarter& start) {
    if (n_threads <= 0)
        n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    workers_.reserve(static_cast<size_t>(n_threads - 1));
    for (int i = 1; i < n_threads; ++i) {
        try {
            auto run = [this, i] { worker_loop(i); };
            workers_.push_back(start ? start(run) : std::thread(run));
        } catch (const std::exception& e) {
            // The destructor does not run for a constructor that throws: stop and join the
            // workers already started here, or they would wait on members about to go away.
            stop_workers();
            fail(Status::OutOfMemory, "could not start CPU worker thread " + std::to_string(i) +
                                          " of " + std::to_string(n_threads - 1) + " (" +
                                          e.what() + "): ask for fewer n_threads");
        }
    }
}

ThreadPool::~ThreadPool() {
    stop_workers();
}

void ThreadPool::stop_workers() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_)
        if (w.joinable()) w.join();
}

// Chunks are claimed dynamically so uneven work (e.g. MoE experts) still balances.
void ThreadPool::run_share(int /*index*/) {
    for (;;) {
        size_t chunk;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (next_chunk_ >= n_chunks_) return;
            chunk = next_chunk_++;
        }
        size_t begin = chunk * chunk_;
        size_t end = std::min(n_, begin + chunk_);
        try {
            (*body_)(begin, end);
        } catch (...) {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!error_) error_ = std::current_exception();
            next_chunk_ = n_chunks_;
        }
    }
}

void ThreadPool::worker_loop(int index) {
    t_inside_pool = true;
    unsigned seen = 0;
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
            if (stop_) return;
            seen = generation_;
            ++busy_;
        }
        run_share(index);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            --busy_;
        }
        done_.notify_all();
    }
}

void ThreadPool::parallel_for(size_t n, size_t grain,
                              const std::function<void(size_t, size_t)>& body) {
    if (n == 0) return;
    grain = std::max<size_t>(grain, 1);
    if (workers_.empty() || t_inside_pool || n <= grain) {
        body(0, n);
        return;
    }
    std::lock_guard<std::mutex> call_lock(call_mutex_);
    size_t threads = workers_.size() + 1;
    // About 4 chunks per thread for balance, never below the grain.
    size_t chunk = std::max(grain, (n + threads * 4 - 1) / (threads * 4));
    {
        std::lock_guard<std::mutex> lock(mutex_);
        body_ = &body;
        n_ = n;
        chunk_ = chunk;
        n_chunks_ = (n + chunk - 1) / chunk;
        next_chunk_ = 0;
        error_ = nullptr;
        ++generation_;
    }
    wake_.notify_all();
    t_inside_pool = true;
    run_share(0);
    t_inside_pool = false;
    std::exception_ptr error;
    {
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [&] { return busy_ == 0 && next_chunk_ >= n_chunks_; });
        body_ = nullptr;
        error = error_;
    }
    if (error) std::rethrow_exception(error);
}

}  // namespace kl
