#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"

namespace {

TEST(ThreadPool, CoversEveryIndexExactlyOnce) {
    for (int threads : {1, 2, 5}) {
        kl::ThreadPool pool(threads);
        for (size_t n : {0u, 1u, 7u, 1000u, 12345u}) {
            std::vector<std::atomic<int>> hits(n);
            for (auto& h : hits) h = 0;
            pool.parallel_for(n, 3, [&](size_t begin, size_t end) {
                for (size_t i = begin; i < end; ++i) ++hits[i];
            });
            for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i], 1) << "n=" << n << " i=" << i;
        }
    }
}

TEST(ThreadPool, RethrowsTheBodysExceptionAndStaysUsable) {
    kl::ThreadPool pool(3);
    EXPECT_THROW(pool.parallel_for(100, 1,
                                   [](size_t begin, size_t) {
                                       if (begin >= 50) throw std::runtime_error("boom");
                                   }),
                 std::runtime_error);
    std::atomic<size_t> total{0};
    pool.parallel_for(100, 1, [&](size_t b, size_t e) { total += e - b; });
    EXPECT_EQ(total, 100u);
}

TEST(ThreadPool, NestedCallsRunInline) {
    kl::ThreadPool pool(3);
    std::atomic<size_t> total{0};
    pool.parallel_for(8, 1, [&](size_t b, size_t e) {
        for (size_t i = b; i < e; ++i)
            pool.parallel_for(10, 1, [&](size_t b2, size_t e2) { total += e2 - b2; });
    });
    EXPECT_EQ(total, 80u);
}

}  // namespace

namespace {

// A process at its thread limit: std::thread throws std::system_error after a few workers.
// The pool must stop and join the ones it started and report OutOfMemory (it used to unwind
// past joinable threads waiting on its members: a hang or std::terminate).
TEST(ThreadPool, AWorkerThatCannotStartIsACleanError) {
    int started = 0;
    const kl::ThreadPool::WorkerStarter start_three = [&](std::function<void()> run) {
        if (started == 3)
            throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
        ++started;
        return std::thread(std::move(run));
    };
    try {
        kl::ThreadPool pool(8, start_three);
        ADD_FAILURE() << "the pool started without its workers";
    } catch (const kl::Error& e) {
        EXPECT_EQ(e.status(), kl::Status::OutOfMemory);
        EXPECT_NE(std::string(e.what()).find("worker thread 4 of 7"), std::string::npos) << e.what();
    }
    EXPECT_EQ(started, 3);
    kl::ThreadPool fine(3, [](std::function<void()> run) { return std::thread(std::move(run)); });
    std::atomic<size_t> total{0};
    fine.parallel_for(100, 1, [&](size_t b, size_t e) { total += e - b; });
    EXPECT_EQ(total, 100u);
}

}  // namespace
