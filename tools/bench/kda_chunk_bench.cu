// Benchmark of the KDA chunked prefill (backends/cuda/kda_chunk.cu) and of the one-token
// recurrence (kda_recurrent at T = 1, the decode-step core).
//   kda_chunk_bench               random inputs: B=1, H=32, D=128, T 1K..64K; H=64/96 at 8K;
//                                 then the T=1 step
//   kda_chunk_bench --decode      only the T=1 step line
//   kda_chunk_bench --once T      two prefills at H=32, D=128 (for a profiler)
//   kda_chunk_bench --inputs DIR  DIR/shape.txt ("T H D scale") and raw little-endian fp32
//                                 q k v g [T,H,D], beta [T,H], state [H,D,D] (.bin); times
//                                 the prefill, writes DIR/o_ours.bin and DIR/state_ours.bin
// Timing: CUDA events, warm-up first, median of repeats; input sets rotate where one set
// would fit in L2 (50 MB), so repeats do not measure the cache.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "backends/cuda/cuda_util.h"
#include "backends/cuda/ops.h"

namespace {

using kl::cuda::check;
using kl::cuda::DeviceBuffer;

struct Problem {
    size_t T, H, D;
    float scale;
};

// One set of device inputs and outputs for a problem.
struct DeviceSet {
    DeviceBuffer q, k, v, g, beta, state, o;
    explicit DeviceSet(const Problem& p)
        : q(p.T * p.H * p.D * 4),
          k(p.T * p.H * p.D * 4),
          v(p.T * p.H * p.D * 4),
          g(p.T * p.H * p.D * 4),
          beta(p.T * p.H * 4),
          state(p.H * p.D * p.D * 4),
          o(p.T * p.H * p.D * 4) {}
};

void upload(DeviceBuffer& dst, const std::vector<float>& src) {
    check(cudaMemcpy(dst.as<float>(), src.data(), src.size() * 4, cudaMemcpyHostToDevice),
          "upload");
}

// Counter-based random numbers on the device (the host would take tens of seconds at 64K
// tokens): uniform in (0, 1) from a hash of (seed, index), normal by Box-Muller.
__device__ float hash_uniform(uint32_t seed, size_t i) {
    uint64_t x = (uint64_t(seed) << 40) ^ i;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return (static_cast<uint32_t>(x >> 40) + 0.5f) * (1.0f / 16777216.0f);
}

// kind 0: N(0, 1) * a + b; kind 1: U(0, 1) * a + b.
__global__ void fill_kernel(float* x, size_t n, uint32_t seed, int kind, float a, float b) {
    const size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
    if (i >= n) return;
    float r = hash_uniform(seed, i);
    if (kind == 0) r = sqrtf(-2.0f * logf(r)) * cospif(2.0f * hash_uniform(seed ^ 0x9e3779b9u, i));
    x[i] = r * a + b;
}

void fill(DeviceBuffer& dst, uint32_t seed, int kind, float a, float b) {
    const size_t n = dst.bytes() / 4;
    fill_kernel<<<static_cast<unsigned>((n + 255) / 256), 256>>>(dst.as<float>(), n, seed, kind, a,
                                                                 b);
    kl::cuda::check_launch("fill");
}

// Random inputs as the model feeds them: q, k unit rows, g = -0.5 U(0, 1) (mild to moderate
// decay), beta in (0, 1), state0 ~ N(0, 0.1).
void fill_random(DeviceSet& s, const Problem& p, uint32_t seed) {
    fill(s.q, seed * 8 + 0, 0, 1.0f, 0.0f);
    fill(s.k, seed * 8 + 1, 0, 1.0f, 0.0f);
    kl::cuda::l2_normalize_heads(s.q.as<float>(), p.T * p.H, p.D, nullptr);
    kl::cuda::l2_normalize_heads(s.k.as<float>(), p.T * p.H, p.D, nullptr);
    fill(s.v, seed * 8 + 2, 0, 1.0f, 0.0f);
    fill(s.g, seed * 8 + 3, 1, -0.5f, 0.0f);
    fill(s.beta, seed * 8 + 4, 1, 1.0f, 0.0f);
    fill(s.state, seed * 8 + 5, 0, 0.1f, 0.0f);
    check(cudaDeviceSynchronize(), "fill_random");
}

// Median milliseconds of `op(rep)` over `reps` timed calls after `warmup` calls.
double median_ms(int warmup, int reps, const std::function<void(int)>& op) {
    for (int i = 0; i < warmup; ++i) op(i);
    cudaEvent_t start, stop;
    check(cudaEventCreate(&start), "cudaEventCreate");
    check(cudaEventCreate(&stop), "cudaEventCreate");
    std::vector<double> times;
    for (int i = 0; i < reps; ++i) {
        check(cudaEventRecord(start), "cudaEventRecord");
        op(i);
        check(cudaEventRecord(stop), "cudaEventRecord");
        check(cudaEventSynchronize(stop), "cudaEventSynchronize");
        float ms = 0.0f;
        check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
        times.push_back(ms);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}

void prefill(DeviceSet& s, const Problem& p, void* ws) {
    kl::cuda::kda_chunked_prefill(s.q.as<float>(), s.k.as<float>(), s.v.as<float>(),
                                  s.g.as<float>(), s.beta.as<float>(), p.T, p.H, p.D, p.scale,
                                  s.state.as<float>(), s.o.as<float>(), ws, nullptr);
}

double time_prefill(const Problem& p) {
    const size_t set_bytes = p.T * p.H * p.D * 4 * 5;
    const int sets = static_cast<int>(std::clamp<size_t>(200000000 / set_bytes, 1, 4));
    std::vector<DeviceSet> all;
    for (int i = 0; i < sets; ++i) {
        all.emplace_back(p);
        fill_random(all.back(), p, 100 + i);
    }
    DeviceBuffer ws(kl::cuda::kda_chunk_workspace_bytes(p.T, p.H, p.D));
    const int reps = p.T >= 32768 ? 10 : 30;
    const double ms = median_ms(3, reps, [&](int i) { prefill(all[i % sets], p, ws.as<void>()); });
    check(cudaDeviceSynchronize(), "prefill");
    return ms;
}

// The T = 1 step: back-to-back launches of kda_recurrent, per-call time (launch included).
double time_decode_step_us(size_t H, size_t D) {
    const Problem p{1, H, D, 1.0f / std::sqrt(float(D))};
    constexpr int kSets = 8;  // 8 × 64 KB states per head: 16 MB at H=32, rotated
    std::vector<DeviceSet> all;
    for (int i = 0; i < kSets; ++i) {
        all.emplace_back(p);
        fill_random(all.back(), p, 200 + i);
    }
    constexpr int kCalls = 100;
    const double ms = median_ms(2, 15, [&](int) {
        for (int c = 0; c < kCalls; ++c) {
            DeviceSet& s = all[c % kSets];
            kl::cuda::kda_recurrent(s.q.as<float>(), s.k.as<float>(), s.v.as<float>(),
                                    s.g.as<float>(), s.beta.as<float>(), 1, H, D, p.scale,
                                    s.state.as<float>(), s.o.as<float>(), nullptr);
        }
    });
    check(cudaDeviceSynchronize(), "kda_recurrent");
    return ms * 1000.0 / kCalls;
}

std::vector<float> read_floats(const std::string& path, size_t n) {
    std::vector<float> x(n);
    std::ifstream f(path, std::ios::binary);
    if (!f.read(reinterpret_cast<char*>(x.data()), n * 4))
        kl::fail(kl::Status::Io, "cannot read " + std::to_string(n) + " floats from " + path);
    return x;
}

void write_floats(const std::string& path, const DeviceBuffer& src, size_t n) {
    std::vector<float> x(n);
    check(cudaMemcpy(x.data(), src.as<float>(), n * 4, cudaMemcpyDeviceToHost), "download");
    std::ofstream f(path, std::ios::binary);
    if (!f.write(reinterpret_cast<const char*>(x.data()), n * 4))
        kl::fail(kl::Status::Io, "cannot write " + path);
}

int run_inputs(const std::string& dir) {
    Problem p{};
    std::ifstream shape(dir + "/shape.txt");
    if (!(shape >> p.T >> p.H >> p.D >> p.scale)) {
        std::fprintf(stderr, "cannot read T H D scale from %s/shape.txt\n", dir.c_str());
        return 1;
    }
    const size_t n = p.T * p.H * p.D;
    DeviceSet s(p);
    upload(s.q, read_floats(dir + "/q.bin", n));
    upload(s.k, read_floats(dir + "/k.bin", n));
    upload(s.v, read_floats(dir + "/v.bin", n));
    upload(s.g, read_floats(dir + "/g.bin", n));
    upload(s.beta, read_floats(dir + "/beta.bin", p.T * p.H));
    const std::vector<float> state0 = read_floats(dir + "/state.bin", p.H * p.D * p.D);
    DeviceBuffer ws(kl::cuda::kda_chunk_workspace_bytes(p.T, p.H, p.D));
    // Timed runs evolve the state; the run whose outputs are kept starts from state0.
    upload(s.state, state0);
    const double ms =
        median_ms(3, p.T >= 32768 ? 10 : 30, [&](int) { prefill(s, p, ws.as<void>()); });
    upload(s.state, state0);
    prefill(s, p, ws.as<void>());
    check(cudaDeviceSynchronize(), "prefill");
    write_floats(dir + "/o_ours.bin", s.o, n);
    write_floats(dir + "/state_ours.bin", s.state, p.H * p.D * p.D);
    std::printf("ours T=%zu H=%zu D=%zu ms=%.4f\n", p.T, p.H, p.D, ms);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        if (argc == 3 && std::strcmp(argv[1], "--inputs") == 0) return run_inputs(argv[2]);
        if (argc == 2 && std::strcmp(argv[1], "--decode") == 0) {
            std::printf("decode_step_us %.3f\n", time_decode_step_us(32, 128));
            return 0;
        }
        if (argc == 3 && std::strcmp(argv[1], "--once") == 0) {
            const Problem p{std::stoul(argv[2]), 32, 128, 1.0f / std::sqrt(128.0f)};
            DeviceSet set(p);
            fill_random(set, p, 1);
            DeviceBuffer ws(kl::cuda::kda_chunk_workspace_bytes(p.T, p.H, p.D));
            for (int i = 0; i < 2; ++i) prefill(set, p, ws.as<void>());
            check(cudaDeviceSynchronize(), "prefill");
            return 0;
        }
        if (argc != 1) {
            std::fprintf(stderr, "usage: %s [--decode | --once T | --inputs DIR]\n", argv[0]);
            return 2;
        }
        cudaDeviceProp prop{};
        check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
        std::printf("kda_chunked_prefill on %s (fp32 in/out, fp16 tensor-core operands)\n",
                    prop.name);
        std::printf("%6s %4s %4s %10s %12s\n", "T", "H", "D", "ms", "Mtok/s");
        struct Shape {
            size_t T, H;
        };
        std::vector<Shape> shapes;
        for (size_t T : {1024, 4096, 8192, 16384, 32768, 65536}) shapes.push_back({T, 32});
        shapes.push_back({8192, 64});
        shapes.push_back({8192, 96});
        for (const Shape& s : shapes) {
            const Problem p{s.T, s.H, 128, 1.0f / std::sqrt(128.0f)};
            const double ms = time_prefill(p);
            std::printf("%6zu %4zu %4d %10.4f %12.2f\n", s.T, s.H, 128, ms,
                        s.T / (ms * 1e-3) / 1e6);
        }
        std::printf("kda_recurrent T=1 (decode step core), H=32 D=128: %.3f us per call\n",
                    time_decode_step_us(32, 128));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
