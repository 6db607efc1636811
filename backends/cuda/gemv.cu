// Few-token GEMMs (decode) as bandwidth-bound GEMVs: one warp per weight row, 16-byte loads
// of the row (up to 9 in flight per lane, gemv_row.cuh) and of each token's activations,
// fp32 accumulation. cuBLASLt's n = 1 choices cost several times the bytes' worth on the
// H100 (docs/perf/cuda-bench-v1.md).
#include "cuda_util.h"
#include "gemv_row.cuh"
#include "ops.h"
#include "quant_row.cuh"

namespace kl::cuda {
namespace {

constexpr int kWarps = 8;

constexpr int kQLoads = 8;  // 16-value chunks in flight per lane: a 4096-long row in one batch

template <int N>
__global__ void gemv_kernel(const bf16* x, int in, const bf16* w, int out, float* y, int ldy) {
    const int row = blockIdx.x * kWarps + (threadIdx.x >> 5);
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
__global__ void gemv_quantized_kernel(const bf16* x, int in, QMatrix w, int out, float* y,
                                      int ldy) {
    constexpr int R = kQRows<C>;
    const int first = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * R;
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

template <WeightCode C>
unsigned quantized_blocks(size_t out) {
    const size_t warps = (out + kQRows<C> - 1) / kQRows<C>;
    return static_cast<unsigned>((warps + kWarps - 1) / kWarps);
}

template <WeightCode C>
void launch_quantized(const bf16* x, size_t n, int in, const QMatrix& w, int out, float* y, int ldy,
                      unsigned blocks, cudaStream_t stream) {
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

void gemv_bf16(const bf16* x, size_t n, size_t in, const bf16* w, size_t out, float* y,
               cudaStream_t stream) {
    gemv(x, n, in, QMatrix{WeightCode::Bf16, w, nullptr}, out, y, out, stream);
}

}  // namespace kl::cuda
