// The batched decode kernels of CudaBackend::forward_batch at the 48B model's shapes, for
// n = 1, 8, 64 sessions per call, each session with its own buffers:
//  - kda_decode_step_batch (H=32, D=128, conv kernel 4): one layer's step of n sessions;
//    bytes = every session's state and conv state read and written + the layer's f_b, g_b
//    and conv weights once;
//  - mla_attention_batch (heads 32, rank 512, rope 64): one query per session over its own
//    cache of 1K or 32K rows; bytes = the sessions' cache rows + kv_b once.
// Eager calls on a stream, cudaEvent timing, median of repeats after warmup; GB/s against
// the 3.0 TB/s copy ceiling of docs/design/kernels.md. At n = 1 the KDA state (2 MB) stays
// in L2 across repeats, so that row is the latency floor, not a bandwidth figure.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "backends/cuda/cuda_util.h"
#include "backends/cuda/ops.h"
#include "median_timing.h"

namespace {

using kl::cuda::bf16;
using kl::cuda::check;
using kl::cuda::DeviceBuffer;

constexpr double kCopyBytesPerSecond = 3.0e12;
constexpr size_t kH = 32, kD = 128, kKernel = 4;
constexpr size_t kStride = 3 * kH * kD + 2 * kD + kH;
constexpr size_t kHeads = 32, kNope = 128, kRope = 64, kV = 128, kRank = 512;
constexpr size_t kWidth = kRank + kRope;

__global__ void fill_random(float* f32, bf16* bf, size_t n, uint32_t seed, float scale,
                            float offset) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
         i += size_t(gridDim.x) * blockDim.x) {
        uint32_t h = uint32_t(i) * 2654435761u ^ seed ^ uint32_t(i >> 32) * 40503u;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
        const float v = (float(h) * (1.0f / 4294967296.0f) - 0.5f) * 2.0f * scale + offset;
        if (f32) f32[i] = v;
        if (bf) bf[i] = __float2bfloat16(v);
    }
}

DeviceBuffer random_f32(size_t n, uint32_t seed, float scale, float offset = 0.0f) {
    DeviceBuffer b(n * sizeof(float));
    fill_random<<<1024, 256>>>(b.as<float>(), nullptr, n, seed, scale, offset);
    return b;
}

DeviceBuffer random_bf16(size_t n, uint32_t seed, float scale, float offset = 0.0f) {
    DeviceBuffer b(n * sizeof(bf16));
    fill_random<<<1024, 256>>>(nullptr, b.as<bf16>(), n, seed, scale, offset);
    return b;
}

template <typename T>
DeviceBuffer upload(const std::vector<T>& host) {
    DeviceBuffer b(host.size() * sizeof(T));
    check(cudaMemcpy(b.as<void>(), host.data(), b.bytes(), cudaMemcpyHostToDevice), "upload");
    return b;
}

void print_row(const char* what, size_t n, const char* extra, double us, double bytes) {
    const double gbs = bytes / (us * 1e-6) / 1e9;
    std::printf("%-6s n=%-3zu %-8s %10.1f us %10.1f MB %9.1f GB/s %6.1f%%\n", what, n, extra, us,
                bytes / 1e6, gbs, 100.0 * gbs * 1e9 / kCopyBytesPerSecond);
}

void bench_kda(size_t n) {
    const size_t HD = kH * kD, state = kH * kD * kD, conv = 3 * (kKernel - 1) * HD;
    const size_t each = state + conv;
    DeviceBuffer conv_q = random_bf16(HD * kKernel, 1, 0.5f),
                 conv_k = random_bf16(HD * kKernel, 2, 0.5f);
    DeviceBuffer conv_v = random_bf16(HD * kKernel, 3, 0.5f);
    DeviceBuffer f_b = random_bf16(HD * kD, 4, 0.09f), g_b = random_bf16(HD * kD, 5, 0.09f);
    DeviceBuffer a_log = random_f32(kH, 6, 0.5f, -1.0f), dt_bias = random_f32(HD, 7, 0.5f);
    DeviceBuffer o_norm = random_bf16(kD, 8, 0.1f, 1.0f);
    const kl::cuda::KdaDecodeWeights w{conv_q.as<bf16>(), conv_k.as<bf16>(),
                                       conv_v.as<bf16>(), kKernel,
                                       f_b.as<bf16>(),    g_b.as<bf16>(),
                                       a_log.as<float>(), dt_bias.as<float>(),
                                       o_norm.as<bf16>(), 1e-5f};
    DeviceBuffer proj = random_f32(n * kStride, 9, 1.0f);
    DeviceBuffer in = random_f32(n * each, 10, 0.3f), out(n * each * sizeof(float));
    DeviceBuffer o(n * HD * sizeof(bf16));
    std::vector<const float*> ins(n);
    std::vector<float*> outs(n);
    for (size_t i = 0; i < n; ++i)
        ins[i] = in.as<float>() + i * each, outs[i] = out.as<float>() + i * each;
    DeviceBuffer d_ins = upload(ins), d_outs = upload(outs);
    check(cudaDeviceSynchronize(), "fill");
    const double us = 1000.0 * kl::bench::median_ms(5, 31, [&](int) {
                          kl::cuda::kda_decode_step_batch(
                              proj.as<float>(), kStride, n, kH, kD, 1.0f / std::sqrt(float(kD)), w,
                              d_ins.as<const float* const>(), d_outs.as<float* const>(), 0, state,
                              o.as<bf16>(), 0, nullptr);
                      });
    const double bytes = 2.0 * n * each * sizeof(float) + 2.0 * HD * kD * sizeof(bf16) +
                         3.0 * HD * kKernel * sizeof(bf16) + n * kStride * sizeof(float);
    print_row("kda", n, "", us, bytes);
}

void bench_mla(size_t n, size_t rows) {
    DeviceBuffer cache = random_bf16(n * rows * kWidth, 11, 2.0f);
    DeviceBuffer kv_b = random_bf16(kHeads * (kNope + kV) * kRank, 12, 0.2f);
    DeviceBuffer q = random_f32(n * kHeads * (kNope + kRope), 13, 1.5f);
    DeviceBuffer out(n * kHeads * kV * sizeof(float));
    DeviceBuffer work(kl::cuda::mla_batch_workspace_bytes(256, kHeads, kRank, kRope, kV, rows));
    std::vector<const bf16*> caches(n);
    for (size_t i = 0; i < n; ++i) caches[i] = cache.as<bf16>() + i * rows * kWidth;
    DeviceBuffer d_caches = upload(caches);
    DeviceBuffer d_pos = upload(std::vector<int32_t>(n, int32_t(rows - 1)));
    check(cudaDeviceSynchronize(), "fill");
    const double us = 1000.0 * kl::bench::median_ms(5, 31, [&](int) {
                          kl::cuda::mla_attention_batch(
                              q.as<float>(), n, d_pos.as<int32_t>(),
                              d_caches.as<const bf16* const>(), rows, kv_b.as<bf16>(), kHeads,
                              kNope, kRope, kV, kRank, work.as<void>(), out.as<float>(), nullptr);
                      });
    const double bytes = double(n) * rows * kWidth * sizeof(bf16) +
                         double(kHeads) * (kNope + kV) * kRank * sizeof(bf16);
    char context[16];
    std::snprintf(context, sizeof context, "%zuK", rows / 1024);
    print_row("mla", n, context, us, bytes);
}

}  // namespace

int main() {
    std::printf("batched decode kernels, eager, median of 31 (GB/s of the 3.0 TB/s ceiling)\n");
    for (size_t n : {1, 8, 64}) bench_kda(n);
    for (size_t rows : {size_t(1024), size_t(32768)})
        for (size_t n : {1, 8, 64}) bench_mla(n, rows);
    return 0;
}
