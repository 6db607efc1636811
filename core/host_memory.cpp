#include "host_memory.h"

#include <unistd.h>

#include "error.h"

namespace kl {

uint64_t host_memory_bytes() {
    const long pages = ::sysconf(_SC_PHYS_PAGES);
    const long page_size = ::sysconf(_SC_PAGE_SIZE);
    if (pages <= 0 || page_size <= 0) return 0;
    return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size);
}

void require_host_memory(uint64_t bytes, const std::string& what) {
    const uint64_t available = host_memory_bytes();
    if (available != 0 && bytes > available)
        fail(Status::OutOfMemory, what + " need " + std::to_string(bytes) +
                                      " bytes, more than this machine's " +
                                      std::to_string(available) + " bytes of memory");
}

}  // namespace kl
