// core/fifo_mutex.h: threads get the lock in the order they asked for it, a holder that
// yields lets exactly the threads waiting then go first, and the lock excludes (the counter
// below is plain memory: ThreadSanitizer runs these, scripts/setup_and_test.sh).
#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "core/fifo_mutex.h"

namespace {

// Waits until `n` threads wait for `m`.
void until_waiting(const kl::FifoMutex& m, uint64_t n) {
    while (m.waiting() < n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

TEST(FifoMutex, ThreadsGetTheLockInTheOrderTheyAsked) {
    kl::FifoMutex m;
    std::vector<int> order;  // written under m
    m.lock();
    std::vector<std::thread> threads;
    for (int i = 0; i < 5; ++i) {
        threads.emplace_back([&, i] {
            std::lock_guard<kl::FifoMutex> hold(m);
            order.push_back(i);
        });
        until_waiting(m, i + 1);  // thread i holds its ticket before thread i + 1 asks
    }
    m.unlock();
    for (auto& t : threads) t.join();
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
    EXPECT_EQ(m.waiting(), 0u);
}

TEST(FifoMutex, AYieldingHolderLetsTheWaitersGoFirstThenHoldsItAgain) {
    kl::FifoMutex m;
    std::vector<int> order;
    m.lock();
    m.yield_to_waiters();  // nobody waits: keeps the lock without letting go
    order.push_back(0);
    std::thread a([&] {
        std::lock_guard<kl::FifoMutex> hold(m);
        order.push_back(1);
    });
    std::thread b([&] {
        until_waiting(m, 1);
        std::lock_guard<kl::FifoMutex> hold(m);
        order.push_back(2);
    });
    until_waiting(m, 2);
    m.yield_to_waiters();
    order.push_back(3);  // both waiters ran before the holder got it back
    m.unlock();
    a.join(), b.join();
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3})) << "a asked before b";
}

TEST(FifoMutex, ExcludesAcrossThreads) {
    kl::FifoMutex m;
    long counter = 0;
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < 2000; ++i) {
                std::lock_guard<kl::FifoMutex> hold(m);
                ++counter;
                if (i % 100 == 0) m.yield_to_waiters();
            }
        });
    for (auto& t : threads) t.join();
    EXPECT_EQ(counter, 8 * 2000);
}

}  // namespace
