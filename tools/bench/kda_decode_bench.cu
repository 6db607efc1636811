// Times the fused KDA decode step (backends/cuda/kda_decode.cu) at the model's shape, B=1, H=32,
// D=128, conv kernel 4, for n = 1 and 4 tokens and each split of a head over a cluster:
//  - "stream": back-to-back launches on a stream (includes the launch overhead);
//  - "graph": 100 steps captured in one CUDA graph, alternating two state buffers per layer
//    (what the backend does), replayed.
// "cold" rotates over 24 layers' state and weights (~100 MB, twice the L2) as a decode step
// over the model's layers would; "hot" repeats one layer (L2-resident: the latency floor).
// Bandwidth is on the state bytes (read + write) against the H100's measured 3.0 TB/s copy
// rate (docs/design/kernels.md). For context, the unfused recurrence kernel alone (kda_recurrent)
// is timed the same way. Prints a table; median of repeats, after warmup.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "backends/cuda/ops.h"

namespace {

using kl::cuda::bf16;

constexpr size_t kH = 32, kD = 128, kKernel = 4, kMaxN = 8, kLayers = 24, kStepsPerGraph = 100;
constexpr double kCopyBytesPerSecond = 3.0e12;

// A failed call ends the row it belongs to (reported), not the whole table.
void check(cudaError_t status, const char* what) {
    if (status != cudaSuccess)
        throw std::runtime_error(std::string("CUDA error in ") + what + ": " +
                                 cudaGetErrorString(status));
}

template <typename T>
T* device_random(size_t n, std::mt19937& rng, float scale, float offset = 0.0f) {
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<T> host(n);
    for (T& x : host) x = T(d(rng) + offset);
    T* ptr = nullptr;
    check(cudaMalloc(&ptr, n * sizeof(T)), "cudaMalloc");
    check(cudaMemcpy(ptr, host.data(), n * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
    return ptr;
}

// One KDA layer: weights, two state and two conv buffers (in, out), its projections.
struct Layer {
    kl::cuda::KdaDecodeWeights w;
    float* state[2];
    float* conv[2];
    float* proj;
};

constexpr size_t kStride = 3 * kH * kD + 2 * kD + kH;

Layer make_layer(std::mt19937& rng) {
    const size_t HD = kH * kD;
    Layer L;
    const float ws = 1.0f / std::sqrt(float(kD));
    L.w = {
        device_random<bf16>(HD * kKernel, rng, 0.5f), device_random<bf16>(HD * kKernel, rng, 0.5f),
        device_random<bf16>(HD * kKernel, rng, 0.5f), kKernel,
        device_random<bf16>(HD * kD, rng, ws),        device_random<bf16>(HD * kD, rng, ws),
        device_random<float>(kH, rng, 0.5f, -1.0f),   device_random<float>(HD, rng, 0.5f),
        device_random<bf16>(kD, rng, 0.1f, 1.0f),     1e-5f};
    for (int i = 0; i < 2; ++i) {
        L.state[i] = device_random<float>(kH * kD * kD, rng, 0.3f);
        L.conv[i] = device_random<float>(3 * (kKernel - 1) * HD, rng, 1.0f);
    }
    L.proj = device_random<float>(kMaxN * kStride, rng, 1.0f);
    return L;
}

// Median of `repeats` timings of `body` (which issues `steps` steps), in microseconds/step.
double median_us_per_step(const std::function<void()>& body, int steps, cudaStream_t stream) {
    cudaEvent_t start, stop;
    check(cudaEventCreate(&start), "cudaEventCreate");
    check(cudaEventCreate(&stop), "cudaEventCreate");
    for (int i = 0; i < 3; ++i) body();  // warmup
    check(cudaStreamSynchronize(stream), "warmup");
    std::vector<double> times;
    for (int r = 0; r < 15; ++r) {
        check(cudaEventRecord(start, stream), "cudaEventRecord");
        body();
        check(cudaEventRecord(stop, stream), "cudaEventRecord");
        check(cudaEventSynchronize(stop), "cudaEventSynchronize");
        float ms = 0.0f;
        check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
        times.push_back(1e3 * ms / steps);
    }
    std::sort(times.begin(), times.end());
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    return times[times.size() / 2];
}

}  // namespace

int main() try {
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    std::printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount,
                prop.l2CacheSize >> 20);
    cudaStream_t stream;
    check(cudaStreamCreate(&stream), "cudaStreamCreate");
    std::mt19937 rng(1);
    std::vector<Layer> layers;
    for (size_t l = 0; l < kLayers; ++l) layers.push_back(make_layer(rng));
    bf16* o = nullptr;
    check(cudaMalloc(&o, kMaxN * kH * kD * sizeof(bf16)), "cudaMalloc");
    // Unfused recurrence inputs (already conv'ed, normalised q/k, g, beta) for the context row.
    float *q = device_random<float>(kMaxN * kH * kD, rng, 0.09f),
          *k = device_random<float>(kMaxN * kH * kD, rng, 0.09f),
          *v = device_random<float>(kMaxN * kH * kD, rng, 1.0f),
          *g = device_random<float>(kMaxN * kH * kD, rng, 0.1f, -0.5f),
          *beta = device_random<float>(kMaxN * kH, rng, 0.1f, 0.5f),
          *o32 = device_random<float>(kMaxN * kH * kD, rng, 1.0f);

    const double state_bytes = 2.0 * kH * kD * kD * sizeof(float);
    const double weight_bytes = 2.0 * kH * kD * kD * sizeof(bf16);
    const float scale = 1.0f / std::sqrt(float(kD));

    // step(i): step i of a sequence that walks the layers, alternating each layer's buffers.
    auto fused = [&](size_t n, size_t split, size_t layer_count) {
        return [&, n, split, layer_count](size_t i) {
            const Layer& L = layers[i % layer_count];
            const int from = (i / layer_count) % 2;
            kl::cuda::kda_decode_step_with_split(L.proj, kStride, n, kH, kD, scale, L.w,
                                                 L.state[from], L.conv[from], L.state[1 - from],
                                                 L.conv[1 - from], o, split, stream);
        };
    };
    auto recurrent_only = [&](size_t n, size_t layer_count) {
        return [&, n, layer_count](size_t i) {
            kl::cuda::kda_recurrent(q, k, v, g, beta, n, kH, kD, scale,
                                    layers[i % layer_count].state[0], o32, stream);
        };
    };

    std::printf("\nKDA decode step, H=%zu D=%zu kernel=%zu; state %.1f MB read+write per step\n",
                kH, kD, kKernel, state_bytes / 1e6);
    std::printf("%-22s %-6s %-5s %2s %6s %10s %12s %10s %14s\n", "kernel", "mode", "cache", "n",
                "split", "us/step", "state GB/s", "% of copy", "all bytes GB/s");
    auto report = [&](const char* name, const char* mode, const char* cache, size_t n,
                      const char* split, double us) {
        const double all = state_bytes + weight_bytes;
        std::printf("%-22s %-6s %-5s %2zu %6s %10.2f %12.0f %9.0f%% %14.0f\n", name, mode, cache, n,
                    split, us, state_bytes / us * 1e-3,
                    100.0 * state_bytes / us * 1e6 / kCopyBytesPerSecond, all / us * 1e-3);
    };
    auto time_both = [&](const char* name, const char* split_name, size_t n,
                         const std::function<std::function<void(size_t)>(size_t)>& make_step) {
        for (size_t layer_count : {size_t(1), kLayers}) try {
                const char* cache = layer_count == 1 ? "hot" : "cold";
                auto step = make_step(layer_count);
                const int launches = 240;
                const double stream_us = median_us_per_step(
                    [&] {
                        for (int i = 0; i < launches; ++i) step(i);
                    },
                    launches, stream);
                report(name, "stream", cache, n, split_name, stream_us);
                cudaGraph_t graph;
                cudaGraphExec_t exec;
                check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), "capture");
                for (size_t i = 0; i < kStepsPerGraph; ++i) step(i);
                check(cudaStreamEndCapture(stream, &graph), "capture");
                check(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
                const double graph_us = median_us_per_step(
                    [&] { check(cudaGraphLaunch(exec, stream), "cudaGraphLaunch"); },
                    kStepsPerGraph, stream);
                report(name, "graph", cache, n, split_name, graph_us);
                cudaGraphExecDestroy(exec);
                cudaGraphDestroy(graph);
            } catch (const std::exception& e) {  // kl::Error from the launcher, or CUDA's
                cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
                cudaStreamIsCapturing(stream, &capturing);
                if (capturing != cudaStreamCaptureStatusNone) {
                    cudaGraph_t broken = nullptr;
                    cudaStreamEndCapture(stream, &broken);
                    if (broken) cudaGraphDestroy(broken);
                }
                cudaGetLastError();
                std::printf("%-22s split %s n=%zu: FAILED: %s\n", name, split_name, n, e.what());
            }
    };
    for (size_t n : {1, 4}) {
        for (size_t split : {0, 1, 2, 4, 8}) {
            char split_name[8];
            std::snprintf(split_name, sizeof split_name, split ? "%zu" : "auto", split);
            time_both("fused kda_decode_step", split_name, n,
                      [&, n, split](size_t lc) { return fused(n, split, lc); });
        }
        time_both("kda_recurrent only", "-", n,
                  [&, n](size_t lc) { return recurrent_only(n, lc); });
    }
    check(cudaDeviceSynchronize(), "final sync");
    std::printf("\nfloor: %.2f us/step for the state bytes at %.1f TB/s\n",
                state_bytes / kCopyBytesPerSecond * 1e6, kCopyBytesPerSecond / 1e12);
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "kda_decode_bench: %s\n", e.what());
    return 1;
}
