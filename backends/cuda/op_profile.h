// Per-op time breakdown of the CUDA forward pass, printed to stderr when the backend is
// destroyed. KL_CUDA_PROFILE=1 (eager): each section of a pass run outside a graph ends with
// a stream synchronisation, so the times include launch overhead and the profiled run is
// slower than a normal one; the first call of each section is kept apart (its own column),
// since it pays what is paid once (a GEMM plan, a buffer's growth) and would otherwise
// dominate a single cold pass. KL_CUDA_PROFILE=graph: the decode graphs are captured with a
// timing event at each section boundary and every replay adds the times between them: what
// each section costs inside the graph a decode step really runs (the event nodes cost a few
// microseconds per step in all). KL_CUDA_PROFILE=without:NAME[,NAME...]: profiling by
// ablation, the decode graphs are captured without the chained kernels of the named sections
// (chained_launch.cuh), so a step's time against a normal run's is what those sections cost
// in the chain, overlap included (the results are wrong; only the times mean something).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "chained_launch.cuh"

namespace kl::cuda {

class OpProfile {
public:
    OpProfile() {
        const char* env = std::getenv("KL_CUDA_PROFILE");
        if (env && std::strcmp(env, "graph") == 0)
            mode_ = Mode::Graph;
        else if (env && env[0] == '1')
            mode_ = Mode::Eager;
        else if (env && std::strncmp(env, "without:", 8) == 0) {
            mode_ = Mode::Without;
            std::string names = env + 8;
            for (size_t start = 0; start <= names.size();) {
                const size_t end = std::min(names.find(',', start), names.size());
                without_.push_back(names.substr(start, end - start));
                start = end + 1;
            }
        }
    }
    ~OpProfile() {
        if (!totals_.empty()) {
            std::vector<std::pair<std::string, Total>> rows(totals_.begin(), totals_.end());
            std::sort(rows.begin(), rows.end(),
                      [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
            double all = 0.0;
            for (const auto& r : rows) all += r.second.ms;
            const char* mode = mode_ == Mode::Graph ? "graph" : "eager";
            std::fprintf(stderr, "KL_CUDA_PROFILE (%s): %-26s %12s %8s %10s %6s%s\n", mode,
                         "section", "total ms", "calls", "ms/call", "share",
                         mode_ == Mode::Eager ? "  first call ms (not in total)" : "");
            for (const auto& r : rows) {
                const Total& t = r.second;
                std::fprintf(stderr, "KL_CUDA_PROFILE (%s): %-26s %12.3f %8ld %10.4f %5.1f%%", mode,
                             r.first.c_str(), t.ms, t.calls, t.calls ? t.ms / t.calls : 0.0,
                             all > 0.0 ? 100.0 * t.ms / all : 0.0);
                if (mode_ == Mode::Eager) std::fprintf(stderr, "  %10.3f", t.first_ms);
                std::fprintf(stderr, "\n");
            }
        }
        for (auto& graph : graphs_)
            for (auto& mark : graph.second) cudaEventDestroy(mark.second);
        for (auto& mark : capturing_) cudaEventDestroy(mark.second);
    }

    bool enabled() const { return mode_ != Mode::Off && mode_ != Mode::Without; }
    // Eager profiling runs decode steps outside graphs (a capture cannot wait per section).
    bool eager() const { return mode_ == Mode::Eager; }

    // Closes the running section and opens `name`; nullptr closes. Eager: waits for the
    // stream. While the stream is being captured: graph mode records a timing event (a node
    // of the graph), eager mode does nothing (a capture cannot wait).
    void section(const char* name, cudaStream_t stream) {
        if (mode_ == Mode::Off) return;
        cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
        cudaStreamIsCapturing(stream, &capture);
        if (mode_ == Mode::Without) {
            drop_chained_launches(capture == cudaStreamCaptureStatusActive && name &&
                                  std::find(without_.begin(), without_.end(), name) !=
                                      without_.end());
            return;
        }
        if (capture == cudaStreamCaptureStatusActive) {
            if (mode_ != Mode::Graph) return;
            cudaEvent_t mark = nullptr;
            // External: a record node of the graph (a plain record in a capture only orders
            // the capture's streams and is not timed at replay).
            if (cudaEventCreate(&mark) != cudaSuccess ||
                cudaEventRecordWithFlags(mark, stream, cudaEventRecordExternal) != cudaSuccess) {
                cudaGetLastError();
                return;
            }
            capturing_.emplace_back(name ? name : "", mark);
            return;
        }
        if (mode_ != Mode::Eager) return;
        cudaStreamSynchronize(stream);
        const auto now = std::chrono::steady_clock::now();
        if (!current_.empty()) {
            Total& t = totals_[current_];
            const double ms = std::chrono::duration<double, std::milli>(now - started_).count();
            if (t.first_ms < 0.0) {
                t.first_ms = ms;
            } else {
                t.ms += ms;
                ++t.calls;
            }
        }
        current_ = name ? name : "";
        started_ = now;
    }

    // The capture that just ended became `graph`: its marks belong to it.
    void captured(cudaGraphExec_t graph) {
        if (mode_ != Mode::Graph) return;
        graphs_[graph] = std::move(capturing_);
        capturing_.clear();
    }
    // `graph` was replayed and the stream synchronised: adds the time between its marks.
    void replayed(cudaGraphExec_t graph) {
        if (mode_ != Mode::Graph) return;
        const auto found = graphs_.find(graph);
        if (found == graphs_.end()) return;
        const auto& marks = found->second;
        for (size_t i = 0; i + 1 < marks.size(); ++i) {
            float ms = 0.0f;
            if (marks[i].first.empty()) continue;
            const cudaError_t status =
                cudaEventElapsedTime(&ms, marks[i].second, marks[i + 1].second);
            if (status != cudaSuccess) {
                cudaGetLastError();
                if (!warned_)
                    std::fprintf(stderr, "KL_CUDA_PROFILE: a graph section has no time: %s\n",
                                 cudaGetErrorString(status));
                warned_ = true;
                continue;
            }
            Total& t = totals_[marks[i].first];
            t.ms += ms;
            ++t.calls;
        }
    }

private:
    enum class Mode { Off, Eager, Graph, Without };
    struct Total {
        double ms = 0.0;
        long calls = 0;
        double first_ms = -1.0;  // eager: the first call's time, kept out of ms and calls
    };
    Mode mode_ = Mode::Off;
    bool warned_ = false;
    std::map<std::string, Total> totals_;
    std::vector<std::string> without_;  // Mode::Without: the sections left out of graphs
    std::string current_;
    std::chrono::steady_clock::time_point started_;
    // Graph mode: the marks of the capture under way and of each captured graph, in order,
    // each naming the section it opens ("" for the closing mark).
    std::vector<std::pair<std::string, cudaEvent_t>> capturing_;
    std::map<cudaGraphExec_t, std::vector<std::pair<std::string, cudaEvent_t>>> graphs_;
};

}  // namespace kl::cuda
