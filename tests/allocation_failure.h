// Test support: makes one allocation fail on purpose, to check that a call which runs out of
// memory part way leaves everything as it was. allocation_failure.cpp replaces the global
// operator new of the test binary that links it; it fails nothing unless a FailAllocation
// is alive. Not under ThreadSanitizer or AddressSanitizer (available() says so).
#pragma once

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

}  // namespace kl::test
