// Refusing, before allocating, a request for more host memory than the machine has: a
// config whose weights cannot fit fails at once with OutOfMemory instead of thrashing or
// being killed part way (docs/design/model.md, "Limits").
#pragma once

#include <cstdint>
#include <string>

namespace kl {

// The machine's physical memory in bytes (0 when it cannot be told).
uint64_t host_memory_bytes();

// OutOfMemory naming `what` when `bytes` exceed the machine's physical memory.
void require_host_memory(uint64_t bytes, const std::string& what);

}  // namespace kl
