// Internal error type of the core. The C API firewall (capi/) turns it into a kl_status and
// a kl_last_error() message; nothing else may let it escape.
#pragma once

#include <stdexcept>
#include <string>

namespace kl {

// Mirrors kl_status value by value; the core does not include the C header.
enum class Status {
    Ok = 0,
    InvalidArgument,
    Io,
    Format,
    Unsupported,
    OutOfMemory,
    ContextFull,
    Cancelled,
    Device,
    Internal,
    Busy,  // added after Internal (kl_status only grows at its end)
};

class Error : public std::runtime_error {
public:
    Error(Status status, const std::string& message)
        : std::runtime_error(message), status_(status) {}
    Status status() const { return status_; }

private:
    Status status_;
};

[[noreturn]] inline void fail(Status status, const std::string& message) {
    throw Error(status, message);
}

}  // namespace kl
