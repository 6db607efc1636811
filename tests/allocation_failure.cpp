#include "allocation_failure.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <new>

#if defined(__GLIBC__)
#include <malloc.h>
#define KL_HEAP_SIZES 1
#endif

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define KL_SANITIZER_OWNS_NEW 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define KL_SANITIZER_OWNS_NEW 1
#endif
#endif

namespace {

// Allocations left before the failing one; negative: fail none.
std::atomic<long> g_countdown{-1};
std::atomic<bool> g_fired{false};

// The heap operator new holds (usable sizes) and, while a HeapPeak is alive, its peak.
std::atomic<int64_t> g_live{0};
std::atomic<int64_t> g_peak{0};
std::atomic<bool> g_measuring{false};

#ifndef KL_SANITIZER_OWNS_NEW
void count_allocated([[maybe_unused]] void* p) {
#ifdef KL_HEAP_SIZES
    const auto size = static_cast<int64_t>(malloc_usable_size(p));
    const int64_t live = g_live.fetch_add(size) + size;
    if (!g_measuring.load(std::memory_order_relaxed)) return;
    int64_t peak = g_peak.load(std::memory_order_relaxed);
    while (live > peak && !g_peak.compare_exchange_weak(peak, live)) {
    }
#endif
}

void count_freed([[maybe_unused]] void* p) {
#ifdef KL_HEAP_SIZES
    if (p) g_live.fetch_sub(static_cast<int64_t>(malloc_usable_size(p)));
#endif
}
#endif

}  // namespace

#ifndef KL_SANITIZER_OWNS_NEW
void* operator new(std::size_t size) {
    // fetch_sub returns 0 to exactly one caller, however many threads allocate at once.
    if (g_countdown.load(std::memory_order_relaxed) >= 0 && g_countdown.fetch_sub(1) == 0) {
        g_fired = true;
        throw std::bad_alloc();
    }
    if (void* p = std::malloc(size ? size : 1)) {
        count_allocated(p);
        return p;
    }
    throw std::bad_alloc();
}

void operator delete(void* p) noexcept {
    count_freed(p);
    std::free(p);
}

void operator delete(void* p, std::size_t) noexcept {
    count_freed(p);
    std::free(p);
}
#endif

namespace kl::test {

FailAllocation::FailAllocation(long index) {
    g_fired = false;
    g_countdown = index;
}

FailAllocation::~FailAllocation() {
    g_countdown = -1;
}

bool FailAllocation::fired() const {
    return g_fired;
}

bool FailAllocation::available() {
#ifdef KL_SANITIZER_OWNS_NEW
    return false;
#else
    return true;
#endif
}

HeapPeak::HeapPeak() : base_(g_live.load()) {
    g_peak = base_;
    g_measuring = true;
}

HeapPeak::~HeapPeak() {
    g_measuring = false;
}

uint64_t HeapPeak::bytes() const {
    return static_cast<uint64_t>(std::max<int64_t>(0, g_peak.load() - base_));
}

bool HeapPeak::available() {
#if defined(KL_SANITIZER_OWNS_NEW) || !defined(KL_HEAP_SIZES)
    return false;
#else
    return true;
#endif
}

}  // namespace kl::test
