#include "allocation_failure.h"

#include <atomic>
#include <cstdlib>
#include <new>

namespace {

// Allocations left before the failing one; negative: fail none.
std::atomic<long> g_countdown{-1};
std::atomic<bool> g_fired{false};

}  // namespace

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

}  // namespace kl::test
