// The decode step's norms at the 48B model's shape (hidden 2304, 1 and 4 rows):
// add_rms_norm_to_bf16 (the residual add fused) and rms_norm_to_bf16. A decode step runs
// 55 of them back to back, so each is timed as 200 calls captured in one CUDA graph
// (launch gaps as in the step's graph, no per-call event), median of 9 replays, divided by
// 200: us per call, next to the bytes it moves.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "backends/cuda/cuda_util.h"
#include "backends/cuda/ops.h"
#include "median_timing.h"

namespace {

using kl::cuda::bf16;
using kl::cuda::check;
using kl::cuda::DeviceBuffer;

constexpr size_t kHidden = 2304;
constexpr int kCalls = 200;

DeviceBuffer random_f32(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> host(n);
    for (float& v : host) v = d(rng);
    DeviceBuffer b(n * sizeof(float));
    check(cudaMemcpy(b.as<void>(), host.data(), b.bytes(), cudaMemcpyHostToDevice), "upload");
    return b;
}

// us per call of `call` captured kCalls times into one graph.
template <typename F>
double graph_us(cudaStream_t stream, F call) {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), "capture");
    for (int i = 0; i < kCalls; ++i) call(stream);
    check(cudaStreamEndCapture(stream, &graph), "capture");
    check(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
    const double ms = kl::bench::median_ms(2, 9, [&](int) {
        check(cudaGraphLaunch(exec, nullptr), "launch");
    });
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    return ms * 1e3 / kCalls;
}

}  // namespace

int main() {
    try {
        cudaStream_t stream;
        check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
        DeviceBuffer x = random_f32(4 * kHidden, 1), branch = random_f32(4 * kHidden, 2);
        DeviceBuffer w(kHidden * sizeof(bf16)), y(4 * kHidden * sizeof(bf16));
        check(cudaMemset(w.as<void>(), 0x3f, w.bytes()), "w");  // bf16 0x3f3f ~ 0.75
        std::printf("%-5s %-22s %9s %9s\n", "rows", "kernel", "us/call", "bytes");
        for (size_t rows : {1, 4}) {
            const double add_us = graph_us(stream, [&](cudaStream_t s) {
                kl::cuda::add_rms_norm_to_bf16(x.as<float>(), branch.as<float>(), w.as<bf16>(),
                                               rows, kHidden, 1e-6f, y.as<bf16>(), s);
            });
            const double norm_us = graph_us(stream, [&](cudaStream_t s) {
                kl::cuda::rms_norm_to_bf16(x.as<float>(), kHidden, w.as<bf16>(), rows, kHidden,
                                           1e-6f, y.as<bf16>(), kHidden, s);
            });
            // x read and written, branch read, w read, y written; the plain norm: x, w, y.
            const size_t add_bytes = rows * kHidden * (4 * 3 + 2) + kHidden * 2;
            const size_t norm_bytes = rows * kHidden * (4 + 2) + kHidden * 2;
            std::printf("%-5zu %-22s %9.2f %9zu\n%-5zu %-22s %9.2f %9zu\n", rows,
                        "add_rms_norm_to_bf16", add_us, add_bytes, rows, "rms_norm_to_bf16",
                        norm_us, norm_bytes);
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "norm_bench: %s\n", e.what());
        return 1;
    }
}
