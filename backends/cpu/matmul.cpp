#include <algorithm>
#include <cmath>

#include "ops.h"
#include "simd.h"

namespace kl::cpu {
namespace {

// NI rows of x against NJ rows of W: NI*NJ independent dot products held in registers, each
// 8-lane slice of a W row loaded once and reused NI times. NI*NJ + NI stays within the 16
// AVX registers. The unroll pragmas matter: at -O2 GCC otherwise keeps the accumulator
// array in memory.
template <size_t NI, size_t NJ>
KL_MULTIVERSION void tile(const float* x, size_t in, const float* w, size_t out, float* y) {
    v8f acc[NI][NJ] = {};
    const size_t vec_end = in - in % 8;
    for (size_t k = 0; k < vec_end; k += 8) {
        v8f xv[NI];
#pragma GCC unroll 8
        for (size_t a = 0; a < NI; ++a) xv[a] = load8(x + a * in + k);
#pragma GCC unroll 8
        for (size_t b = 0; b < NJ; ++b) {
            const v8f wv = load8(w + b * in + k);
#pragma GCC unroll 8
            for (size_t a = 0; a < NI; ++a) acc[a][b] += xv[a] * wv;
        }
    }
    for (size_t a = 0; a < NI; ++a)
        for (size_t b = 0; b < NJ; ++b) {
            float s = sum8(acc[a][b]);
            for (size_t k = vec_end; k < in; ++k) s += x[a * in + k] * w[b * in + k];
            y[a * out + b] = s;
        }
}

// Output columns [j0, j1) of NI rows of x: NJ-wide tiles, then single columns.
template <size_t NI, size_t NJ>
void strip(const float* x, size_t in, const float* w, size_t out, float* y, size_t j0, size_t j1) {
    size_t j = j0;
    for (; j + NJ <= j1; j += NJ) tile<NI, NJ>(x, in, w + j * in, out, y + j);
    for (; j < j1; ++j) tile<NI, 1>(x, in, w + j * in, out, y + j);
}

}  // namespace

void matmul_wt(ThreadPool& pool, const float* x, size_t n, size_t in, const float* w, size_t out,
               float* y) {
    // A task owns a block of W rows (output columns) and streams every x row past it, so the
    // block stays in L2 while all of x reuses it. 48 = a multiple of each tile width.
    constexpr size_t kColumnsPerTask = 48;
    // Below this many multiply-adds per task, waking the workers costs more than it saves.
    constexpr size_t kMinMacsPerTask = 256 * 1024;
    const size_t n_blocks = (out + kColumnsPerTask - 1) / kColumnsPerTask;
    const size_t macs_per_block = std::max<size_t>(1, n * in * kColumnsPerTask);
    const size_t grain = std::max<size_t>(1, kMinMacsPerTask / macs_per_block);
    pool.parallel_for(n_blocks, grain, [&](size_t begin, size_t end) {
        for (size_t block = begin; block < end; ++block) {
            const size_t j0 = block * kColumnsPerTask;
            const size_t j1 = std::min(out, j0 + kColumnsPerTask);
            size_t i = 0;
            for (; i + 4 <= n; i += 4) strip<4, 3>(x + i * in, in, w, out, y + i * out, j0, j1);
            const float* xr = x + i * in;
            float* yr = y + i * out;
            // Leftover rows of x get their own tile heights rather than padded 4-row tiles;
            // a single row (decode) is a GEMV, where 8 W rows per x load keep 8 FMAs in flight.
            switch (n - i) {
                case 3: strip<3, 4>(xr, in, w, out, yr, j0, j1); break;
                case 2: strip<2, 6>(xr, in, w, out, yr, j0, j1); break;
                case 1: strip<1, 8>(xr, in, w, out, yr, j0, j1); break;
                default: break;
            }
        }
    });
}

void rms_norm(const float* x, const float* weight, size_t dim, float eps, float* y) {
    double sum = 0.0;
    for (size_t i = 0; i < dim; ++i) sum += static_cast<double>(x[i]) * x[i];
    const float inv = 1.0f / std::sqrt(static_cast<float>(sum / static_cast<double>(dim)) + eps);
    for (size_t i = 0; i < dim; ++i) y[i] = x[i] * inv * weight[i];
}

}  // namespace kl::cpu
