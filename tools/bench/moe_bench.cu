// Prefill MoE experts at the real shapes (hidden 2304, inter 1024, 256 experts, top-8, random
// routing): moe_experts_grouped (auto tile height, then each forced height, then per phase)
// next to the per-expert cuBLASLt loop the backend ran before (host-sorted rows; the host
// sort and sync are left out of its time, which flatters it). Prints ms per call (median of
// repeats after warm-up, cudaEvent timing, inputs rotated over 3 sets), TFLOP/s on
// 2 n k 3 hidden inter FLOPs, and the two floors: FLOPs at 790 TFLOP/s and the used experts'
// weight bytes at 3.0 TB/s (docs/design/kernels.md ceilings).
// First the decode experts (moe_experts_gemv, m = 1 and 4 tokens, top-8 + the shared expert)
// with L2 flushed before each call (a decode step streams 26 layers' experts, so none are
// cached): ms, the slots' weight bytes and GB/s against the H200's 4.3 TB/s copy rate.
// `moe_bench decode` runs only that part, `moe_bench grouped` only the grouped experts;
// `--tokens N[,N...]` picks their sizes and `--tile 32|64|128` the "auto" row's tile height
// (for a profiler: its first launches are that row's warm-up).
// `--format fp8|int4` runs the grouped kernel and the decode experts on quantized experts
// (random codes, one scale; the decode bytes count the codes); the cuBLASLt loop then runs on
// their values dequantized to bf16, so the agreement check still compares equal weights, and
// the byte floor counts the codes.
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backends/cuda/cuda_util.h"
#include "backends/cuda/gemm.h"
#include "backends/cuda/moe_grouped_tuning.h"
#include "backends/cuda/ops.h"

namespace {

using namespace kl::cuda;

constexpr size_t kHidden = 2304, kInter = 1024, kExperts = 256, kTopK = 8;
constexpr int kSets = 3, kWarmup = 2, kRepeats = 15;
constexpr double kPeakTflops = 790.0, kCopyTBs = 3.0;

__device__ uint32_t hash_index(size_t i, uint32_t seed) {
    uint32_t h = uint32_t(i) * 0x9E3779B1u ^ (uint32_t(i >> 32) + seed) * 0x85EBCA77u;
    h ^= h >> 15, h *= 0x2C1B3C6Du, h ^= h >> 12, h *= 0x297A2D39u, h ^= h >> 15;
    return h;
}

__global__ void fill_random_bf16(bf16* p, size_t n, uint32_t seed, float scale) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
         i += size_t(gridDim.x) * blockDim.x) {
        const uint32_t h = hash_index(i, seed);
        p[i] = __float2bfloat16((float(h) * 2.3283064e-10f * 2.0f - 1.0f) * scale);  // uniform
    }
}

void fill(bf16* p, size_t n, uint32_t seed, float scale) {
    fill_random_bf16<<<1024, 256>>>(p, n, seed, scale);
    check_launch("fill");
}

// Random code bytes; for FP8 the two NaN codes (S.1111.111) become the largest finite ones.
__global__ void fill_random_codes(uint8_t* p, size_t n, uint32_t seed, bool fp8) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
         i += size_t(gridDim.x) * blockDim.x) {
        uint8_t code = uint8_t(hash_index(i, seed) >> 24);
        if (fp8 && (code & 0x7F) == 0x7F) code ^= 1;
        p[i] = code;
    }
}

__global__ void fill_value(float* p, size_t n, float value) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
         i += size_t(gridDim.x) * blockDim.x)
        p[i] = value;
}

// out = bf16(code * scale) of a quantized [rows, cols] matrix (ops.h's formats, cols % 8 == 0),
// the values the grouped kernel computes with.
__global__ void dequantize_bf16(const uint8_t* codes, const float* scales, size_t rows, size_t cols,
                                WeightCode code, bf16* out) {
    const size_t scale_cols = (cols + kQuantBlock - 1) / kQuantBlock;
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < rows * cols;
         i += size_t(gridDim.x) * blockDim.x) {
        const size_t r = i / cols, c = i % cols;
        float value;
        if (code == WeightCode::Fp8) {
            const __half_raw h = __nv_cvt_fp8_to_halfraw(codes[i], __NV_E4M3);
            value =
                __half2float(__half(h)) * scales[(r / kQuantBlock) * scale_cols + c / kQuantBlock];
        } else {
            const uint8_t byte = codes[r * (cols / 2) + c / 2];
            value = float(int((byte >> (4 * (c % 2))) & 0xF) - 8) *
                    scales[r * scale_cols + c / kQuantBlock];
        }
        out[i] = __float2bfloat16_rn(value);
    }
}

// The experts' codes and scales in `code` (random), and their values into bf16 `w` (the
// [kExperts][w1, w3, w2] buffer the bf16 paths read): the device tables for the grouped kernel.
struct QuantExperts {
    DeviceBuffer codes, scales, tables;  // tables: w1, w3, w2, s1, s3, s2 [kExperts] each
    ExpertWeights weights;
    size_t code_bytes = 0;  // per expert, all three matrices
};

QuantExperts quantized_experts(WeightCode code, bf16* w) {
    QuantExperts q;
    const size_t elems = kInter * kHidden;
    const size_t matrix_bytes = code == WeightCode::Fp8 ? elems : elems / 2;
    // Scales per matrix: [inter, hidden] then [hidden, inter] shapes.
    auto scale_count = [&](size_t rows, size_t cols) {
        const size_t scale_rows = code == WeightCode::Fp8 ? quant_scale_cols(rows) : rows;
        return scale_rows * quant_scale_cols(cols);
    };
    const size_t s_in = scale_count(kInter, kHidden), s_out = scale_count(kHidden, kInter);
    q.code_bytes = 3 * matrix_bytes;
    q.codes = DeviceBuffer(kExperts * q.code_bytes);
    q.scales = DeviceBuffer(kExperts * (2 * s_in + s_out) * sizeof(float));
    fill_random_codes<<<1024, 256>>>(q.codes.as<uint8_t>(), q.codes.bytes(), 91,
                                     code == WeightCode::Fp8);
    check_launch("fill codes");
    // |value| <= 0.03, as the bf16 experts' uniform fill.
    const float scale = code == WeightCode::Fp8 ? 0.03f / 448.0f : 0.03f / 8.0f;
    fill_value<<<1024, 256>>>(q.scales.as<float>(), q.scales.bytes() / 4, scale);
    check_launch("fill scales");
    std::vector<const void*> tables(6 * kExperts);
    for (size_t e = 0; e < kExperts; ++e)
        for (size_t m = 0; m < 3; ++m) {
            const uint8_t* codes = q.codes.as<uint8_t>() + e * q.code_bytes + m * matrix_bytes;
            const float* scales = q.scales.as<float>() + e * (2 * s_in + s_out) + m * s_in;
            const size_t rows = m < 2 ? kInter : kHidden, cols = m < 2 ? kHidden : kInter;
            dequantize_bf16<<<1024, 256>>>(codes, scales, rows, cols, code,
                                           w + (e * 3 + m) * elems);
            check_launch("dequantize");
            tables[m * kExperts + e] = codes;
            tables[(3 + m) * kExperts + e] = scales;
        }
    q.tables = DeviceBuffer(tables.size() * sizeof(void*));
    check(cudaMemcpy(q.tables.as<void>(), tables.data(), q.tables.bytes(), cudaMemcpyHostToDevice),
          "tables");
    const void** t = q.tables.as<const void*>();
    q.weights.code = code;
    q.weights.w1 = t, q.weights.w3 = t + kExperts, q.weights.w2 = t + 2 * kExperts;
    q.weights.s1 = reinterpret_cast<const float* const*>(t + 3 * kExperts);
    q.weights.s3 = reinterpret_cast<const float* const*>(t + 4 * kExperts);
    q.weights.s2 = reinterpret_cast<const float* const*>(t + 5 * kExperts);
    return q;
}

struct Inputs {  // one rotation set
    DeviceBuffer x, chosen, weights;
    std::vector<int32_t> host_chosen;
    std::vector<float> host_weights;
};

// Writing 256 MB evicts the 50-60 MB L2 of an H100/H200.
void flush_l2(int i) {
    static DeviceBuffer flush(256u << 20);
    check(cudaMemsetAsync(flush.as<void>(), i & 0xFF, flush.bytes()), "flush");
}

// Median of kRepeats event-timed calls after kWarmup, rotating the input set per call; with
// cold, L2 is flushed before each call (outside the timing).
template <typename F>
double time_ms(F&& call, bool cold = false) {
    cudaEvent_t start, stop;
    check(cudaEventCreate(&start), "event");
    check(cudaEventCreate(&stop), "event");
    for (int i = 0; i < kWarmup; ++i) call(i % kSets);
    std::vector<float> ms;
    for (int i = 0; i < kRepeats; ++i) {
        if (cold) flush_l2(i);
        check(cudaEventRecord(start), "record");
        call(i % kSets);
        check(cudaEventRecord(stop), "record");
        check(cudaEventSynchronize(stop), "sync");
        float t = 0;
        check(cudaEventElapsedTime(&t, start, stop), "elapsed");
        ms.push_back(t);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
}

// The decode router at m = 1 and 4 (256 x 2304 bf16, top-8, L2 flushed): the fused
// moe_route_decode against the two launches it replaces (gemv_bf16, then moe_route).
void bench_decode_router() {
    DeviceBuffer router(kExperts * kHidden * sizeof(bf16)), bias(kExperts * sizeof(float));
    DeviceBuffer x(4 * kHidden * sizeof(bf16)), logits(4 * kExperts * sizeof(float));
    DeviceBuffer chosen(4 * kTopK * 4), weights(4 * kTopK * 4), done(sizeof(unsigned));
    fill(router.as<bf16>(), kExperts * kHidden, 77, 0.05f);
    fill(x.as<bf16>(), 4 * kHidden, 78, 1.0f);
    check(cudaMemset(bias.as<void>(), 0, bias.bytes()), "bias");
    check(cudaMemset(done.as<void>(), 0, done.bytes()), "counter");
    std::printf("\n%-6s %-22s %10s\n", "n", "decode router", "ms");
    for (size_t n : {1, 4}) {
        const double fused = time_ms([&](int) {
            moe_route_decode(x.as<bf16>(), n, kHidden, router.as<bf16>(), bias.as<float>(),
                             kExperts, kTopK, true, 2.5f, 1, 1, logits.as<float>(),
                             done.as<unsigned>(), chosen.as<int32_t>(), weights.as<float>(),
                             nullptr);
        }, true);
        const double two = time_ms([&](int) {
            gemv_bf16(x.as<bf16>(), n, kHidden, router.as<bf16>(), kExperts, logits.as<float>(),
                      nullptr);
            moe_route(logits.as<float>(), bias.as<float>(), n, kExperts, kTopK, true, 2.5f, 1, 1,
                      chosen.as<int32_t>(), weights.as<float>(), nullptr);
        }, true);
        std::printf("%-6zu %-22s %10.4f\n%-6zu %-22s %10.4f\n", n, "fused", fused, n,
                    "gemv + moe_route", two);
    }
}

// The decode experts at m = 1 and 4: each token's top-8 distinct random experts (weights
// 0.05-0.5) plus the shared expert (expert 255's matrices stand in for it).
void bench_decode(const std::vector<const bf16*>& p1, const std::vector<const bf16*>& p3,
                  const std::vector<const bf16*>& p2, const DeviceBuffer& d1,
                  const DeviceBuffer& d3, const DeviceBuffer& d2, const QuantExperts& quant) {
    constexpr double kH200CopyTBs = 4.3;
    const bool quantized = quant.weights.code != WeightCode::Bf16;
    std::printf("\n%-6s %-22s %10s %10s %9s %7s\n", "n",
                quantized ? "decode experts (codes)" : "decode experts", "ms", "MB", "GB/s",
                "%4.3TB");
    std::mt19937 rng(11);
    DecodeSharedExpert shared{{WeightCode::Bf16, p1[kExperts - 1], nullptr},
                              {WeightCode::Bf16, p3[kExperts - 1], nullptr},
                              {WeightCode::Bf16, p2[kExperts - 1], nullptr}};
    ExpertWeights experts;
    experts.w1 = d1.as<const void*>(), experts.w3 = d3.as<const void*>();
    experts.w2 = d2.as<const void*>();
    double expert_bytes = 3.0 * kHidden * kInter * sizeof(bf16);
    if (quantized) {  // the codes the quantized kernels read (expert 255 stands in for the shared)
        experts = quant.weights;
        std::vector<const void*> tables(6 * kExperts);
        check(cudaMemcpy(tables.data(), quant.tables.as<void>(), quant.tables.bytes(),
                         cudaMemcpyDeviceToHost),
              "tables");
        const size_t last = kExperts - 1;
        for (size_t m = 0; m < 3; ++m)
            (m == 0   ? shared.w1
             : m == 1 ? shared.w3
                      : shared.w2) =
                QMatrix{quant.weights.code, tables[m * kExperts + last],
                        static_cast<const float*>(tables[(3 + m) * kExperts + last])};
        expert_bytes = double(quant.code_bytes);
    }
    for (size_t n : {1, 4}) {
        const size_t slots = n * (kTopK + 1);
        std::vector<Inputs> sets(kSets);
        for (int s = 0; s < kSets; ++s) {
            Inputs& in = sets[s];
            in.x = DeviceBuffer(n * kHidden * sizeof(bf16));
            fill(in.x.as<bf16>(), n * kHidden, 500 + uint32_t(n) + s, 1.0f);
            std::vector<int32_t> ids(kExperts - 1);
            std::iota(ids.begin(), ids.end(), 0);
            std::uniform_real_distribution<float> uw(0.05f, 0.5f);
            for (size_t t = 0; t < n; ++t)
                for (size_t i = 0; i < kTopK; ++i) {
                    std::swap(ids[i], ids[i + rng() % (ids.size() - i)]);
                    in.host_chosen.push_back(ids[i]);
                    in.host_weights.push_back(uw(rng));
                }
            in.chosen = DeviceBuffer(n * kTopK * 4);
            in.weights = DeviceBuffer(n * kTopK * 4);
            check(cudaMemcpy(in.chosen.as<void>(), in.host_chosen.data(), in.chosen.bytes(),
                             cudaMemcpyHostToDevice),
                  "chosen");
            check(cudaMemcpy(in.weights.as<void>(), in.host_weights.data(), in.weights.bytes(),
                             cudaMemcpyHostToDevice),
                  "weights");
        }
        DeviceBuffer act(slots * kInter * sizeof(float)), out(n * kHidden * sizeof(float));
        const double ms = time_ms([&](int s) {
            const Inputs& in = sets[s];
            moe_experts_gemv(in.x.as<bf16>(), n, kHidden, kInter, kTopK, in.chosen.as<int32_t>(),
                             in.weights.as<float>(), experts, shared, false, act.as<float>(),
                             out.as<float>(), nullptr);
        }, true);
        // Bytes every slot streams (at n = 4 the shared expert's repeats may hit L2).
        const double bytes = double(slots) * expert_bytes;
        const double gbs = bytes / (ms * 1e-3) / 1e9;
        std::printf("%-6zu %-22s %10.4f %10.1f %9.1f %6.1f%%\n", n, "top-8 + shared", ms,
                    bytes / 1e6, gbs, 100.0 * gbs / (kH200CopyTBs * 1e3));
    }
    bench_decode_router();
}

}  // namespace

int main(int argc, char** argv) {
    try {
        bool decode_only = false, grouped_only = false;
        WeightCode code = WeightCode::Bf16;
        std::vector<size_t> sizes = {256, 1024, 4096, 8192};
        int auto_tile = 0;
        for (int i = 1; i < argc; ++i) {
            const std::string arg = argv[i];
            const std::string format = arg == "--format" && i + 1 < argc ? argv[++i] : "";
            const bool has_value = i + 1 < argc;
            if (arg == "decode") {
                decode_only = true;
            } else if (arg == "grouped") {
                grouped_only = true;
            } else if (arg == "--tokens" && has_value) {
                sizes.clear();
                const std::string list = argv[++i];
                for (size_t at = 0; at < list.size();) {
                    const size_t end = std::min(list.find(',', at), list.size());
                    const long value = std::strtol(list.substr(at, end - at).c_str(), nullptr, 10);
                    if (value <= 0 || value > (1 << 20)) {
                        std::fprintf(stderr, "moe_bench: --tokens takes counts in 1..1048576\n");
                        return 2;
                    }
                    sizes.push_back(size_t(value));
                    at = end + 1;
                }
            } else if (arg == "--tile" && has_value) {
                auto_tile = std::atoi(argv[++i]);
                if (auto_tile != 32 && auto_tile != 64 && auto_tile != 128) {
                    std::fprintf(stderr, "moe_bench: --tile takes 32, 64 or 128\n");
                    return 2;
                }
            } else if (format == "fp8" || format == "int4" || format == "bf16") {
                code = format == "fp8"    ? WeightCode::Fp8
                       : format == "int4" ? WeightCode::Int4
                                          : WeightCode::Bf16;
            } else {
                std::fprintf(stderr,
                             "usage: moe_bench [decode|grouped] [--format bf16|fp8|int4] "
                             "[--tokens N[,N...]] [--tile 32|64|128]\n");
                return 2;
            }
        }
        const char* format_name = code == WeightCode::Fp8    ? "fp8"
                                  : code == WeightCode::Int4 ? "int4"
                                                             : "bf16";
        cudaDeviceProp prop{};
        check(cudaGetDeviceProperties(&prop, 0), "properties");
        std::printf("device: %s, %d SMs; grouped experts in %s\n", prop.name,
                    prop.multiProcessorCount, format_name);
        const size_t w_elems = kInter * kHidden;
        DeviceBuffer w_all(kExperts * 3 * w_elems * sizeof(bf16));
        std::vector<const bf16*> p1, p3, p2;
        for (size_t e = 0; e < kExperts; ++e) {
            bf16* base = w_all.as<bf16>() + e * 3 * w_elems;
            fill(base, 3 * w_elems, uint32_t(17 + e), 0.03f);
            p1.push_back(base), p3.push_back(base + w_elems), p2.push_back(base + 2 * w_elems);
        }
        QuantExperts quant;  // overwrites w_all with its values
        if (code != WeightCode::Bf16) quant = quantized_experts(code, w_all.as<bf16>());
        DeviceBuffer d1(kExperts * sizeof(bf16*)), d3(kExperts * sizeof(bf16*)),
            d2(kExperts * sizeof(bf16*));
        check(cudaMemcpy(d1.as<void>(), p1.data(), d1.bytes(), cudaMemcpyHostToDevice), "ptrs");
        check(cudaMemcpy(d3.as<void>(), p3.data(), d3.bytes(), cudaMemcpyHostToDevice), "ptrs");
        check(cudaMemcpy(d2.as<void>(), p2.data(), d2.bytes(), cudaMemcpyHostToDevice), "ptrs");
        if (!grouped_only) bench_decode(p1, p3, p2, d1, d3, d2, quant);
        if (decode_only) return 0;
        Gemm gemm;
        std::mt19937 rng(5);

        std::printf("\n%-6s %-22s %10s %9s %8s\n", "n", "variant", "ms", "TFLOP/s", "%peak");
        std::vector<std::string> summary;
        for (size_t n : sizes) {
            const size_t slots = n * kTopK;
            std::vector<Inputs> sets(kSets);
            for (int s = 0; s < kSets; ++s) {
                Inputs& in = sets[s];
                in.x = DeviceBuffer(n * kHidden * sizeof(bf16));
                fill(in.x.as<bf16>(), n * kHidden, 1000 + uint32_t(n) + s, 1.0f);
                in.host_chosen.resize(slots);
                in.host_weights.resize(slots);
                std::vector<int32_t> ids(kExperts);
                std::iota(ids.begin(), ids.end(), 0);
                std::uniform_real_distribution<float> uw(0.05f, 0.5f);
                for (size_t t = 0; t < n; ++t) {
                    for (size_t i = 0; i < kTopK; ++i) {  // k distinct experts per token
                        std::swap(ids[i], ids[i + rng() % (kExperts - i)]);
                        in.host_chosen[t * kTopK + i] = ids[i];
                        in.host_weights[t * kTopK + i] = uw(rng);
                    }
                }
                in.chosen = DeviceBuffer(slots * 4);
                in.weights = DeviceBuffer(slots * 4);
                check(cudaMemcpy(in.chosen.as<void>(), in.host_chosen.data(), slots * 4,
                                 cudaMemcpyHostToDevice),
                      "chosen");
                check(cudaMemcpy(in.weights.as<void>(), in.host_weights.data(), slots * 4,
                                 cudaMemcpyHostToDevice),
                      "weights");
            }
            DeviceBuffer out(n * kHidden * sizeof(float)), out_ref(n * kHidden * sizeof(float));
            DeviceBuffer ws(moe_grouped_workspace_bytes(n, kHidden, kInter, kExperts, kTopK));
            const double flops = 2.0 * slots * 3.0 * kHidden * kInter;
            const double floor_math = flops / (kPeakTflops * 1e12) * 1e3;
            const double expert_bytes =
                code == WeightCode::Bf16 ? 3.0 * w_elems * 2 : double(quant.code_bytes);
            const double floor_bytes = kExperts * expert_bytes / (kCopyTBs * 1e12) * 1e3;
            auto row = [&](const char* variant, double ms, bool whole) {
                if (whole)
                    std::printf("%-6zu %-22s %10.3f %9.1f %7.1f%%\n", n, variant, ms,
                                flops / ms * 1e-9, 100.0 * flops / ms * 1e-9 / kPeakTflops);
                else
                    std::printf("%-6zu %-22s %10.3f\n", n, variant, ms);
            };
            ExpertWeights experts = quant.weights;
            if (code == WeightCode::Bf16) {
                experts.w1 = d1.as<const void*>();
                experts.w3 = d3.as<const void*>();
                experts.w2 = d2.as<const void*>();
            }
            auto ours = [&](int set, int tile_m, unsigned phases) {
                const Inputs& in = sets[set];
                moe_experts_grouped_tuned(in.x.as<bf16>(), n, kHidden, kInter, kExperts, kTopK,
                                          in.chosen.as<int32_t>(), in.weights.as<float>(), experts,
                                          ws.as<void>(), out.as<float>(), nullptr, tile_m, phases);
            };
            const double auto_ms = time_ms([&](int s) { ours(s, auto_tile, 0xF); });
            row(auto_tile ? "grouped (--tile)" : "grouped (auto)", auto_ms, true);
            for (int tile_m : {32, 64, 128}) {
                const std::string label = "grouped tile_m " + std::to_string(tile_m);
                row(label.c_str(), time_ms([&](int s) { ours(s, tile_m, 0xF); }), true);
            }
            // Phases on set 0 alone, so the workspace's grouping matches the GEMMs' inputs.
            ours(0, 0, 0xF);
            const char* phase_names[] = {"  phase grouping", "  phase gate/up", "  phase down",
                                         "  phase combine"};
            for (int p = 0; p < 4; ++p)
                row(phase_names[p], time_ms([&](int) { ours(0, 0, 1u << p); }), false);

            // The per-expert cuBLASLt loop on host-sorted rows.
            std::vector<std::vector<int32_t>> rows(kSets);
            std::vector<std::vector<float>> row_w(kSets);
            std::vector<std::vector<size_t>> begin(kSets);
            std::vector<DeviceBuffer> d_rows, d_roww;
            for (int s = 0; s < kSets; ++s) {
                begin[s].assign(kExperts + 1, 0);
                for (int32_t e : sets[s].host_chosen) ++begin[s][e + 1];
                for (size_t e = 0; e < kExperts; ++e) begin[s][e + 1] += begin[s][e];
                std::vector<size_t> fill_at(begin[s].begin(), begin[s].end() - 1);
                rows[s].resize(slots), row_w[s].resize(slots);
                for (size_t slot = 0; slot < slots; ++slot) {
                    const size_t at = fill_at[sets[s].host_chosen[slot]]++;
                    rows[s][at] = int32_t(slot / kTopK);
                    row_w[s][at] = sets[s].host_weights[slot];
                }
                d_rows.emplace_back(slots * 4);
                d_roww.emplace_back(slots * 4);
                check(cudaMemcpy(d_rows[s].as<void>(), rows[s].data(), slots * 4,
                                 cudaMemcpyHostToDevice),
                      "rows");
                check(cudaMemcpy(d_roww[s].as<void>(), row_w[s].data(), slots * 4,
                                 cudaMemcpyHostToDevice),
                      "rows");
            }
            DeviceBuffer gathered(slots * kHidden * 2), e_gate(slots * kInter * 4),
                e_up(slots * kInter * 4), e_act(slots * kInter * 2), e_out(slots * kHidden * 4);
            auto loop = [&](int s, float* dst) {
                const Inputs& in = sets[s];
                for (size_t e = 0; e < kExperts; ++e) {
                    const size_t count = begin[s][e + 1] - begin[s][e];
                    if (count == 0) continue;
                    const int32_t* idx = d_rows[s].as<int32_t>() + begin[s][e];
                    gather_rows_bf16(in.x.as<bf16>(), idx, count, kHidden, gathered.as<bf16>(),
                                     nullptr);
                    gemm.run(gathered.as<bf16>(), count, kHidden, QMatrix{WeightCode::Bf16, p1[e], nullptr}, kInter,
                             e_gate.as<float>(), kInter,
                             nullptr);
                    gemm.run(gathered.as<bf16>(), count, kHidden, QMatrix{WeightCode::Bf16, p3[e], nullptr}, kInter,
                             e_up.as<float>(), kInter,
                             nullptr);
                    silu_mul_to_bf16(e_gate.as<float>(), e_up.as<float>(), count * kInter,
                                     e_act.as<bf16>(), nullptr);
                    gemm.run(e_act.as<bf16>(), count, kInter, QMatrix{WeightCode::Bf16, p2[e], nullptr}, kHidden,
                             e_out.as<float>(), kHidden,
                             nullptr);
                    scatter_add_weighted(e_out.as<float>(), idx,
                                         d_roww[s].as<float>() + begin[s][e], count, kHidden, dst,
                                         nullptr);
                }
            };
            const double lt_ms = time_ms([&](int s) { loop(s, out_ref.as<float>()); });
            row("cuBLASLt per expert", lt_ms, true);
            std::printf(
                "%-6zu floors: math %.3f ms, weight bytes %.3f ms; grouped / cuBLASLt = "
                "%.2fx faster\n",
                n, floor_math, floor_bytes, lt_ms / auto_ms);

            // Agreement of the two on set 0 from zeroed outputs (both are bf16-act paths).
            check(cudaMemset(out.as<void>(), 0, out.bytes()), "zero");
            check(cudaMemset(out_ref.as<void>(), 0, out_ref.bytes()), "zero");
            ours(0, 0, 0xF);
            loop(0, out_ref.as<float>());
            std::vector<float> a(n * kHidden), b(n * kHidden);
            check(cudaMemcpy(a.data(), out.as<void>(), out.bytes(), cudaMemcpyDeviceToHost), "get");
            check(cudaMemcpy(b.data(), out_ref.as<void>(), out.bytes(), cudaMemcpyDeviceToHost),
                  "get");
            double worst = 0, scale = 1e-30;
            bool finite = true;
            for (size_t i = 0; i < a.size(); ++i) {
                finite = finite && std::isfinite(a[i]);
                worst = std::max(worst, double(std::fabs(a[i] - b[i])));
                scale = std::max(scale, double(std::fabs(b[i])));
            }
            std::printf("%-6zu grouped vs cuBLASLt: max|diff|/max|ref| = %.2e%s\n", n,
                        worst / scale, finite ? "" : " (NON-FINITE)");
            char line[200];
            std::snprintf(
                line, sizeof line,
                "n=%-5zu grouped %.3f ms (%.0f TFLOP/s)  cuBLASLt %.3f ms  floors %.3f/%.3f ms", n,
                auto_ms, flops / auto_ms * 1e-9, lt_ms, floor_math, floor_bytes);
            summary.push_back(line);
        }
        std::printf("\nsummary (%s, grouped experts in %s)\n", prop.name, format_name);
        for (const auto& s : summary) std::printf("%s\n", s.c_str());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "moe_bench: %s\n", e.what());
        return 1;
    }
}
