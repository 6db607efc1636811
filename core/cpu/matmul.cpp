#include <algorithm>
#include <cmath>
#include <cstring>

#include "ops.h"
#include "simd.h"

namespace kl::cpu {
namespace {

// Rows of x reused per loaded W row; rows of W per x row: a 4x4 register tile of dots.
constexpr size_t kTileX = 4;
constexpr size_t kTileW = 4;

// y[i, j] for i in [i0, i0+ni), j in [j0, j0+nj), ni <= 4, nj <= 4.
KL_MULTIVERSION void tile(const float* x, size_t in, const float* w, size_t out, float* y,
                          size_t i0, size_t ni, size_t j0, size_t nj) {
    v8f acc[kTileX][kTileW];
    for (size_t a = 0; a < kTileX; ++a)
        for (size_t b = 0; b < kTileW; ++b) acc[a][b] = v8f{};
    const float* xr[kTileX];
    const float* wr[kTileW];
    for (size_t a = 0; a < kTileX; ++a) xr[a] = x + (i0 + (a < ni ? a : 0)) * in;
    for (size_t b = 0; b < kTileW; ++b) wr[b] = w + (j0 + (b < nj ? b : 0)) * in;
    const size_t vec_end = in - in % 8;
    for (size_t k = 0; k < vec_end; k += 8) {
        v8f wv[kTileW];
        for (size_t b = 0; b < kTileW; ++b) wv[b] = load8(wr[b] + k);
        for (size_t a = 0; a < kTileX; ++a) {
            const v8f xv = load8(xr[a] + k);
            for (size_t b = 0; b < kTileW; ++b) acc[a][b] += xv * wv[b];
        }
    }
    for (size_t a = 0; a < ni; ++a)
        for (size_t b = 0; b < nj; ++b) {
            float s = sum8(acc[a][b]);
            for (size_t k = vec_end; k < in; ++k) s += xr[a][k] * wr[b][k];
            y[(i0 + a) * out + j0 + b] = s;
        }
}

}  // namespace

void matmul_wt(ThreadPool& pool, const float* x, size_t n, size_t in, const float* w, size_t out,
               float* y) {
    // Blocks of W rows (output columns) per task; each block streams through all x rows in
    // tiles so a W block stays in cache while it is reused.
    constexpr size_t kColumnsPerTask = 32;
    const size_t n_blocks = (out + kColumnsPerTask - 1) / kColumnsPerTask;
    // Small products run inline: waking threads costs more than the work.
    const size_t grain =
        std::max<size_t>(1, (64 * 1024) / std::max<size_t>(1, n * in * kColumnsPerTask));
    pool.parallel_for(n_blocks, grain, [&](size_t begin, size_t end) {
        for (size_t block = begin; block < end; ++block) {
            const size_t j_begin = block * kColumnsPerTask;
            const size_t j_end = std::min(out, j_begin + kColumnsPerTask);
            for (size_t i = 0; i < n; i += kTileX) {
                const size_t ni = std::min(kTileX, n - i);
                for (size_t j = j_begin; j < j_end; j += kTileW)
                    tile(x, in, w, out, y, i, ni, j, std::min(kTileW, j_end - j));
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
