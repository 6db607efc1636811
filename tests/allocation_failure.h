// Test support: makes one allocation fail on purpose, to check that a call which runs out of
// memory part way leaves everything as it was, and measures the most heap a call holds at
// once. allocation_failure.cpp replaces the global operator new of the test binary that links
// it; it fails nothing unless a FailAllocation is alive. Not under ThreadSanitizer or
// AddressSanitizer (available() says so).
#pragma once

#include <cstdint>

namespace kl::test {

// While alive, allocation number `index` (0: the next one), counted over all threads, throws
// std::bad_alloc; the others succeed. One at a time.
class FailAllocation {
public:
    explicit FailAllocation(long index);
    ~FailAllocation();
    FailAllocation(const FailAllocation&) = delete;
    FailAllocation& operator=(const FailAllocation&) = delete;

    // Whether the allocation was reached (false: the code made fewer allocations).
    bool fired() const;
    // False in a build whose sanitizer runtime owns operator new (TSan; ASan), where the
    // replacement is left out (it would not link, or would hide the sanitizer's checks).
    static bool available();
};

// While alive, the most bytes of operator new's heap (all threads) held at once above what
// was held when it was made: what a call made in its lifetime needed at its peak. One at a
// time. Counts malloc's usable sizes, a little above the sizes asked for.
class HeapPeak {
public:
    HeapPeak();
    ~HeapPeak();
    HeapPeak(const HeapPeak&) = delete;
    HeapPeak& operator=(const HeapPeak&) = delete;

    uint64_t bytes() const;
    // False where operator new is not replaced (see FailAllocation) or malloc cannot say a
    // block's size (not glibc).
    static bool available();

private:
    int64_t base_;  // the bytes held when it was made
};

}  // namespace kl::test
