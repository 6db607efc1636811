#include "input_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "error.h"

namespace kl {

int open_regular_file(const std::string& path, uint64_t* size) {
    // O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer, forever.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) fail(Status::Io, "cannot open " + path + ": " + std::strerror(errno));
    struct stat info;
    if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
        ::close(fd);
        fail(Status::Io, path + " is not a readable regular file");
    }
    *size = static_cast<uint64_t>(info.st_size);
    return fd;
}

std::string read_input_file(const std::string& path, uint64_t max_bytes) {
    uint64_t size = 0;
    const int fd = open_regular_file(path, &size);
    if (size > max_bytes) {
        ::close(fd);
        fail(Status::Format, path + " is " + std::to_string(size) + " bytes, more than the " +
                                 std::to_string(max_bytes) + "-byte limit for this file");
    }
    std::string bytes(static_cast<size_t>(size), '\0');
    size_t done = 0;
    while (done < bytes.size()) {  // a file that shrank meanwhile ends early; EINTR retries
        const ssize_t got = ::read(fd, &bytes[done], bytes.size() - done);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            const int error = errno;
            ::close(fd);
            fail(Status::Io, "cannot read " + path + ": " + std::strerror(error));
        }
        if (got == 0) break;
        done += static_cast<size_t>(got);
    }
    ::close(fd);
    bytes.resize(done);
    return bytes;
}

}  // namespace kl
