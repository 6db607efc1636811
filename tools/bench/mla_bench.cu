// MLA attention timings at the real shapes (heads 32, nope 128, rope 64, v 128, rank 512):
// decode T=1 at 1K..1M cache rows (GB/s on the cache bytes, rows * 576 * 2, against the
// 3.0 TB/s copy ceiling of kernels.md) and prefill pieces of 256 queries (TFLOP/s on the
// absorbed form's 2 * heads * (576 + 512) FLOPs per visible (query, row) pair), plus a whole
// 32K-token prefill as 128 pieces; then the expanded form's kernel (mla_prefill.cu) on a
// 4096-query piece against the absorbed form on the same piece (TFLOP/s on the FLOPs each
// form does: 2 * heads * (qk + v) per pair expanded, without the keys' decompression GEMM,
// which gemm_bench covers). cudaEvent timing, warmup, median of repeats; contexts
// that fit in L2 rotate over 4 cache regions 300 MB apart.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "backends/cuda/cuda_util.h"
#include "backends/cuda/ops.h"
#include "median_timing.h"

namespace {

using kl::bench::median_ms;
using kl::cuda::bf16;
using kl::cuda::check;

constexpr size_t kHeads = 32, kNope = 128, kRope = 64, kV = 128, kRank = 512;
constexpr size_t kWidth = kRank + kRope;
constexpr size_t kRegionRows = size_t(1) << 18;  // 302 MB per rotation region
constexpr size_t kTotalRows = (size_t(1) << 20) + 256;
constexpr double kCopyTBs = 3.0;
constexpr size_t kPrefillT = 4096;  // the backend's prefill piece (kPiece)

__global__ void fill_random_bf16(bf16* x, size_t n, uint32_t seed, float scale) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
         i += size_t(gridDim.x) * blockDim.x) {
        uint32_t h = uint32_t(i) * 2654435761u ^ seed ^ uint32_t(i >> 32) * 40503u;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
        x[i] = __float2bfloat16((float(h) * (1.0f / 4294967296.0f) - 0.5f) * 2.0f * scale);
    }
}

__global__ void fill_random_f32(float* x, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
         i += size_t(gridDim.x) * blockDim.x) {
        uint32_t h = uint32_t(i) * 2654435761u ^ seed;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
        x[i] = (float(h) * (1.0f / 4294967296.0f) - 0.5f) * 3.0f;
    }
}

struct Bench {
    kl::cuda::DeviceBuffer cache{kTotalRows * kWidth * sizeof(bf16)};
    kl::cuda::DeviceBuffer kv_b{kHeads * (kNope + kV) * kRank * sizeof(bf16)};
    kl::cuda::DeviceBuffer q{kPrefillT * kHeads * (kNope + kRope) * sizeof(float)};
    kl::cuda::DeviceBuffer out{kPrefillT * kHeads * kV * sizeof(float)};
    kl::cuda::DeviceBuffer kv{kl::cuda::kMlaPrefillChunkKeys * kHeads * (kNope + kV) *
                              sizeof(bf16)};
    kl::cuda::DeviceBuffer state{kPrefillT * kHeads * sizeof(float2)};
    kl::cuda::DeviceBuffer vt{kHeads * kV * kl::cuda::kMlaPrefillChunkKeys * sizeof(bf16)};
    kl::cuda::DeviceBuffer pos{64 * sizeof(int32_t)};  // one slot per call in flight
    kl::cuda::DeviceBuffer work{
        kl::cuda::mla_workspace_bytes(kPrefillT, kHeads, kRank, kRope, kV, kTotalRows)};
    Bench() {
        fill_random_bf16<<<1024, 256>>>(cache.as<bf16>(), kTotalRows * kWidth, 1, 2.0f);
        fill_random_bf16<<<1024, 256>>>(kv_b.as<bf16>(), kHeads * (kNope + kV) * kRank, 2, 0.2f);
        fill_random_f32<<<1024, 256>>>(q.as<float>(), kPrefillT * kHeads * (kNope + kRope), 3);
        fill_random_bf16<<<1024, 256>>>(
            kv.as<bf16>(), kl::cuda::kMlaPrefillChunkKeys * kHeads * (kNope + kV), 4, 2.0f);
        check(cudaDeviceSynchronize(), "fill");
    }
    void set_positions(const std::vector<int32_t>& values) {
        check(cudaMemcpy(pos.as<int32_t>(), values.data(), values.size() * sizeof(int32_t),
                         cudaMemcpyHostToDevice),
              "pos");
    }
    // One chunk of the expanded form: T queries at pos over the keys [key_begin, +keys).
    void chunk(size_t T, size_t pos, size_t key_begin, size_t keys, bool first, bool last) {
        kl::cuda::mla_prefill_chunk(q.as<float>(), T, pos, cache.as<bf16>(), kv.as<bf16>(),
                                    key_begin, keys, first, last, kHeads, kNope, kRope, kV, kRank,
                                    state.as<float2>(), out.as<float>(), nullptr, vt.as<bf16>());
    }
    void call(size_t T, int slot, size_t region, size_t max_rows, cudaStream_t stream = nullptr) {
        kl::cuda::mla_attention(q.as<float>(), T, pos.as<int32_t>() + slot, max_rows,
                                cache.as<bf16>() + region * kRegionRows * kWidth, kv_b.as<bf16>(),
                                kHeads, kNope, kRope, kV, kRank, work.as<void>(), out.as<float>(),
                                stream);
    }
};

}  // namespace

int main() {
    Bench b;
    std::printf("MLA attention, heads %zu nope %zu rope %zu v %zu rank %zu (absorbed form)\n",
                kHeads, kNope, kRope, kV, kRank);
    // Decode runs inside a captured graph: the graph column is the figure that counts; the
    // eager column adds the host's four launches, which short contexts cannot hide.
    std::printf("\n%-10s %10s %10s %12s %10s\n", "decode", "eager us", "graph us", "cache GB/s",
                "of 3.0TB/s");
    cudaStream_t capture;
    check(cudaStreamCreateWithFlags(&capture, cudaStreamNonBlocking), "stream");
    for (size_t rows : {size_t(1024), size_t(32768), size_t(131072), size_t(1) << 20}) {
        const bool rotate = rows <= kRegionRows;
        const size_t max_rows = rotate ? kRegionRows : kTotalRows;
        b.set_positions(std::vector<int32_t>(64, int32_t(rows - 1)));
        const double eager = median_ms(8, 41, [&](int i) {
            b.call(1, 0, rotate ? size_t(i % 4) : 0, max_rows);
        });
        cudaGraphExec_t exec[4];
        for (int r = 0; r < 4; ++r) {
            cudaGraph_t graph;
            check(cudaStreamBeginCapture(capture, cudaStreamCaptureModeGlobal), "capture");
            b.call(1, 0, rotate ? size_t(r) : 0, max_rows, capture);
            check(cudaStreamEndCapture(capture, &graph), "capture");
            check(cudaGraphInstantiate(&exec[r], graph, 0), "instantiate");
            cudaGraphDestroy(graph);
        }
        const double ms = median_ms(8, 41, [&](int i) {
            check(cudaGraphLaunch(exec[i % 4], nullptr), "graph launch");
        });
        for (auto& e : exec) cudaGraphExecDestroy(e);
        const double gbs = rows * kWidth * 2.0 / (ms * 1e-3) / 1e9;
        std::printf("%-10zu %10.2f %10.2f %12.1f %9.1f%%\n", rows, eager * 1e3, ms * 1e3, gbs,
                    100.0 * gbs / (kCopyTBs * 1e3));
    }

    std::printf("\n%-10s %12s %12s\n", "prefill@", "ms/256 q", "TFLOP/s");
    const double per_pair = 2.0 * kHeads * (kWidth + kRank);
    for (size_t pos : {size_t(0), size_t(8192), size_t(32768)}) {
        b.set_positions(std::vector<int32_t>(64, int32_t(pos)));
        const double ms = median_ms(2, 9, [&](int) { b.call(256, 0, 0, kTotalRows); });
        const double pairs = 256.0 * pos + 256.0 * 257.0 / 2.0;
        std::printf("%-10zu %12.3f %12.1f\n", pos, ms, pairs * per_pair / (ms * 1e-3) / 1e12);
    }

    // A 32K-token prompt as the backend runs it: 128 pieces of 256 at pos 0, 256, ...
    std::vector<int32_t> starts(64);
    double total_ms = 0.0, total_pairs = 0.0;
    for (int half = 0; half < 2; ++half) {
        for (int i = 0; i < 64; ++i) starts[i] = (half * 64 + i) * 256;
        b.set_positions(starts);
        total_ms += median_ms(1, 1, [&](int) {
            for (int i = 0; i < 64; ++i) b.call(256, i, 0, kTotalRows);
        });
        for (int i = 0; i < 64; ++i) total_pairs += 256.0 * starts[i] + 256.0 * 257.0 / 2.0;
    }
    std::printf("\n32K-token prefill (128 x 256): %.1f ms of MLA attention per layer, %.1f TFLOP/s\n",
                total_ms, total_pairs * per_pair / (total_ms * 1e-3) / 1e12);

    // A 4096-query piece at position 0 (causal, one chunk), and a chunk of 4096 keys that
    // every query of a piece at 4096 sees whole (a middle chunk of a long prompt).
    const double expanded_pair = 2.0 * kHeads * (kNope + kRope + kV);
    const double causal = kPrefillT * (kPrefillT + 1.0) / 2.0,
                 whole = double(kPrefillT) * kPrefillT;
    b.set_positions(std::vector<int32_t>(64, 0));
    const double absorbed_ms = median_ms(2, 9, [&](int) { b.call(kPrefillT, 0, 0, kTotalRows); });
    const double causal_ms =
        median_ms(2, 9, [&](int) { b.chunk(kPrefillT, 0, 0, kPrefillT, true, true); });
    const double whole_ms =
        median_ms(2, 9, [&](int) { b.chunk(kPrefillT, kPrefillT, 0, kPrefillT, true, false); });
    std::printf("\n%-34s %10s %10s\n", "4096-query piece", "ms", "TFLOP/s");
    std::printf("%-34s %10.3f %10.1f\n", "absorbed, pos 0", absorbed_ms,
                causal * per_pair / (absorbed_ms * 1e-3) / 1e12);
    std::printf("expanded kernel on %s\n",
                kl::cuda::mla_prefill_wgmma_usable(kNope, kRope, kV) ? "wgmma" : "mma.sync");
    std::printf("%-34s %10.3f %10.1f\n", "expanded kernel, pos 0", causal_ms,
                causal * expanded_pair / (causal_ms * 1e-3) / 1e12);
    std::printf("%-34s %10.3f %10.1f\n", "expanded kernel, 4096 keys all seen", whole_ms,
                whole * expanded_pair / (whole_ms * 1e-3) / 1e12);
    return 0;
}
