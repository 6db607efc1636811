#include "allocation_failure.h"

#include <atomic>
#include <cstdlib>
#include <new>

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

}  // namespace

#ifndef KL_SANITIZER_OWNS_NEW
void* operator new(std::size_t size) {
    // fetch_sub returns 0 to exactly one caller, however many threads allocate at once.
    if (g_countdown.load(std::memory_order_relaxed) >= 0 && g_countdown.fetch_sub(1) == 0) {
        g_fired = true;
        throw std::bad_alloc();
    }
    if (void* p = std::malloc(size ? size : 1)) return p;
    throw std::bad_alloc();
}

void operator delete(void* p) noexcept {
    std::free(p);
}

void operator delete(void* p, std::size_t) noexcept {
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

}  // namespace kl::test
