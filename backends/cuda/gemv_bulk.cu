// One-token GEMV (bf16, FP8, INT4) whose weight rows reach shared memory by Hopper's bulk
// asynchronous copies (cp.async.bulk), opt-in (KL_CUDA_DECODE_BULK=1|gemv) until measured.
//
// Why: the warp-per-row GEMVs (gemv.cu) keep their weight bytes in flight in registers, so
// the bytes an SM has in flight are bounded by its registers and occupancy, and nothing is in
// flight before a block is resident and has issued its loads (docs/perf/decode-occupancy.md).
// Here one producer warp per block streams the block's rows into a ring of shared-memory
// stages (mbarrier-signalled, no registers held), and eight consumer warps take a stage's
// eight rows. A block owns an even share of the rows, so a small GEMV's whole share (an
// o_proj's ~17 rows of 4 KB) is in flight at once; and the producer issues its first stages
// before waiting for the previous kernel (weights depend on nothing, chained_launch.cuh), so
// the weights' trip from memory overlaps the kernels before.
//
// Each consumer lane sums its pieces of its row in the warp-per-row kernels' order (bf16:
// gemv_row.cuh's 8-value pieces; quantized: the 16-value chunks at 16 l, 16 l + 512, ...,
// each chunk's dot product times its block's scale, as the narrow kernel): the same sums.
// A stage is 8 rows; the ring takes 96 KB (two blocks of successive GEMVs fit an SM), more
// for long bf16 rows (two stages, up to 200 KB), else the caller's kernel runs.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "bulk_copy.cuh"
#include "chained_launch.cuh"
#include "cuda_util.h"
#include "gemv_row.cuh"
#include "ops.h"

namespace kl::cuda {
namespace {

constexpr int kConsumers = 8;                    // warps; row w of a stage is warp w's
constexpr int kThreads = (kConsumers + 1) * 32;  // and one producer warp
constexpr int kMaxStages = 8;
constexpr int kBatch = 8;  // chunks a lane reads at once: a 4096-long row in one batch
constexpr size_t kRingBytes = 96 * 1024;  // two blocks of successive GEMVs fit one SM
constexpr size_t kMaxRingBytes = 200 * 1024;

// Bytes of a row of `in` values in code C.
template <WeightCode C>
__host__ __device__ constexpr size_t row_bytes_of(int in) {
    return C == WeightCode::Bf16  ? 2 * size_t(in)
           : C == WeightCode::Fp8 ? size_t(in)
                                  : size_t(in) / 2;
}

// Row . x of a quantized row in shared memory, this lane's part: the 16-value chunks at
// 16 lane, 16 lane + 512, ... in order, each chunk's dot product times its block's scale.
template <WeightCode C>
__device__ __forceinline__ float quantized_row_dot(const unsigned char* wrow, const bf16* x, int in,
                                                   const float* srow, int lane) {
    float acc = 0.0f;
    for (int base = lane * kChunkValues; base < in; base += kBatch * 32 * kChunkValues) {
        QChunk<C> q[kBatch];  // a batch's reads issued before its first multiply
        float scale[kBatch];
#pragma unroll
        for (int i = 0; i < kBatch; ++i) {
            const int c = base + i * 32 * kChunkValues;
            if (c < in) q[i] = shared_qchunk<C>(wrow, c), scale[i] = __ldg(srow + c / kQuantBlock);
        }
#pragma unroll
        for (int i = 0; i < kBatch; ++i) {
            const int c = base + i * 32 * kChunkValues;
            if (c < in) {
                float v[kChunkValues], xv[kChunkValues];
                qchunk_values<C>(q[i], v);
                load_x16_bf16(x + c, xv);
                acc += dot16(v, xv) * scale[i];
            }
        }
    }
    return acc;
}

template <WeightCode C>
__global__ void __launch_bounds__(kThreads)
    gemv_bulk_kernel(const bf16* x, int in, QMatrix w, int out, float* y, int stages) {
    extern __shared__ __align__(128) unsigned char ring[];
    __shared__ BulkRing<kMaxStages> bars;
    const size_t row_bytes = row_bytes_of<C>(in);
    const size_t stage_bytes = row_bytes * kConsumers;
    const int r0 = static_cast<int>(static_cast<long long>(out) * blockIdx.x / gridDim.x);
    const int r1 = static_cast<int>(static_cast<long long>(out) * (blockIdx.x + 1) / gridDim.x);
    const int tiles = (r1 - r0 + kConsumers - 1) / kConsumers;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (threadIdx.x == 0) bars.init(stages, kConsumers);
    __syncthreads();

    if (warp == kConsumers) {  // the producer: tile t is rows r0 + 8 t ...
        bars.produce(tiles, tiles, stages, [&](int t, uint64_t* bar) {
            const int first = r0 + t * kConsumers;
            const uint32_t bytes = static_cast<uint32_t>(min(kConsumers, r1 - first) * row_bytes);
            mbarrier_expect_tx(bar, bytes);
            bulk_load(ring + (t % stages) * stage_bytes,
                      static_cast<const unsigned char*>(w.data) + size_t(first) * row_bytes, bytes,
                      bar);
        });
        return;
    }

    wait_for_previous();  // x is the previous kernel's output
    release_next();
    for (int t = 0; t < tiles; ++t) {
        const int s = t % stages, row = r0 + t * kConsumers + warp;
        bars.ready(t, stages);
        if (row < r1) {
            const unsigned char* wrow = ring + s * stage_bytes + warp * row_bytes;
            float acc = 0.0f;
            if constexpr (C == WeightCode::Bf16)  // gemv_row.cuh's pieces and order
                for (int base = lane * 8; base < in; base += kRowLoads * 256) {
                    uint4 q[kRowLoads];
#pragma unroll
                    for (int i = 0; i < kRowLoads; ++i)
                        if (base + i * 256 < in)
                            q[i] = *reinterpret_cast<const uint4*>(wrow + 2 * (base + i * 256));
#pragma unroll
                    for (int i = 0; i < kRowLoads; ++i) {
                        const int c = base + i * 256;
                        if (c < in) acc += dot8_bf16(q[i], *reinterpret_cast<const uint4*>(x + c));
                    }
                }
            else
                acc = quantized_row_dot<C>(wrow, x, in, qscale_row<C>(w.scales, row, in), lane);
            for (int offset = 16; offset > 0; offset >>= 1)
                acc += __shfl_xor_sync(0xffffffffu, acc, offset);
            if (lane == 0) y[row] = acc;
        }
        bars.done(t, stages);
    }
}

template <WeightCode C>
bool launch_bulk(const bf16* x, int in, const QMatrix& w, int out, float* y, cudaStream_t stream) {
    const size_t row_bytes = row_bytes_of<C>(in);
    const size_t stage_bytes = row_bytes * kConsumers;
    // At least two stages (the ring grows to 200 KB for long bf16 rows), at most kMaxStages.
    const size_t ring =
        std::max(std::min(bulk_ring_bytes(kRingBytes), kMaxRingBytes), 2 * stage_bytes);
    const int stages = ring > kMaxRingBytes
                           ? 0
                           : static_cast<int>(std::min<size_t>(kMaxStages, ring / stage_bytes));
    if (row_bytes % 16 != 0 || reinterpret_cast<uintptr_t>(w.data) % 16 != 0 || stages < 2)
        return false;
    const size_t shared = stage_bytes * stages;
    allow_dynamic_shared(reinterpret_cast<const void*>(gemv_bulk_kernel<C>), shared,
                         "cudaFuncSetAttribute(gemv_bulk_kernel)");
    const int blocks = std::min(multiprocessors(), (out + kConsumers - 1) / kConsumers);
    launch_chained("gemv_bulk", gemv_bulk_kernel<C>, blocks, kThreads, shared, stream, x, in, w,
                   out, y, stages);
    return true;
}

}  // namespace

bool decode_bulk(BulkPart part) {
    static const char* env = std::getenv("KL_CUDA_DECODE_BULK");
    static const std::string parts = env ? env : "";
    return switch_has(parts, part == BulkPart::Gemv     ? "gemv"
                             : part == BulkPart::GateUp ? "gateup"
                                                        : "down");
}

bool gemv_bulk(const bf16* x, size_t in, const QMatrix& w, size_t out, float* y,
               cudaStream_t stream) {
    if (compute_capability() < 90 || !gemv_supported(1, in, w.code)) return false;
    const int i = static_cast<int>(in), o = static_cast<int>(out);
    switch (w.code) {
        case WeightCode::Fp8:
            return launch_bulk<WeightCode::Fp8>(x, i, w, o, y, stream);
        case WeightCode::Int4:
            return launch_bulk<WeightCode::Int4>(x, i, w, o, y, stream);
        case WeightCode::Bf16:
            return launch_bulk<WeightCode::Bf16>(x, i, w, o, y, stream);
    }
    return false;
}

}  // namespace kl::cuda
