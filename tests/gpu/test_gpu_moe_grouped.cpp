// Prefill MoE experts (moe_grouped.cu) against the CPU experts (matmul_wt + silu per chosen
// expert, fp32) on fresh random inputs: tiny and real shapes, n from 1 to 1024, random and
// skewed routing, every tile height and the simple path, and bit-identical reruns; for bf16,
// FP8 and INT4 expert weights (quantized ones against the CPU on kl::dequantize()'s values,
// and bit for bit against bf16 experts holding those values rounded to bf16).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backends/cpu/ops.h"
#include "backends/cuda/moe_grouped_tuning.h"
#include "backends/cuda/ops.h"
#include "compare.h"
#include "core/error.h"
#include "core/quantize.h"
#include "gpu_test_util.h"

namespace {

using kl::WeightFormat;
using kl::cuda::bf16;
using kl::cuda::WeightCode;
using kl::test::rel_error;

// bf16 activations between the two GEMMs (rounding 2^-9) against an fp32 reference; for
// quantized experts also the weights' rounding to bf16 in the kernel (2^-9 each).
constexpr double kTolerance = 1e-2;
// W8A8 on Hopper's wgmma: its FP8 sums keep fewer bits than fp32 (a 64x128x512 tile without
// promotion: 9.2e-4 relative, test_gpu_wgmma.cu), and where one lands act on the other side of
// an e4m3 rounding boundary from the reference's, that element of act moves by a whole code
// step (2^-3 relative) into the down GEMM. Measured worst on the H200: 2.1e-2 (all slots on
// one expert), 1.1e-2 at the real shapes.
constexpr double kW8A8Tolerance = 3e-2;

enum class Routing { Random, OneExpert, FewExperts };

const char* name(Routing r) {
    return r == Routing::Random ? "random" : r == Routing::OneExpert ? "one-expert" : "few-experts";
}

const char* name(WeightFormat f) {
    return kl::weight_format_name(f);
}

// `sets` distinct weight sets; expert e uses set e % sets, so 256 experts cost 8 sets of memory.
// Plain: bf16 weights. Fp8 / Int4: the random weights quantized with kl::quantize, held as
// codes and scales, or, with dequantized_bf16, as bf16 experts holding bf16(dequantized).
struct Experts {
    Experts(size_t hidden, size_t inter, size_t experts, size_t sets, uint32_t seed,
            WeightFormat format = WeightFormat::Plain, bool dequantized_bf16 = false)
        : hidden(hidden), inter(inter), sets(sets), w1(sets), w3(sets), w2(sets) {
        const bool quantized = format != WeightFormat::Plain && !dequantized_bf16;
        code = !quantized                    ? WeightCode::Bf16
               : format == WeightFormat::Fp8 ? WeightCode::Fp8
                                             : WeightCode::Int4;
        const float in_scale = 1.0f / std::sqrt(float(hidden)),
                    out_scale = 1.0f / std::sqrt(float(inter));
        std::vector<const void*> set_w;   // [set * 3 + matrix]
        std::vector<const float*> set_s;  // null for bf16
        for (size_t s = 0; s < sets; ++s) {
            for (int m = 0; m < 3; ++m) {
                const size_t rows = m < 2 ? inter : hidden, cols = m < 2 ? hidden : inter;
                auto& w = m == 0 ? w1[s] : m == 1 ? w3[s] : w2[s];
                w = randn(rows * cols, seed + 3 * uint32_t(s) + m, m < 2 ? in_scale : out_scale);
                if (format != WeightFormat::Plain) {
                    const auto q = kl::quantize(format, w.data(), int64_t(rows), int64_t(cols));
                    kl::dequantize(q, w.data());  // the values the experts stand for
                    if (quantized) {
                        codes.push_back(std::make_unique<Dev<uint8_t>>(q.data));
                        scales.push_back(std::make_unique<Dev<float>>(q.scales));
                        set_w.push_back(codes.back()->ptr);
                        set_s.push_back(scales.back()->ptr);
                        continue;
                    }
                }
                dev.push_back(std::make_unique<Dev<uint16_t>>(to_bf16(w)));  // w rounded too
                set_w.push_back(dev.back()->ptr);
                set_s.push_back(nullptr);
            }
        }
        std::vector<const void*> p[3];
        std::vector<const float*> ps[3];
        for (size_t e = 0; e < experts; ++e)
            for (int m = 0; m < 3; ++m) {
                p[m].push_back(set_w[3 * (e % sets) + m]);
                ps[m].push_back(set_s[3 * (e % sets) + m]);
            }
        for (int m = 0; m < 3; ++m) {
            d[m] = std::make_unique<Dev<const void*>>(p[m]);
            ds[m] = std::make_unique<Dev<const float*>>(ps[m]);
        }
    }
    // The device tables as the kernel takes them.
    kl::cuda::ExpertWeights weights() const {
        kl::cuda::ExpertWeights w;
        w.code = code;
        w.w1 = d[0]->ptr, w.w3 = d[1]->ptr, w.w2 = d[2]->ptr;
        if (code != WeightCode::Bf16) w.s1 = ds[0]->ptr, w.s3 = ds[1]->ptr, w.s2 = ds[2]->ptr;
        return w;
    }
    size_t hidden, inter, sets;
    WeightCode code;
    // The values the device weights stand for, fp32: bf16-rounded for bf16 experts,
    // kl::dequantize()'s for quantized ones.
    std::vector<std::vector<float>> w1, w3, w2;
    std::vector<std::unique_ptr<Dev<uint16_t>>> dev;
    std::vector<std::unique_ptr<Dev<uint8_t>>> codes;
    std::vector<std::unique_ptr<Dev<float>>> scales;
    std::unique_ptr<Dev<const void*>> d[3];
    std::unique_ptr<Dev<const float*>> ds[3];
};

std::vector<int32_t> route(size_t n, size_t k, size_t experts, Routing routing, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<int32_t> chosen(n * k);
    std::vector<int32_t> ids(experts);
    std::iota(ids.begin(), ids.end(), 0);
    for (size_t t = 0; t < n; ++t) {
        if (routing == Routing::Random) std::shuffle(ids.begin(), ids.end(), rng);  // distinct
        for (size_t i = 0; i < k; ++i) {
            int32_t e = ids[i];
            // Every slot to the last expert (duplicates in a token too): one long group.
            if (routing == Routing::OneExpert) e = int32_t(experts - 1);
            // k + 1 experts of all, spread apart: most experts unused.
            if (routing == Routing::FewExperts) e = int32_t((((t + i) % (k + 1)) * 3) % experts);
            chosen[t * k + i] = e;
        }
    }
    return chosen;
}

// The MoE contribution sum_i weights[t,i] * Expert_{chosen[t,i]}(x_t), in fp32 on the CPU,
// one batched matmul_wt per weight set over the rows routed to it. w8a8: as FP8 experts on
// the tensor cores compute it, x and act (rounded to bf16) replaced by their per-row FP8
// values (w8a8_activations).
std::vector<float> reference(kl::ThreadPool& pool, const Experts& ex, const std::vector<float>& x,
                             size_t n, size_t k, const std::vector<int32_t>& chosen,
                             const std::vector<float>& weights, bool w8a8 = false) {
    const size_t h = ex.hidden, inter = ex.inter;
    std::vector<float> delta(n * h, 0.0f);
    for (size_t s = 0; s < ex.sets; ++s) {
        std::vector<size_t> slots;
        for (size_t slot = 0; slot < n * k; ++slot)
            if (size_t(chosen[slot]) % ex.sets == s) slots.push_back(slot);
        if (slots.empty()) continue;
        const size_t m = slots.size();
        std::vector<float> xs(m * h), g(m * inter), u(m * inter), y(m * h);
        for (size_t r = 0; r < m; ++r) std::copy_n(&x[(slots[r] / k) * h], h, &xs[r * h]);
        if (w8a8) w8a8_activations(xs, m, h);
        kl::cpu::matmul_wt(pool, xs.data(), m, h, ex.w1[s].data(), inter, g.data());
        kl::cpu::matmul_wt(pool, xs.data(), m, h, ex.w3[s].data(), inter, u.data());
        for (size_t i = 0; i < m * inter; ++i) g[i] = kl::cpu::silu(g[i]) * u[i];
        if (w8a8) {
            to_bf16(g);
            w8a8_activations(g, m, inter);
        }
        kl::cpu::matmul_wt(pool, g.data(), m, inter, ex.w2[s].data(), h, y.data());
        for (size_t r = 0; r < m; ++r)
            for (size_t c = 0; c < h; ++c)
                delta[(slots[r] / k) * h + c] += weights[slots[r]] * y[r * h + c];
    }
    return delta;
}

class GpuMoeGrouped : public ::testing::Test {
protected:
    void SetUp() override {
        if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
    }
    // The error figures go to the log, so a passing run still says how close it was.
    void TearDown() override {
        if (worst_ >= 0.0)
            std::printf("[ moe      ] worst rel error %.3g (tolerance %.0e, W8A8 %.0e)\n", worst_,
                        kTolerance, kW8A8Tolerance);
    }
    kl::ThreadPool pool{int(std::max(1u, std::thread::hardware_concurrency()))};
    double worst_ = -1.0;

    // Runs one routing through every tile height in `tiles`, twice each, on a poisoned
    // workspace; checks out - out0 against the CPU and that the reruns are bit-identical.
    void check(const Experts& ex, size_t experts, size_t n, size_t k, Routing routing,
               std::vector<int> tiles, uint32_t seed) {
        const size_t h = ex.hidden, inter = ex.inter;
        auto x = randn(n * h, seed);
        const auto xb = to_bf16(x);
        const auto chosen = route(n, k, experts, routing, seed + 1);
        auto weights = randn(n * k, seed + 2, 0.5f);
        const auto out0 = randn(n * h, seed + 3);
        const auto want = reference(pool, ex, x, n, k, chosen, weights);
        // FP8 experts run W8A8 on the tensor-core path (shapes in multiples of 16).
        const bool w8a8_shape = ex.code == WeightCode::Fp8 && h % 16 == 0 && inter % 16 == 0;
        const auto want_w8a8 =
            w8a8_shape ? reference(pool, ex, x, n, k, chosen, weights, true) : want;
        Dev<uint16_t> dx(xb);
        Dev<int32_t> dc(chosen);
        Dev<float> dw(weights), dout(out0);
        const size_t bytes = kl::cuda::moe_grouped_workspace_bytes(n, h, inter, experts, k);
        Dev<uint8_t> ws(bytes);
        for (int tile_m : tiles) {
            std::vector<float> first;
            for (int rep = 0; rep < 2; ++rep) {
                // 0xFF bytes: NaN activations, -1 indices; anything read unwritten shows.
                ASSERT_EQ(cudaMemset(ws.ptr, 0xFF, bytes), cudaSuccess);
                ASSERT_EQ(cudaMemcpy(dout.ptr, out0.data(), n * h * 4, cudaMemcpyHostToDevice),
                          cudaSuccess);
                kl::cuda::moe_experts_grouped_tuned(reinterpret_cast<const bf16*>(dx.ptr), n, h,
                                                    inter, experts, k, dc.ptr, dw.ptr, ex.weights(),
                                                    ws.ptr, dout.ptr, nullptr, tile_m, 0xFu);
                ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
                auto got = dout.get();
                if (rep == 0) {
                    first = got;
                    for (size_t i = 0; i < got.size(); ++i) got[i] -= out0[i];
                    const bool w8a8 = w8a8_shape && tile_m != -1;
                    const double err = rel_error(got, w8a8 ? want_w8a8 : want);
                    EXPECT_LE(err, w8a8 ? kW8A8Tolerance : kTolerance)
                        << "n " << n << " hidden " << h << " inter " << inter << " experts "
                        << experts << " top_k " << k << " " << name(routing) << " tile_m " << tile_m
                        << " code " << int(ex.code);
                    worst_ = std::max(worst_, err);
                } else {
                    EXPECT_EQ(0, std::memcmp(first.data(), got.data(), got.size() * 4))
                        << "rerun differs: n " << n << " tile_m " << tile_m;
                }
            }
        }
    }
};

TEST_F(GpuMoeGrouped, TinyShapesEveryTileHeightMatchCpu) {
    struct Shape {
        size_t hidden, inter, experts, top_k;
    };
    uint32_t seed = 100;
    for (Shape s : {Shape{64, 32, 8, 2}, Shape{768, 128, 16, 4}, Shape{136, 40, 12, 3}}) {
        Experts ex(s.hidden, s.inter, s.experts, s.experts, seed++);
        for (size_t n : {1, 5, 64, 256, 1024})
            check(ex, s.experts, n, s.top_k, Routing::Random, {0, 32, 64, 128, -1}, seed += 10);
    }
}

TEST_F(GpuMoeGrouped, SkewedRoutingMatchesCpu) {
    Experts ex(192, 64, 16, 16, 7);
    for (Routing r : {Routing::OneExpert, Routing::FewExperts})
        for (size_t n : {1, 5, 64, 1024})
            check(ex, 16, n, 4, r, {0, 32, 64, 128}, 500 + uint32_t(n));
}

TEST_F(GpuMoeGrouped, RealShapesMatchCpu) {
    // hidden 2304, inter 1024, 256 experts (over 8 weight sets), top-8.
    Experts ex(2304, 1024, 256, 8, 900);
    for (size_t n : {1, 5, 64, 256}) check(ex, 256, n, 8, Routing::Random, {0}, 1000 + uint32_t(n));
    check(ex, 256, 1024, 8, Routing::Random, {0, 32, 128}, 2024);
    check(ex, 256, 256, 8, Routing::OneExpert, {0, 128}, 3000);
}

TEST_F(GpuMoeGrouped, OddDimensionsTakeTheSimplePath) {
    Experts ex(60, 36, 6, 6, 11);
    for (size_t n : {1, 7, 100}) check(ex, 6, n, 2, Routing::Random, {0}, 1200 + uint32_t(n));
}

TEST_F(GpuMoeGrouped, BadArgumentsFailCleanly) {
    Experts ex(60, 36, 6, 6, 12);
    const size_t n = 4, k = 2;
    Dev<uint16_t> dx(n * 60);
    Dev<int32_t> dc(std::vector<int32_t>(n * k, 0));
    Dev<float> dw(n * k), dout(n * 60);
    Dev<uint8_t> ws(kl::cuda::moe_grouped_workspace_bytes(n, 60, 36, 6, k));
    const auto* x = reinterpret_cast<const bf16*>(dx.ptr);
    // The tensor-core path needs dimensions divisible by 8, in every format.
    Experts fp8(60, 36, 6, 6, 13, WeightFormat::Fp8), int4(60, 36, 6, 6, 14, WeightFormat::Int4);
    for (const Experts* e : {&ex, &fp8, &int4}) {
        try {
            kl::cuda::moe_experts_grouped_tuned(x, n, 60, 36, 6, k, dc.ptr, dw.ptr, e->weights(),
                                                ws.ptr, dout.ptr, nullptr, 32, 0xFu);
            ADD_FAILURE() << "forced tensor-core tiles on hidden 60 did not fail, code "
                          << int(e->code);
        } catch (const kl::Error& err) {
            EXPECT_EQ(err.status(), kl::Status::Unsupported) << err.what();
        }
    }
    try {
        kl::cuda::moe_experts_grouped(x, n, 60, 36, 6, k, dc.ptr, dw.ptr, ex.weights(), nullptr,
                                      dout.ptr, nullptr);
        ADD_FAILURE() << "null workspace did not fail";
    } catch (const kl::Error& e) {
        EXPECT_EQ(e.status(), kl::Status::InvalidArgument) << e.what();
    }
    try {
        kl::cuda::moe_experts_grouped(x, n, 60, 36, 0, k, dc.ptr, dw.ptr, ex.weights(), ws.ptr,
                                      dout.ptr, nullptr);
        ADD_FAILURE() << "zero experts did not fail";
    } catch (const kl::Error& e) {
        EXPECT_EQ(e.status(), kl::Status::InvalidArgument) << e.what();
    }
    // Quantized codes without their scales, and a code that is not one.
    auto no_scales = fp8.weights();
    no_scales.s3 = nullptr;
    auto bad_code = ex.weights();
    bad_code.code = static_cast<WeightCode>(7);
    for (const auto& w : {no_scales, bad_code}) {
        try {
            kl::cuda::moe_experts_grouped(x, n, 60, 36, 6, k, dc.ptr, dw.ptr, w, ws.ptr, dout.ptr,
                                          nullptr);
            ADD_FAILURE() << "missing scales or an unknown code did not fail";
        } catch (const kl::Error& e) {
            EXPECT_EQ(e.status(), kl::Status::InvalidArgument) << e.what();
        }
    }
    // No tokens: nothing to do, nothing touched.
    EXPECT_NO_THROW(kl::cuda::moe_experts_grouped(x, 0, 60, 36, 6, k, dc.ptr, dw.ptr, ex.weights(),
                                                  nullptr, dout.ptr, nullptr));
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

// ---- quantized experts --------------------------------------------------------------------

constexpr WeightFormat kQuantFormats[] = {WeightFormat::Fp8, WeightFormat::Int4};

// Partial tiles everywhere: K not a multiple of the 64-wide stage (136, 40), N below a tile
// (40), partial FP8 blocks and INT4 groups (136 = 128 + 8 columns).
TEST_F(GpuMoeGrouped, QuantizedTinyShapesEveryTileHeightMatchCpu) {
    struct Shape {
        size_t hidden, inter, experts, top_k;
    };
    uint32_t seed = 4000;
    for (WeightFormat f : kQuantFormats)
        for (Shape s : {Shape{64, 32, 8, 2}, Shape{768, 128, 16, 4}, Shape{136, 40, 12, 3}}) {
            SCOPED_TRACE(name(f));
            Experts ex(s.hidden, s.inter, s.experts, s.experts, seed++, f);
            // FP8's tensor-core path needs multiples of 16: 136 and 40 take the simple one.
            const bool fp8_simple =
                f == WeightFormat::Fp8 && (s.hidden % 16 != 0 || s.inter % 16 != 0);
            const std::vector<int> tiles =
                fp8_simple ? std::vector<int>{0, -1} : std::vector<int>{0, 32, 64, 128, -1};
            for (size_t n : {1, 7, 64, 300})
                check(ex, s.experts, n, s.top_k, Routing::Random, tiles, seed += 10);
        }
}

TEST_F(GpuMoeGrouped, QuantizedSkewedRoutingMatchesCpu) {
    for (WeightFormat f : kQuantFormats) {
        SCOPED_TRACE(name(f));
        Experts ex(192, 64, 16, 16, 4500, f);
        for (Routing r : {Routing::OneExpert, Routing::FewExperts})
            for (size_t n : {1, 7, 300, 1024})
                check(ex, 16, n, 4, r, {0, 32, 64, 128}, 4600 + uint32_t(n));
    }
}

TEST_F(GpuMoeGrouped, QuantizedRealShapesMatchCpu) {
    // hidden 2304, inter 1024, 256 experts (over 8 weight sets), top-8.
    for (WeightFormat f : kQuantFormats) {
        SCOPED_TRACE(name(f));
        Experts ex(2304, 1024, 256, 8, 5000, f);
        for (size_t n : {1, 7, 300}) check(ex, 256, n, 8, Routing::Random, {0}, 5100 + uint32_t(n));
        check(ex, 256, 7, 8, Routing::Random, {-1}, 5200);
        check(ex, 256, 1024, 8, Routing::Random, {0, 32, 64, 128}, 5300);
        check(ex, 256, 256, 8, Routing::OneExpert, {0, 128}, 5400);
    }
}

// 60 and 36 columns: INT4 rows of 8 and 5 words with padding nibbles, partial FP8 blocks.
TEST_F(GpuMoeGrouped, QuantizedOddDimensionsTakeTheSimplePath) {
    for (WeightFormat f : kQuantFormats) {
        SCOPED_TRACE(name(f));
        Experts ex(60, 36, 6, 6, 5500, f);
        for (size_t n : {1, 7, 100}) check(ex, 6, n, 2, Routing::Random, {0}, 5600 + uint32_t(n));
    }
}

// The kernel dequantizes each INT4 weight to exactly bf16(code * scale): a quantized run
// equals, bit for bit, a run on bf16 experts holding bf16(kl::dequantize()), on every path;
// so does an FP8 one on the simple path (its tensor-core path is W8A8, checked above).
TEST_F(GpuMoeGrouped, QuantizedEqualsBf16OfDequantizedBitForBit) {
    struct Case {
        size_t hidden, inter, experts, sets, top_k, n;
        Routing routing;
        std::vector<int> tiles;
    };
    const Case cases[] = {
        {2304, 1024, 256, 4, 8, 7, Routing::Random, {32, 64, 128, -1}},
        {2304, 1024, 256, 4, 8, 300, Routing::Random, {0, 32, 64, 128}},
        {2304, 1024, 256, 4, 8, 256, Routing::OneExpert, {128}},
        {136, 40, 12, 12, 3, 64, Routing::Random, {32, 64, 128, -1}},
        {60, 36, 6, 6, 2, 33, Routing::Random, {-1}},
    };
    uint32_t seed = 6000;
    for (WeightFormat f : kQuantFormats)
        for (const Case& c : cases) {
            seed += 100;
            const Experts quantized(c.hidden, c.inter, c.experts, c.sets, seed, f);
            const Experts rounded(c.hidden, c.inter, c.experts, c.sets, seed, f, true);
            const size_t h = c.hidden, n = c.n, k = c.top_k;
            auto x = randn(n * h, seed + 1);
            Dev<uint16_t> dx(to_bf16(x));
            Dev<int32_t> dc(route(n, k, c.experts, c.routing, seed + 2));
            Dev<float> dw(randn(n * k, seed + 3, 0.5f)), dout(n * h);
            const size_t bytes = kl::cuda::moe_grouped_workspace_bytes(n, h, c.inter, c.experts, k);
            Dev<uint8_t> ws(bytes);
            for (int tile_m : c.tiles) {
                if (f == WeightFormat::Fp8 && tile_m != -1) continue;
                std::vector<float> got[2];
                for (int which = 0; which < 2; ++which) {
                    const Experts& ex = which == 0 ? quantized : rounded;
                    ASSERT_EQ(cudaMemset(ws.ptr, 0xFF, bytes), cudaSuccess);
                    ASSERT_EQ(cudaMemset(dout.ptr, 0, n * h * 4), cudaSuccess);
                    kl::cuda::moe_experts_grouped_tuned(
                        reinterpret_cast<const bf16*>(dx.ptr), n, h, c.inter, c.experts, k, dc.ptr,
                        dw.ptr, ex.weights(), ws.ptr, dout.ptr, nullptr, tile_m, 0xFu);
                    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
                    got[which] = dout.get();
                }
                // Not vacuous: the outputs are finite and not all zero.
                const bool some =
                    std::any_of(got[0].begin(), got[0].end(), [](float v) { return v != 0.0f; });
                const bool finite = std::all_of(got[0].begin(), got[0].end(),
                                                [](float v) { return std::isfinite(v); });
                EXPECT_TRUE(some && finite) << name(f) << " hidden " << h << " tile_m " << tile_m;
                EXPECT_EQ(0, std::memcmp(got[0].data(), got[1].data(), got[0].size() * 4))
                    << name(f) << " hidden " << h << " inter " << c.inter << " n " << n << " "
                    << name(c.routing) << " tile_m " << tile_m;
            }
        }
}

}  // namespace
