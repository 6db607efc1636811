// Per-op time breakdown of the CUDA forward pass, on when KL_CUDA_PROFILE=1: each section
// ends with a stream synchronisation, so the times include launch overhead (what a decode
// step pays) and the profiled run is slower than a normal one. Printed to stderr when the
// backend is destroyed.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace kl::cuda {

class OpProfile {
public:
    OpProfile() {
        const char* env = std::getenv("KL_CUDA_PROFILE");
        enabled_ = env && env[0] == '1';
    }
    ~OpProfile() {
        if (!enabled_ || totals_.empty()) return;
        std::vector<std::pair<std::string, Total>> rows(totals_.begin(), totals_.end());
        std::sort(rows.begin(), rows.end(),
                  [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
        double all = 0.0;
        for (const auto& r : rows) all += r.second.ms;
        std::fprintf(stderr, "KL_CUDA_PROFILE: %-22s %12s %8s %10s %6s\n", "section", "total ms",
                     "calls", "ms/call", "share");
        for (const auto& r : rows)
            std::fprintf(stderr, "KL_CUDA_PROFILE: %-22s %12.3f %8ld %10.4f %5.1f%%\n",
                         r.first.c_str(), r.second.ms, r.second.calls, r.second.ms / r.second.calls,
                         100.0 * r.second.ms / all);
    }

    bool enabled() const { return enabled_; }

    // Closes the running section (waiting for the stream) and opens `name`; nullptr closes.
    void section(const char* name, cudaStream_t stream) {
        if (!enabled_) return;
        cudaStreamSynchronize(stream);
        const auto now = std::chrono::steady_clock::now();
        if (!current_.empty()) {
            Total& t = totals_[current_];
            t.ms += std::chrono::duration<double, std::milli>(now - started_).count();
            ++t.calls;
        }
        current_ = name ? name : "";
        started_ = now;
    }

private:
    struct Total {
        double ms = 0.0;
        long calls = 0;
    };
    bool enabled_ = false;
    std::map<std::string, Total> totals_;
    std::string current_;
    std::chrono::steady_clock::time_point started_;
};

}  // namespace kl::cuda
