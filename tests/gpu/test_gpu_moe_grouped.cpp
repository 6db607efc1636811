// Prefill MoE experts (moe_grouped.cu) against the CPU experts (matmul_wt + silu per chosen
// expert, fp32) on fresh random inputs: tiny and real shapes, n from 1 to 1024, random and
// skewed routing, every tile height and the simple path, and bit-identical reruns.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
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
#include "gpu_test_util.h"

namespace {

using kl::cuda::bf16;
using kl::test::rel_error;

// bf16 activations between the two GEMMs (rounding 2^-9) against an fp32 reference.
constexpr double kTolerance = 1e-2;

enum class Routing { Random, OneExpert, FewExperts };

const char* name(Routing r) {
    return r == Routing::Random ? "random" : r == Routing::OneExpert ? "one-expert" : "few-experts";
}

// `sets` distinct weight sets; expert e uses set e % sets, so 256 experts cost 8 sets of memory.
struct Experts {
    Experts(size_t hidden, size_t inter, size_t experts, size_t sets, uint32_t seed)
        : hidden(hidden), inter(inter), sets(sets), w1(sets), w3(sets), w2(sets) {
        std::vector<const bf16*> p1, p3, p2;
        const float in_scale = 1.0f / std::sqrt(float(hidden)),
                    out_scale = 1.0f / std::sqrt(float(inter));
        for (size_t s = 0; s < sets; ++s) {
            w1[s] = randn(inter * hidden, seed + 3 * s, in_scale);
            w3[s] = randn(inter * hidden, seed + 3 * s + 1, in_scale);
            w2[s] = randn(hidden * inter, seed + 3 * s + 2, out_scale);
            for (auto* w : {&w1[s], &w3[s], &w2[s]})
                dev.push_back(std::make_unique<Dev<uint16_t>>(to_bf16(*w)));
        }
        for (size_t e = 0; e < experts; ++e) {
            const size_t s = e % sets;
            p1.push_back(reinterpret_cast<const bf16*>(dev[3 * s]->ptr));
            p3.push_back(reinterpret_cast<const bf16*>(dev[3 * s + 1]->ptr));
            p2.push_back(reinterpret_cast<const bf16*>(dev[3 * s + 2]->ptr));
        }
        d1 = std::make_unique<Dev<const bf16*>>(p1);
        d3 = std::make_unique<Dev<const bf16*>>(p3);
        d2 = std::make_unique<Dev<const bf16*>>(p2);
    }
    kl::cuda::ExpertWeights weights() const {  // bf16 experts: no scales
        kl::cuda::ExpertWeights w;
        w.w1 = reinterpret_cast<const void* const*>(d1->ptr);
        w.w3 = reinterpret_cast<const void* const*>(d3->ptr);
        w.w2 = reinterpret_cast<const void* const*>(d2->ptr);
        return w;
    }
    size_t hidden, inter, sets;
    std::vector<std::vector<float>> w1, w3, w2;  // bf16-rounded values, fp32
    std::vector<std::unique_ptr<Dev<uint16_t>>> dev;
    std::unique_ptr<Dev<const bf16*>> d1, d3, d2;
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
// one batched matmul_wt per weight set over the rows routed to it.
std::vector<float> reference(kl::ThreadPool& pool, const Experts& ex, const std::vector<float>& x,
                             size_t n, size_t k, const std::vector<int32_t>& chosen,
                             const std::vector<float>& weights) {
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
        kl::cpu::matmul_wt(pool, xs.data(), m, h, ex.w1[s].data(), inter, g.data());
        kl::cpu::matmul_wt(pool, xs.data(), m, h, ex.w3[s].data(), inter, u.data());
        for (size_t i = 0; i < m * inter; ++i) g[i] = kl::cpu::silu(g[i]) * u[i];
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
            std::printf("[ moe      ] worst rel error %.3g (tolerance %.0e)\n", worst_, kTolerance);
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
                    const double err = rel_error(got, want);
                    EXPECT_LE(err, kTolerance) << "n " << n << " hidden " << h << " inter " << inter
                                               << " experts " << experts << " top_k " << k << " "
                                               << name(routing) << " tile_m " << tile_m;
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
    // The tensor-core path needs dimensions divisible by 8.
    try {
        kl::cuda::moe_experts_grouped_tuned(x, n, 60, 36, 6, k, dc.ptr, dw.ptr, ex.weights(),
                                            ws.ptr, dout.ptr, nullptr, 32, 0xFu);
        ADD_FAILURE() << "forced tensor-core tiles on hidden 60 did not fail";
    } catch (const kl::Error& e) {
        EXPECT_EQ(e.status(), kl::Status::Unsupported) << e.what();
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
    // No tokens: nothing to do, nothing touched.
    EXPECT_NO_THROW(kl::cuda::moe_experts_grouped(x, 0, 60, 36, 6, k, dc.ptr, dw.ptr, ex.weights(),
                                                  nullptr, dout.ptr, nullptr));
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace
