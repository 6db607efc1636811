// Prefill's dense linears (Gemm::run) at the 48B model's shapes, one prefill piece of rows
// (default 4096; `gemm_bench N` for another), per weight format: bf16 (cuBLASLt), FP8 on the
// FP8 tensor cores (W8A8: x quantized per row and 128 columns, cuBLASLt block scaling), FP8
// and INT4 expanded to bf16 first (the path of shapes W8A8 does not take). Median of 9 calls
// after 2 warm-ups; ms and TFLOP/s next to each other.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "backends/cuda/cuda_util.h"
#include "backends/cuda/gemm.h"
#include "backends/cuda/ops.h"
#include "median_timing.h"

namespace {

using kl::cuda::bf16;
using kl::cuda::check;
using kl::cuda::DeviceBuffer;
using kl::cuda::WeightCode;

struct Shape {
    const char* name;
    size_t in, out;
};

// The 48B model's linears that prefill runs through Gemm (configs/kimi-linear-48b-a3b.json).
constexpr Shape kShapes[] = {
    {"kda q/k/v (each)", 2304, 4096},   {"kda o_proj", 4096, 2304},
    {"mla q_proj", 2304, 6144},         {"mla kv_a", 2304, 576},
    {"mla o_proj", 4096, 2304},         {"dense mlp gate/up", 2304, 9216},
    {"dense mlp down", 9216, 2304},     {"shared expert gate/up", 2304, 1024},
    {"shared expert down", 1024, 2304},
};

DeviceBuffer random_values(size_t n, uint32_t seed, float scale) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> host(n);
    for (float& v : host) v = d(rng);
    DeviceBuffer b(n * sizeof(float));
    check(cudaMemcpy(b.as<void>(), host.data(), b.bytes(), cudaMemcpyHostToDevice), "upload");
    return b;
}

}  // namespace

int main(int argc, char** argv) {
    const size_t n = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 4096;
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, 0), "properties");
    std::printf("device: %s; %zu rows of x (bf16), y fp32\n\n", prop.name, n);
    std::printf("%-22s %6s %6s %-14s %9s %9s\n", "linear", "in", "out", "weights", "ms", "TFLOP/s");
    for (const Shape& s : kShapes) {
        DeviceBuffer x32 = random_values(n * s.in, 1, 1.0f);
        DeviceBuffer x(n * s.in * sizeof(bf16));
        kl::cuda::cast_to_bf16(x32.as<float>(), n * s.in, x.as<bf16>(), nullptr);
        DeviceBuffer w32 = random_values(s.out * s.in, 2, 0.02f);
        DeviceBuffer y(n * s.out * sizeof(float));
        const double flop = 2.0 * double(n) * double(s.in) * double(s.out);
        struct Variant {
            const char* name;
            WeightCode code;
            bool w8a8;
        };
        for (const Variant& v :
             {Variant{"bf16", WeightCode::Bf16, false}, Variant{"fp8 W8A8", WeightCode::Fp8, true},
              Variant{"fp8 expanded", WeightCode::Fp8, false},
              Variant{"int4 expanded", WeightCode::Int4, false}}) {
            const size_t scale_rows =
                v.code == WeightCode::Fp8 ? kl::cuda::quant_scale_cols(s.out) : s.out;
            const size_t data_bytes = v.code == WeightCode::Bf16  ? s.out * s.in * 2
                                      : v.code == WeightCode::Fp8 ? s.out * s.in
                                                                  : s.out * ((s.in + 7) / 8) * 4;
            DeviceBuffer data(data_bytes),
                scales(scale_rows * kl::cuda::quant_scale_cols(s.in) * 4);
            if (v.code == WeightCode::Bf16)
                kl::cuda::cast_to_bf16(w32.as<float>(), s.out * s.in, data.as<bf16>(), nullptr);
            else
                kl::cuda::quantize_on_device(w32.as<float>(), s.out, s.in, v.code, data.as<void>(),
                                             scales.as<float>(), nullptr);
            const kl::cuda::QMatrix w{v.code, data.as<void>(),
                                      v.code == WeightCode::Bf16 ? nullptr : scales.as<float>()};
            kl::cuda::Gemm gemm;
            gemm.reserve_dequantized(s.out * s.in);
            if (v.w8a8) {
                gemm.prepare_fp8(w, s.out, s.in);
                gemm.reserve_fp8_activations(n, s.in, s.out);
            }
            const bool fp8_path = gemm.runs_fp8(w, n, s.in, s.out, s.out);
            if (fp8_path != v.w8a8) {
                std::printf("%-22s %6zu %6zu %-14s %9s\n", s.name, s.in, s.out, v.name,
                            "(not W8A8: expanded, Gemm::runs_fp8)");
                continue;
            }
            const double ms = kl::bench::median_ms(2, 9, [&](int) {
                gemm.run(x.as<bf16>(), n, s.in, w, s.out, y.as<float>(), s.out, nullptr);
            });
            std::printf("%-22s %6zu %6zu %-14s %9.3f %9.1f\n", s.name, s.in, s.out, v.name, ms,
                        flop / ms / 1e9);
        }
    }
    return 0;
}
