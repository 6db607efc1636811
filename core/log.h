// Library logging: a process-wide sink the C API can redirect (kl_set_log_callback).
#pragma once

#include <string>

namespace kl {

enum class LogLevel { Error = 0, Warn = 1, Info = 2, Debug = 3 };

using LogSink = void (*)(int level, const char* message, void* user);

// sink == nullptr restores the default: stderr, warnings and errors only.
void set_log_sink(LogSink sink, void* user);
void log(LogLevel level, const std::string& message);

}  // namespace kl
