// The dense ops: matmul_wt (every tile height and width, ragged `in`, threaded or not) and
// rms_norm, each against a float64 loop.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backends/cpu/ops.h"
#include "compare.h"

namespace {

using kl::test::rel_error;

std::vector<float> random_normal(size_t n, std::mt19937& rng) {
    std::normal_distribution<float> normal;
    std::vector<float> v(n);
    for (float& x : v) x = normal(rng);
    return v;
}

std::vector<float> matmul_float64(const std::vector<float>& x, size_t n, size_t in,
                                  const std::vector<float>& w, size_t out) {
    std::vector<float> y(n * out);
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < out; ++j) {
            double s = 0.0;
            for (size_t k = 0; k < in; ++k) s += double(x[i * in + k]) * w[j * in + k];
            y[i * out + j] = float(s);
        }
    return y;
}

// n covers the 4-row tiles and each leftover height (1, 2, 3); in covers lengths below,
// at and past the 8-lane vectors; out covers partial tiles and several 48-column tasks.
TEST(Matmul, MatchesFloat64OnOddShapesInlineAndThreaded) {
    kl::ThreadPool single(1), three(3);
    std::mt19937 rng(11);
    for (size_t n : {1, 2, 3, 5, 17, 64})
        for (size_t in : {1, 3, 7, 64, 65, 130, 1000})
            for (size_t out : {1, 3, 7, 64, 65, 130, 1000}) {
                const std::vector<float> x = random_normal(n * in, rng);
                const std::vector<float> w = random_normal(out * in, rng);
                const std::vector<float> want = matmul_float64(x, n, in, w, out);
                for (kl::ThreadPool* pool : {&single, &three}) {
                    std::vector<float> y(n * out, NAN);
                    kl::cpu::matmul_wt(*pool, x.data(), n, in, w.data(), out, y.data());
                    ASSERT_LE(rel_error(y, want), 1e-5)
                        << "n=" << n << " in=" << in << " out=" << out
                        << " threads=" << pool->size();
                }
            }
}

// Each output is its own row of x times its own row of W: a swapped or shifted index in
// the tiling would mix rows, which scaled one-hot rows expose exactly.
TEST(Matmul, EachOutputReadsItsOwnRows) {
    kl::ThreadPool pool(3);
    const size_t n = 7, in = 19, out = 101;
    std::vector<float> x(n * in, 0.0f), w(out * in, 0.0f);
    for (size_t i = 0; i < n; ++i) x[i * in + i] = float(i + 1);
    for (size_t j = 0; j < out; ++j) w[j * in + j % in] = float(j + 1);
    std::vector<float> y(n * out, NAN);
    kl::cpu::matmul_wt(pool, x.data(), n, in, w.data(), out, y.data());
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < out; ++j)
            ASSERT_EQ(y[i * out + j], j % in == i ? float((i + 1) * (j + 1)) : 0.0f)
                << "y[" << i << ", " << j << "]";
}

TEST(Matmul, LargeGemvLikeTheLmHead) {
    kl::ThreadPool pool(3);
    std::mt19937 rng(5);
    const size_t in = 768, out = 5003;
    const std::vector<float> x = random_normal(in, rng), w = random_normal(out * in, rng);
    std::vector<float> y(out, NAN);
    kl::cpu::matmul_wt(pool, x.data(), 1, in, w.data(), out, y.data());
    EXPECT_LE(rel_error(y, matmul_float64(x, 1, in, w, out)), 1e-5);
}

std::vector<float> rms_norm_float64(const std::vector<float>& x, const std::vector<float>& weight,
                                    float eps) {
    double sum = 0.0;
    for (float v : x) sum += double(v) * v;
    const double inv = 1.0 / std::sqrt(sum / double(x.size()) + eps);
    std::vector<float> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = float(x[i] * inv * weight[i]);
    return y;
}

TEST(RmsNorm, MatchesFloat64) {
    std::mt19937 rng(3);
    for (size_t dim : {1, 7, 64, 129, 2304})
        for (float eps : {1e-6f, 1e-5f}) {
            const std::vector<float> x = random_normal(dim, rng), w = random_normal(dim, rng);
            std::vector<float> y(dim, NAN);
            kl::cpu::rms_norm(x.data(), w.data(), dim, eps, y.data());
            EXPECT_LE(rel_error(y, rms_norm_float64(x, w, eps)), 1e-6)
                << "dim=" << dim << " eps=" << eps;
        }
}

// Tiny inputs: eps dominates the mean square, so leaving it out (or adding it after the
// square root) is a large error here.
TEST(RmsNorm, EpsInsideTheRootForTinyInputs) {
    std::mt19937 rng(4);
    const size_t dim = 32;
    std::vector<float> x = random_normal(dim, rng);
    for (float& v : x) v *= 1e-4f;
    const std::vector<float> w(dim, 1.0f);
    std::vector<float> y(dim);
    kl::cpu::rms_norm(x.data(), w.data(), dim, 1e-5f, y.data());
    EXPECT_LE(rel_error(y, rms_norm_float64(x, w, 1e-5f)), 1e-6);
    const std::vector<float> zeros(dim, 0.0f);
    kl::cpu::rms_norm(zeros.data(), w.data(), dim, 1e-5f, y.data());
    EXPECT_EQ(y, zeros);
}

TEST(RmsNorm, InPlaceEqualsOutOfPlace) {
    std::mt19937 rng(8);
    const size_t dim = 515;
    std::vector<float> x = random_normal(dim, rng);
    const std::vector<float> w = random_normal(dim, rng);
    std::vector<float> y(dim);
    kl::cpu::rms_norm(x.data(), w.data(), dim, 1e-6f, y.data());
    kl::cpu::rms_norm(x.data(), w.data(), dim, 1e-6f, x.data());
    EXPECT_EQ(x, y);
}

}  // namespace
