// Event timing shared by the CUDA op benchmarks: the median of repeated calls, each
// bracketed by its own pair of events on the default stream.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "backends/cuda/cuda_util.h"

namespace kl::bench {

// Median milliseconds of `reps` calls of f(i) after `warmup` untimed ones.
template <typename F>
double median_ms(int warmup, int reps, F f) {
    for (int i = 0; i < warmup; ++i) f(i);
    std::vector<cudaEvent_t> ev(2 * reps);
    for (auto& e : ev) kl::cuda::check(cudaEventCreate(&e), "event");
    for (int i = 0; i < reps; ++i) {
        kl::cuda::check(cudaEventRecord(ev[2 * i]), "record");
        f(i);
        kl::cuda::check(cudaEventRecord(ev[2 * i + 1]), "record");
    }
    kl::cuda::check(cudaDeviceSynchronize(), "sync");
    std::vector<float> ms(reps);
    for (int i = 0; i < reps; ++i) cudaEventElapsedTime(&ms[i], ev[2 * i], ev[2 * i + 1]);
    for (auto& e : ev) cudaEventDestroy(e);
    std::sort(ms.begin(), ms.end());
    return ms[reps / 2];
}

}  // namespace kl::bench
