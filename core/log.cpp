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
    // The sink is called outside the lock (a copy of it taken under the lock), so it may call
    // back into the library, kl_set_log_callback and anything that logs included
    // (docs/design/capi.md "The log callback").
    LogSink sink;
    void* user;
    {
        std::lock_guard<std::mutex> lock(g_log_mutex);
        sink = g_sink;
        user = g_sink_user;
    }
    if (sink) {
        // A sink that throws must not take the library down with it.
        try {
            sink(static_cast<int>(level), message.c_str(), user);
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
