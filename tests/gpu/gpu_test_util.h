// Shared helpers of the GPU tests: device buffers, random inputs, bf16 rounding.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <random>
#include <vector>

#include "backends/cuda/cuda_backend.h"
#include "core/safetensors.h"

namespace {

inline bool have_gpu() {
    return kl::cuda::backend_provider().device_count() > 0;
}

template <typename T>
struct Dev {
    explicit Dev(const std::vector<T>& host) : n(host.size()) {
        cudaMalloc(&ptr, n * sizeof(T));
        cudaMemcpy(ptr, host.data(), n * sizeof(T), cudaMemcpyHostToDevice);
    }
    explicit Dev(size_t count) : n(count) { cudaMalloc(&ptr, n * sizeof(T)); }
    ~Dev() { cudaFree(ptr); }
    std::vector<T> get() const {
        std::vector<T> host(n);
        cudaMemcpy(host.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost);
        return host;
    }
    T* ptr = nullptr;
    size_t n;
};

inline std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

inline std::vector<uint16_t> to_bf16(std::vector<float>& v) {  // rounds v in place too
    std::vector<uint16_t> b(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
        b[i] = kl::f32_to_bf16(v[i]);
        v[i] = kl::bf16_to_f32(b[i]);
    }
    return b;
}

}  // namespace
