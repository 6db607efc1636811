// Shared helpers of the GPU tests: device buffers, random inputs, bf16 rounding.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/ops.h"
#include "core/backend.h"
#include "core/quantize.h"
#include "core/safetensors.h"
#include "tiny_model.h"

namespace {

inline bool have_gpu() {
    return kl::cuda::backend_provider().device_count() > 0;
}

// The logits a state holds (read_logits), as a vector.
inline std::vector<float> logits_of(const kl::Backend& b, const kl::BackendState& st,
                                    size_t vocab) {
    std::vector<float> out(vocab);
    b.read_logits(st, out.data());
    return out;
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

// x [n, in] (bf16 values) -> what W8A8 multiplies in its place: each row quantized to FP8 in
// groups of 128 columns as kl::quantize does a [1, in] tensor, then dequantized
// (kl::cuda::quantize_activations_fp8's rule).
inline void w8a8_activations(std::vector<float>& x, size_t n, size_t in) {
    for (size_t t = 0; t < n; ++t) {
        const kl::QuantizedTensor q =
            kl::quantize(kl::WeightFormat::Fp8, x.data() + t * in, 1, int64_t(in));
        kl::dequantize(q, x.data() + t * in);
    }
}

// A weight [rows, cols] on the device in `code` (backends/cuda/ops.h "weight formats"),
// made from v, which becomes the values the device weight stands for (bf16-rounded, or
// kl::dequantize of kl::quantize): the CPU reference then uses exactly those.
struct DevWeight {
    DevWeight(std::vector<float>& v, size_t rows, size_t cols, kl::cuda::WeightCode code)
        : code(code) {
        if (code == kl::cuda::WeightCode::Bf16) {
            const std::vector<uint16_t> b = to_bf16(v);
            std::vector<uint8_t> bytes(b.size() * 2);
            std::memcpy(bytes.data(), b.data(), bytes.size());
            data = std::make_unique<Dev<uint8_t>>(bytes);
            return;
        }
        const kl::QuantizedTensor q = kl::quantize(
            code == kl::cuda::WeightCode::Fp8 ? kl::WeightFormat::Fp8 : kl::WeightFormat::Int4,
            v.data(), int64_t(rows), int64_t(cols));
        kl::dequantize(q, v.data());
        data = std::make_unique<Dev<uint8_t>>(q.data);
        scales = std::make_unique<Dev<float>>(q.scales);
    }
    kl::cuda::QMatrix matrix() const {
        return kl::cuda::QMatrix{code, data->ptr, scales ? scales->ptr : nullptr};
    }
    kl::cuda::WeightCode code;
    std::unique_ptr<Dev<uint8_t>> data;
    std::unique_ptr<Dev<float>> scales;
};

inline const char* code_name(kl::cuda::WeightCode code) {
    return code == kl::cuda::WeightCode::Bf16  ? "bf16"
           : code == kl::cuda::WeightCode::Fp8 ? "fp8"
                                               : "int4";
}

// A tiny model of make_tiny_model's `preset` whose first `dense_layers` layers have a dense
// MLP (first_k_dense_replace), with any further config.json edits (text, replacement), made
// with `seed`: the dense path of the GPU backend end to end.
inline std::string dense_model_dir(const std::string& preset, int dense_layers, int seed,
                                   std::vector<std::pair<std::string, std::string>> edits = {}) {
    std::string config;
    {
        std::ifstream in(kl::test::tiny_model_dir("--preset " + preset + " --seed 1") +
                         "/config.json");
        config.assign(std::istreambuf_iterator<char>(in), {});
    }
    edits.insert(edits.begin(), {"\"first_k_dense_replace\": 1",
                                 "\"first_k_dense_replace\": " + std::to_string(dense_layers)});
    for (const auto& edit : edits) {
        EXPECT_NE(config.find(edit.first), std::string::npos) << edit.first;
        if (config.find(edit.first) != std::string::npos)
            config.replace(config.find(edit.first), edit.first.size(), edit.second);
    }
    // A fresh file per call: tiny_model_dir keeps one folder per argument list.
    const std::string path = kl::test::temp_dir() + "/dense_" + preset + ".json";
    std::ofstream(path) << config;
    return kl::test::tiny_model_dir("--config " + path + " --seed " + std::to_string(seed));
}

}  // namespace
