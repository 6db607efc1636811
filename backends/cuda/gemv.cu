// Few-token GEMMs (decode) as bandwidth-bound GEMVs: one warp per weight row, 16-byte loads
// of the row (up to 9 in flight per lane, gemv_row.cuh) and of each token's activations,
// fp32 accumulation. cuBLASLt's n = 1 choices cost several times the bytes' worth on the
// H100 (docs/perf/cuda-bench-v1.md).
#include <cstdlib>
#include <string>

#include "cuda_util.h"
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

// The same over a quantized weight (quant_row.cuh), R consecutive rows per warp: a row holds
// half (FP8) or a quarter (INT4) of a bf16 row's bytes, so with R = kQRows<C> a warp keeps as
// many bytes in flight as the bf16 kernel's by loading several rows, and converts each chunk
// of x once for all of them (decode_narrow(): half as many rows, registers and bytes a warp,
// twice the warps). Lane l takes the 16-value chunks at 16 l, 16 l + 512, ..., issues
// up to kQLoads per row before the first multiply, and scales each chunk's dot product by
// its block's scale.
template <WeightCode C>
constexpr int kQRows = C == WeightCode::Fp8 ? 2 : 4;

template <WeightCode C, int N, int R>
__device__ __forceinline__ void gemv_quantized_rows(const bf16* x, int in, const QMatrix& w,
                                                    int out, float* y, int ldy, int block) {
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

template <WeightCode C, int N, int R>
__global__ void gemv_quantized_kernel(const bf16* x, int in, QMatrix w, int out, float* y,
                                      int ldy) {
    gemv_quantized_rows<C, N, R>(x, in, w, out, y, ldy, blockIdx.x);
}

// A quantized weight's rows and then a bf16 one's in one grid (one launch, one link of the
// chain fewer): blocks [0, first_blocks) compute y[:, 0, first_out), the rest the columns after.
template <WeightCode C, int N, int R>
__global__ void gemv_pair_kernel(const bf16* x, int in, QMatrix first, int first_out,
                                 unsigned first_blocks, const bf16* second, int second_out,
                                 float* y, int ldy) {
    if (blockIdx.x < first_blocks)
        gemv_quantized_rows<C, N, R>(x, in, first, first_out, y, ldy, blockIdx.x);
    else
        gemv_rows<N>(x, in, second, second_out, y + first_out, ldy, blockIdx.x - first_blocks);
}

unsigned quantized_blocks(size_t out, int rows_per_warp) {
    const size_t warps = (out + rows_per_warp - 1) / rows_per_warp;
    return static_cast<unsigned>((warps + kWarps - 1) / kWarps);
}

template <WeightCode C, int N, int R>
void launch_rows(const bf16* x, int in, const QMatrix& w, int out, float* y, int ldy,
                 cudaStream_t stream) {
    launch_chained("gemv_quantized", gemv_quantized_kernel<C, N, R>, quantized_blocks(out, R),
                   kWarps * 32, 0, stream, x, in, w, out, y, ldy);
}

template <WeightCode C>
void launch_quantized(const bf16* x, size_t n, int in, const QMatrix& w, int out, float* y, int ldy,
                      cudaStream_t stream) {
    constexpr int R = kQRows<C>, Narrow = kQRows<C> / 2;
    const bool narrow = decode_narrow(NarrowPart::Gemv, C);
    switch (n) {
        case 1:
            return narrow ? launch_rows<C, 1, Narrow>(x, in, w, out, y, ldy, stream)
                          : launch_rows<C, 1, R>(x, in, w, out, y, ldy, stream);
        case 2:
            return narrow ? launch_rows<C, 2, Narrow>(x, in, w, out, y, ldy, stream)
                          : launch_rows<C, 2, R>(x, in, w, out, y, ldy, stream);
        case 3:
            return narrow ? launch_rows<C, 3, Narrow>(x, in, w, out, y, ldy, stream)
                          : launch_rows<C, 3, R>(x, in, w, out, y, ldy, stream);
        case 4:
            return narrow ? launch_rows<C, 4, Narrow>(x, in, w, out, y, ldy, stream)
                          : launch_rows<C, 4, R>(x, in, w, out, y, ldy, stream);
        default:
            fail(Status::Internal, "gemv takes 1..4 rows");
    }
}

}  // namespace

bool decode_narrow(NarrowPart part, WeightCode code) {
    // Unset: the measured per-format choice (docs/perf/decode-occupancy.md): FP8 gains only
    // from the narrow GEMVs (its split down kernel is slower), INT4 from every part, bf16 from
    // the split down kernel. "0" or "1": every part off or on; else a comma-separated list of
    // part names, on for every format.
    static const char* env = std::getenv("KL_CUDA_DECODE_NARROW");
    static const std::string parts = env ? env : "";
    if (!env)
        return (code == WeightCode::Int4 && part != NarrowPart::DownWide) ||
               (code == WeightCode::Fp8 && part == NarrowPart::Gemv) ||
               (code == WeightCode::Bf16 && part == NarrowPart::Down);
    if (part == NarrowPart::DownWide) return parts != "1" && switch_has(parts, "downwide");
    return switch_has(parts, part == NarrowPart::Gemv     ? "gemv"
                             : part == NarrowPart::GateUp ? "gateup"
                                                          : "down");
}

bool decode_stacked() {
    static const bool on = env_switch("KL_CUDA_DECODE_STACKED", true);
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
            return launch_quantized<WeightCode::Fp8>(x, n, i, w, o, y, ld, stream);
        case WeightCode::Int4:
            return launch_quantized<WeightCode::Int4>(x, n, i, w, o, y, ld, stream);
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

template <WeightCode C, int N, int R>
void launch_pair_rows(const bf16* x, int in, const QMatrix& first, int first_out,
                      const bf16* second, int second_out, float* y, int ldy, cudaStream_t stream) {
    const unsigned first_blocks = quantized_blocks(size_t(first_out), R);
    const unsigned blocks = first_blocks + unsigned((second_out + kWarps - 1) / kWarps);
    launch_chained("gemv_pair", gemv_pair_kernel<C, N, R>, blocks, kWarps * 32, 0, stream, x, in,
                   first, first_out, first_blocks, second, second_out, y, ldy);
}

template <WeightCode C, int N>
void launch_pair(const bf16* x, int in, const QMatrix& first, int first_out, const bf16* second,
                 int second_out, float* y, int ldy, cudaStream_t stream) {
    if (decode_narrow(NarrowPart::Gemv, C))
        launch_pair_rows<C, N, kQRows<C> / 2>(x, in, first, first_out, second, second_out, y, ldy,
                                              stream);
    else
        launch_pair_rows<C, N, kQRows<C>>(x, in, first, first_out, second, second_out, y, ldy,
                                          stream);
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
