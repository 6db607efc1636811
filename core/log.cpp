#include "log.h"

#include <cstdio>
#include <mutex>

namespace kl {

namespace {
std::mutex g_log_mutex;
LogSink g_sink = nullptr;
void* g_sink_user = nullptr;
}  // namespace

void set_log_sink(LogSink sink, void* user) {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    g_sink = sink;
    g_sink_user = user;
}

void log(LogLevel level, const std::string& message) {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    if (g_sink) {
        // A sink that throws must not take the library down with it.
        try {
            g_sink(static_cast<int>(level), message.c_str(), g_sink_user);
        } catch (...) {
        }
        return;
    }
    if (level <= LogLevel::Warn) {
        std::fprintf(stderr, "kimi-linear %s: %s\n", level == LogLevel::Error ? "error" : "warning",
                     message.c_str());
    }
}

}  // namespace kl
