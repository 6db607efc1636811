#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

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
