// Few-token GEMMs (decode) as bandwidth-bound GEMVs: one warp per weight row, 16-byte loads
// of the row (up to 9 in flight per lane, gemv_row.cuh) and of each token's activations,
// fp32 accumulation. cuBLASLt's n = 1 choices cost several times the bytes' worth on the
// H100 (docs/perf/cuda-bench-v1.md).
#include <cstdlib>
#include <string>

#include "cuda_util.h"
#include "decode_mma.cuh"
#include "gemv_row.cuh"
#include "ops.h"
#include "quant_row.cuh"

namespace kl::cuda {
namespace {

constexpr int kWarps = 8;

constexpr int kQLoads = 8;  // 16-value chunks in flight per lane: a 4096-long row in one batch

// The kernels' bodies, for the rows of block `block`: a pair launch (gemv_pair_kernel) runs
// two weights' blocks in one grid.
template <int N>
__device__ __forceinline__ void gemv_rows(const bf16* x, int in, const bf16* w, int out, float* y,
                                          int ldy, int block) {
    const int row = block * kWarps + (threadIdx.x >> 5);
    if (row >= out) return;
    float acc[N];
    warp_row_dot_tokens<N>(x, in, w + static_cast<size_t>(row) * in, acc);
    if ((threadIdx.x & 31) == 0) {
#pragma unroll
        for (int t = 0; t < N; ++t) y[static_cast<size_t>(t) * ldy + row] = acc[t];
    }
}

// The same over a quantized weight (quant_row.cuh), kQRows<C> consecutive rows per warp: a
// row holds half (FP8) or a quarter (INT4) of a bf16 row's bytes, so a warp keeps as many
// bytes in flight as the bf16 kernel's by loading several rows, and converts each chunk of
// x once for all of them. Lane l takes the 16-value chunks at 16 l, 16 l + 512, ..., issues
// up to kQLoads per row before the first multiply, and scales each chunk's dot product by
// its block's scale.
template <WeightCode C>
constexpr int kQRows = C == WeightCode::Fp8 ? 2 : 4;

template <WeightCode C, int N>
__device__ __forceinline__ void gemv_quantized_rows(const bf16* x, int in, const QMatrix& w,
                                                    int out, float* y, int ldy, int block) {
    constexpr int R = kQRows<C>;
    const int first = (block * kWarps + (threadIdx.x >> 5)) * R;
    if (first >= out) return;
    const int lane = threadIdx.x & 31;
    const void* wrow[R];
    const float* srow[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int row = min(first + r, out - 1);  // rows past the end repeat the last one
        wrow[r] = static_cast<const char*>(w.data) + size_t(row) * qrow_bytes<C>(in);
        srow[r] = qscale_row<C>(w.scales, row, in);
    }
    float acc[R][N];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int t = 0; t < N; ++t) acc[r][t] = 0.0f;
    for (int base = lane * kChunkValues; base < in; base += kQLoads * 32 * kChunkValues) {
        QChunk<C> q[R][kQLoads];
#pragma unroll
        for (int i = 0; i < kQLoads; ++i) {
            const int c = base + i * 32 * kChunkValues;
#pragma unroll
            for (int r = 0; r < R; ++r)
                if (c < in) q[r][i] = load_qchunk<C>(wrow[r], c);
        }
        if (base == lane * kChunkValues) wait_for_previous(), release_next();
#pragma unroll
        for (int i = 0; i < kQLoads; ++i) {
            const int c = base + i * 32 * kChunkValues;
            if (c < in) {
#pragma unroll
                for (int t = 0; t < N; ++t) {
                    float xv[kChunkValues];
                    load_x16_bf16(x + static_cast<size_t>(t) * in + c, xv);
#pragma unroll
                    for (int r = 0; r < R; ++r) {
                        float v[kChunkValues];
                        qchunk_values<C>(q[r][i], v);
                        acc[r][t] += dot16(v, xv) * __ldg(srow[r] + c / kQuantBlock);
                    }
                }
            }
        }
    }
    wait_for_previous();  // lanes past a short row's end: before the stores
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int t = 0; t < N; ++t)
            for (int offset = 16; offset > 0; offset >>= 1)
                acc[r][t] += __shfl_xor_sync(0xffffffffu, acc[r][t], offset);
    if (lane == 0) {
#pragma unroll
        for (int r = 0; r < R; ++r)
            if (first + r < out) {
#pragma unroll
                for (int t = 0; t < N; ++t) y[static_cast<size_t>(t) * ldy + first + r] = acc[r][t];
            }
    }
}

template <int N>
__global__ void gemv_kernel(const bf16* x, int in, const bf16* w, int out, float* y, int ldy) {
    gemv_rows<N>(x, in, w, out, y, ldy, blockIdx.x);
}

template <WeightCode C, int N>
__global__ void gemv_quantized_kernel(const bf16* x, int in, QMatrix w, int out, float* y,
                                      int ldy) {
    gemv_quantized_rows<C, N>(x, in, w, out, y, ldy, blockIdx.x);
}

// A quantized weight's rows and then a bf16 one's in one grid (one launch, one link of the
// chain fewer): blocks [0, first_blocks) compute y[:, 0, first_out), the rest the columns after.
template <WeightCode C, int N>
__global__ void gemv_pair_kernel(const bf16* x, int in, QMatrix first, int first_out,
                                 unsigned first_blocks, const bf16* second, int second_out,
                                 float* y, int ldy) {
    if (blockIdx.x < first_blocks)
        gemv_quantized_rows<C, N>(x, in, first, first_out, y, ldy, blockIdx.x);
    else
        gemv_rows<N>(x, in, second, second_out, y + first_out, ldy, blockIdx.x - first_blocks);
}

// The quantized GEMV on tensor cores (decode_mma.cuh): a block of kMmaWarps warps takes
// kMmaWarps / split groups of 8 rows, each group's columns split in `split` parts of whole
// 128-column blocks (a warp each: enough warps for short, wide weights such as o_proj). A
// warp streams its rows' part kMmaDepth steps ahead; the parts are summed in order in shared
// memory. Quad g < n holds token g's A row.
constexpr int kMmaWarps = 4;

template <WeightCode C>
__global__ void __launch_bounds__(kMmaWarps * 32)
    gemv_mma_kernel(const bf16* x, int n, int in, QMatrix w, int out, float* y, int ldy,
                    int split) {
    extern __shared__ __align__(16) uint32_t shared_x[];
    __shared__ float unscale[kMmaTokensMax];
    __shared__ float partial[kMmaWarps][kMmaTokensMax][kMmaRows];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, p = lane & 3;
    const int task = blockIdx.x * kMmaWarps + warp;
    const int group = task / split, part = task % split;
    const bool live = group * kMmaRows < out;
    const int blocks = in / (2 * kMmaStep);  // 128-column scale blocks
    const int first = 2 * (part * blocks / split), end = 2 * ((part + 1) * blocks / split);
    const int row0 = group * kMmaRows;
    const char* row = static_cast<const char*>(w.data) +
                      size_t(live ? row0 + g : 0) * qrow_bytes<C>(in) +
                      qrow_bytes<C>(p * kChunkValues);
    // The weights first (chained_launch.cuh), then x, the previous kernel's output.
    QChunk<C> b[kMmaDepth];
#pragma unroll
    for (int d = 0; d < kMmaDepth; ++d)
        if (live && first + d < end) b[d] = load_qchunk<C>(row, (first + d) * kMmaStep);
    wait_for_previous();
    release_next();
    stage_x_f16(x, n, in, shared_x, unscale);
    const int steps = in / kMmaStep;
    const uint4* xa =
        reinterpret_cast<const uint4*>(shared_x + (g < n ? g : n) * steps * kStageWords + p * 16);
    const int x_stride = g < n ? kStageWords / 4 : 0;  // uint4s per step
    const float* sr[2];
    mma_scale_rows<C>(w.scales, row0, p, in, sr);
    float acc[2] = {}, t[4] = {};
    if (live) {
        for (int s0 = first; s0 < end; s0 += kMmaDepth) {
#pragma unroll
            for (int d = 0; d < kMmaDepth; ++d) {
                const int s = s0 + d;
                if (s >= end) break;
                const uint4 a[4] = {xa[s * x_stride], xa[s * x_stride + 1], xa[s * x_stride + 2],
                                    xa[s * x_stride + 3]};
                mma_chunk<C>(t, a, b[d]);
                if (s + kMmaDepth < end) b[d] = load_qchunk<C>(row, (s + kMmaDepth) * kMmaStep);
                if (s & 1) {  // a 128-column scale block done
#pragma unroll
                    for (int i = 0; i < 2; ++i)
                        acc[i] += t[i] * __ldg(sr[i] + (s >> 1)), t[i] = 0.0f;
                }
            }
        }
    }
    if (g < n) partial[warp][g][2 * p] = acc[0], partial[warp][g][2 * p + 1] = acc[1];
    __syncthreads();
    // Thread (group in block, token, row) adds its group's parts in order.
    const int groups = kMmaWarps / split;
    if (int(threadIdx.x) < groups * n * kMmaRows) {
        const int gb = threadIdx.x / (n * kMmaRows), tok = threadIdx.x / kMmaRows % n;
        const int r = threadIdx.x % kMmaRows;
        const int out_row = (blockIdx.x * groups + gb) * kMmaRows + r;
        if (out_row < out) {
            float sum = 0.0f;
            for (int k = 0; k < split; ++k) sum += partial[gb * split + k][tok][r];
            y[size_t(tok) * ldy + out_row] = sum * unscale[tok];
        }
    }
}

template <WeightCode C>
unsigned quantized_blocks(size_t out) {
    const size_t warps = (out + kQRows<C> - 1) / kQRows<C>;
    return static_cast<unsigned>((warps + kWarps - 1) / kWarps);
}

// The split of each row group's columns that gives the GEMV about 8 warps an SM or more (1,
// 2 or 4 parts; a 132-SM device).
int mma_split(int out, int in) {
    const int groups = out / kMmaRows, blocks = in / (2 * kMmaStep);
    int split = 1;
    while (split < kMmaWarps && groups * split < 132 * 8 && blocks >= 2 * split) split *= 2;
    return split;
}

template <WeightCode C>
void launch_quantized(const bf16* x, size_t n, int in, const QMatrix& w, int out, float* y, int ldy,
                      unsigned blocks, cudaStream_t stream) {
    const size_t x_bytes = staged_x_bytes(n, size_t(in));
    if (decode_mma() && out % kMmaRows == 0 && in % (2 * kMmaStep) == 0 && x_bytes <= 48 * 1024) {
        const int split = mma_split(out, in);
        const int groups = out / kMmaRows, per_block = kMmaWarps / split;
        launch_chained("gemv_quantized (mma)", gemv_mma_kernel<C>,
                       unsigned((groups + per_block - 1) / per_block), kMmaWarps * 32, x_bytes,
                       stream, x, int(n), in, w, out, y, ldy, split);
        return;
    }
    switch (n) {
        case 1:
            launch_chained("gemv_quantized", gemv_quantized_kernel<C, 1>, blocks, kWarps * 32, 0,
                           stream, x, in, w, out, y, ldy);
            break;
        case 2:
            launch_chained("gemv_quantized", gemv_quantized_kernel<C, 2>, blocks, kWarps * 32, 0,
                           stream, x, in, w, out, y, ldy);
            break;
        case 3:
            launch_chained("gemv_quantized", gemv_quantized_kernel<C, 3>, blocks, kWarps * 32, 0,
                           stream, x, in, w, out, y, ldy);
            break;
        case 4:
            launch_chained("gemv_quantized", gemv_quantized_kernel<C, 4>, blocks, kWarps * 32, 0,
                           stream, x, in, w, out, y, ldy);
            break;
        default:
            fail(Status::Internal, "gemv takes 1..4 rows");
    }
}

}  // namespace

bool decode_mma() {
    static const bool on = [] {
        const char* v = std::getenv("KL_CUDA_DECODE_MMA");
        return v && std::string(v) == "1";
    }();
    return on;
}

bool decode_stacked() {
    static const bool on = [] {
        const char* v = std::getenv("KL_CUDA_DECODE_STACKED");
        return v && std::string(v) == "1";
    }();
    return on;
}

bool gemv_supported(size_t n, size_t in) { return n >= 1 && n <= 4 && in % 8 == 0; }
bool gemv_supported(size_t n, size_t in, WeightCode code) {
    return gemv_supported(n, in) && (code == WeightCode::Bf16 || in % kChunkValues == 0);
}

void gemv(const bf16* x, size_t n, size_t in, const QMatrix& w, size_t out, float* y, size_t ldy,
          cudaStream_t stream) {
    if (!gemv_supported(n, in, w.code)) fail(Status::Internal, "gemv: unsupported shape");
    const unsigned blocks = static_cast<unsigned>((out + kWarps - 1) / kWarps);
    const int i = static_cast<int>(in), o = static_cast<int>(out), ld = static_cast<int>(ldy);
    const bf16* wb = static_cast<const bf16*>(w.data);
    switch (w.code) {
        case WeightCode::Fp8:
            launch_quantized<WeightCode::Fp8>(x, n, i, w, o, y, ld,
                                              quantized_blocks<WeightCode::Fp8>(out), stream);
            return;
        case WeightCode::Int4:
            launch_quantized<WeightCode::Int4>(x, n, i, w, o, y, ld,
                                               quantized_blocks<WeightCode::Int4>(out), stream);
            return;
        case WeightCode::Bf16:
            break;
    }
    switch (n) {
        case 1:
            launch_chained("gemv_bf16", gemv_kernel<1>, blocks, kWarps * 32, 0, stream, x, i, wb, o,
                           y, ld);
            break;
        case 2:
            launch_chained("gemv_bf16", gemv_kernel<2>, blocks, kWarps * 32, 0, stream, x, i, wb, o,
                           y, ld);
            break;
        case 3:
            launch_chained("gemv_bf16", gemv_kernel<3>, blocks, kWarps * 32, 0, stream, x, i, wb, o,
                           y, ld);
            break;
        case 4:
            launch_chained("gemv_bf16", gemv_kernel<4>, blocks, kWarps * 32, 0, stream, x, i, wb, o,
                           y, ld);
            break;
        default:
            fail(Status::Internal, "gemv takes 1..4 rows");
    }
}

namespace {

template <WeightCode C, int N>
void launch_pair(const bf16* x, int in, const QMatrix& first, int first_out, const bf16* second,
                 int second_out, float* y, int ldy, cudaStream_t stream) {
    const unsigned first_blocks = quantized_blocks<C>(size_t(first_out));
    const unsigned blocks = first_blocks + unsigned((second_out + kWarps - 1) / kWarps);
    launch_chained("gemv_pair", gemv_pair_kernel<C, N>, blocks, kWarps * 32, 0, stream, x, in,
                   first, first_out, first_blocks, second, second_out, y, ldy);
}

template <WeightCode C>
void launch_pair(const bf16* x, size_t n, int in, const QMatrix& first, int first_out,
                 const bf16* second, int second_out, float* y, int ldy, cudaStream_t stream) {
    switch (n) {
        case 1:
            return launch_pair<C, 1>(x, in, first, first_out, second, second_out, y, ldy, stream);
        case 2:
            return launch_pair<C, 2>(x, in, first, first_out, second, second_out, y, ldy, stream);
        case 3:
            return launch_pair<C, 3>(x, in, first, first_out, second, second_out, y, ldy, stream);
        case 4:
            return launch_pair<C, 4>(x, in, first, first_out, second, second_out, y, ldy, stream);
        default:
            fail(Status::Internal, "gemv_pair takes 1..4 rows");
    }
}

}  // namespace

void gemv_pair(const bf16* x, size_t n, size_t in, const QMatrix& first, size_t first_out,
               const bf16* second, size_t second_out, float* y, size_t ldy, cudaStream_t stream) {
    if (!gemv_supported(n, in, first.code)) fail(Status::Internal, "gemv_pair: unsupported shape");
    const int i = static_cast<int>(in), a = static_cast<int>(first_out);
    const int b = static_cast<int>(second_out), ld = static_cast<int>(ldy);
    if (decode_mma()) {  // the quantized rows on tensor cores: two launches
        gemv(x, n, in, first, first_out, y, ldy, stream);
        gemv(x, n, in, QMatrix{WeightCode::Bf16, second, nullptr}, second_out, y + first_out, ldy,
             stream);
        return;
    }
    switch (first.code) {
        case WeightCode::Fp8:
            return launch_pair<WeightCode::Fp8>(x, n, i, first, a, second, b, y, ld, stream);
        case WeightCode::Int4:
            return launch_pair<WeightCode::Int4>(x, n, i, first, a, second, b, y, ld, stream);
        case WeightCode::Bf16:  // both bf16: two launches (a model stacks such weights instead)
            gemv(x, n, in, first, first_out, y, ldy, stream);
            gemv(x, n, in, QMatrix{WeightCode::Bf16, second, nullptr}, second_out, y + first_out,
                 ldy, stream);
            return;
    }
}

void gemv_bf16(const bf16* x, size_t n, size_t in, const bf16* w, size_t out, float* y,
               cudaStream_t stream) {
    gemv(x, n, in, QMatrix{WeightCode::Bf16, w, nullptr}, out, y, out, stream);
}

}  // namespace kl::cuda
