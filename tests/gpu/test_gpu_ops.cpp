// CUDA ops against the CPU ops on fresh random inputs (incl. strong decay, odd lengths).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/ops.h"
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_util.h"
#include "backends/cuda/gemm.h"
#include "backends/cuda/ops.h"
#include "compare.h"
#include "core/safetensors.h"
#include "gpu_test_util.h"

namespace {

using kl::test::rel_error;

class GpuOps : public ::testing::Test {
    void SetUp() override {
        if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
    }
};

TEST_F(GpuOps, KdaRecurrentMatchesCpuIncludingStrongDecay) {
    kl::ThreadPool pool(2);
    for (size_t D : {16, 32, 64, 128})
        for (float decay_scale : {0.05f, 10.0f})
            for (size_t T : {1, 7, 65}) {
                const size_t H = 3, n = T * H * D;
                auto q = randn(n, 1), k = randn(n, 2), v = randn(n, 3),
                     s0 = randn(H * D * D, 4, 0.3f);
                kl::cpu::l2_normalize_heads(q.data(), T * H, D);
                kl::cpu::l2_normalize_heads(k.data(), T * H, D);
                std::vector<float> g(n), beta(T * H);
                std::mt19937 rng(5);
                std::uniform_real_distribution<float> u(0.0f, 1.0f);
                for (float& x : g) x = -decay_scale * u(rng);
                for (float& b : beta) b = u(rng);
                std::vector<float> s_cpu = s0, o_cpu(n);
                kl::cpu::kda_recurrent(pool, q.data(), k.data(), v.data(), g.data(), beta.data(), T,
                                       H, D, 0.25f, s_cpu.data(), o_cpu.data());
                Dev<float> dq(q), dk(k), dv(v), dg(g), db(beta), ds(s0), doo(n);
                kl::cuda::kda_recurrent(dq.ptr, dk.ptr, dv.ptr, dg.ptr, db.ptr, T, H, D, 0.25f,
                                        ds.ptr, doo.ptr, nullptr);
                cudaDeviceSynchronize();
                EXPECT_LE(rel_error(doo.get(), o_cpu), 1e-4) << "D=" << D << " T=" << T;
                EXPECT_LE(rel_error(ds.get(), s_cpu), 1e-4) << "D=" << D << " T=" << T;
            }
}

TEST_F(GpuOps, ShortConvMatchesCpu) {
    // T < kernel - 1 shifts part of the old state; T = 1 is the decode case.
    for (size_t K : {1, 2, 4, 7})
        for (size_t T : {1, 2, 3, 37, 1000}) {
            const size_t C = 96;
            auto x = randn(T * C, 1 + T), w = randn(C * K, 2), s0 = randn((K - 1) * C, 3 + K);
            const auto wb = to_bf16(w);
            std::vector<float> s_cpu = s0, y_cpu(T * C);
            kl::cpu::short_conv_silu(x.data(), T, C, w.data(), K, s_cpu.data(), y_cpu.data());
            Dev<float> dx(x), ds(s0), dy(T * C);
            Dev<uint16_t> dw(wb);
            kl::cuda::short_conv_silu(dx.ptr, T, C, reinterpret_cast<const kl::cuda::bf16*>(dw.ptr),
                                      K, K > 1 ? ds.ptr : nullptr, dy.ptr, nullptr);
            cudaDeviceSynchronize();
            EXPECT_LE(rel_error(dy.get(), y_cpu), 1e-5) << "K=" << K << " T=" << T;
            if (K > 1) {
                EXPECT_LE(rel_error(ds.get(), s_cpu), 1e-6) << "K=" << K << " T=" << T;
            }
        }
}

TEST_F(GpuOps, ShortConvHeadsMatchCpu) {
    // short_conv_silu_heads against the CPU's conv then per-head L2 norm: head widths of the
    // warp-per-head kernel (16..128, 12) and one it leaves to the general kernels (10); the
    // decode-sized and odd lengths; the conv state shifted as short_conv_silu does.
    for (size_t D : {16, 32, 64, 128, 12, 10})
        for (size_t H : {1, 3})
            for (size_t K : {1, 4})
                for (size_t T : {1, 3, 37, 300})
                    for (bool normalize : {false, true}) {
                        const size_t C = H * D;
                        const uint32_t seed = uint32_t(D * 1000 + H * 100 + K * 10 + T);
                        auto x = randn(T * C, seed), w = randn(C * K, seed + 1);
                        auto s0 = randn((K - 1) * C, seed + 2);
                        const auto wb = to_bf16(w);  // both sides use the bf16 weights
                        std::vector<float> s_cpu = s0, y_cpu(T * C);
                        kl::cpu::short_conv_silu(x.data(), T, C, w.data(), K, s_cpu.data(),
                                                 y_cpu.data());
                        if (normalize) kl::cpu::l2_normalize_heads(y_cpu.data(), T * H, D);
                        Dev<float> dx(x), ds(s0), dy(T * C);
                        Dev<uint16_t> dw(wb);
                        kl::cuda::short_conv_silu_heads(
                            dx.ptr, T, H, D, reinterpret_cast<const kl::cuda::bf16*>(dw.ptr), K,
                            K > 1 ? ds.ptr : nullptr, dy.ptr, normalize, nullptr);
                        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
                        const std::string at =
                            "D=" + std::to_string(D) + " H=" + std::to_string(H) +
                            " K=" + std::to_string(K) + " T=" + std::to_string(T) +
                            (normalize ? " normalized" : "");
                        EXPECT_LE(rel_error(dy.get(), y_cpu), 1e-5) << at;
                        if (K > 1) {
                            EXPECT_LE(rel_error(ds.get(), s_cpu), 1e-6) << at;
                        }
                    }
}

TEST_F(GpuOps, KdaGatedNormMatchesCpu) {
    // kda_gated_norm (whichever kernel KL_CUDA_KDA_FUSED selects) against the CPU's
    // RMSNorm_D(o) * o_norm * sigmoid(gate) per (token, head): bf16 output, 4e-3 of the
    // largest value.
    for (size_t D : {16, 64, 128, 12, 10})
        for (size_t T : {1, 5, 300}) {
            const size_t H = 3, n = T * H * D;
            const float eps = 1e-6f;
            auto o = randn(n, uint32_t(D + T)), gate = randn(n, uint32_t(D + T + 1));
            auto w = randn(D, 7, 0.5f);
            for (float& v : w) v += 1.0f;
            const auto wb = to_bf16(w);
            std::vector<float> want(n);
            for (size_t r = 0; r < T * H; ++r) {
                kl::cpu::rms_norm(&o[r * D], w.data(), D, eps, &want[r * D]);
                for (size_t c = 0; c < D; ++c) want[r * D + c] *= kl::cpu::sigmoid(gate[r * D + c]);
            }
            Dev<float> d_o(o), d_gate(gate);
            Dev<uint16_t> dw(wb), dy(n);
            kl::cuda::kda_gated_norm(d_o.ptr, d_gate.ptr,
                                     reinterpret_cast<const kl::cuda::bf16*>(dw.ptr), T, H, D, eps,
                                     reinterpret_cast<kl::cuda::bf16*>(dy.ptr), nullptr);
            ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
            const std::vector<uint16_t> got_bits = dy.get();
            std::vector<float> got(n);
            for (size_t i = 0; i < n; ++i) got[i] = kl::bf16_to_f32(got_bits[i]);
            EXPECT_LE(rel_error(got, want), 4e-3)
                << "D=" << D << " T=" << T << (kl::cuda::kda_fused_prefill_ops() ? " fused" : "");
        }
}

TEST_F(GpuOps, RmsNormsMatchCpu) {
    // rms_norm_to_bf16 (strided rows) and add_rms_norm_to_bf16 against the CPU RMSNorm of
    // the same fp32 rows: bf16 outputs within bf16 rounding (4e-3 of the largest), the
    // residual sum written back exactly. Decode row counts and a prefill one; the model's
    // 2304, short and odd rows, rows past 256 threads x 16 (more threads per block).
    for (size_t rows : {1, 2, 4, 300})
        for (size_t dim : {2304, 64, 100, 4100, 16384}) {
            const size_t stride = dim + 8;
            auto x = randn(rows * stride, uint32_t(rows + dim)), branch = randn(rows * dim, 3);
            auto w = randn(dim, 4, 0.5f);
            for (float& v : w) v += 1.0f;
            const auto wb = to_bf16(w);
            const float eps = 1e-6f;
            std::vector<float> want(rows * dim), sum(rows * dim), want_add(rows * dim);
            for (size_t r = 0; r < rows; ++r) {
                kl::cpu::rms_norm(&x[r * stride], w.data(), dim, eps, &want[r * dim]);
                for (size_t c = 0; c < dim; ++c)
                    sum[r * dim + c] = x[r * stride + c] + branch[r * dim + c];
                kl::cpu::rms_norm(&sum[r * dim], w.data(), dim, eps, &want_add[r * dim]);
            }
            auto to_f32 = [](const std::vector<uint16_t>& b) {
                std::vector<float> f(b.size());
                for (size_t i = 0; i < b.size(); ++i) f[i] = kl::bf16_to_f32(b[i]);
                return f;
            };
            Dev<uint16_t> dw(wb), dy(rows * dim);
            Dev<float> dx(x), db(branch);
            auto* yp = reinterpret_cast<kl::cuda::bf16*>(dy.ptr);
            const auto* w_dev = reinterpret_cast<const kl::cuda::bf16*>(dw.ptr);
            kl::cuda::rms_norm_to_bf16(dx.ptr, stride, w_dev, rows, dim, eps, yp, dim, nullptr);
            ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
            EXPECT_LE(rel_error(to_f32(dy.get()), want), 4e-3) << rows << "x" << dim;
            std::vector<float> packed(rows * dim);  // add_rms_norm takes unstrided rows
            for (size_t r = 0; r < rows; ++r)
                std::copy(&x[r * stride], &x[r * stride] + dim, &packed[r * dim]);
            Dev<float> dp(packed);
            kl::cuda::add_rms_norm_to_bf16(dp.ptr, db.ptr, w_dev, rows, dim, eps, yp, nullptr);
            ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
            EXPECT_LE(rel_error(to_f32(dy.get()), want_add), 4e-3) << "add " << rows << "x" << dim;
            EXPECT_EQ(dp.get(), sum) << "add " << rows << "x" << dim;
        }
}

TEST_F(GpuOps, MoeRouteMatchesCpu) {
    // Plain (one warp routes) and grouped (a block), the released shape (256 experts, 8
    // chosen) with tied logits and biases (ties go to the lower index), more experts than the
    // block has threads, and a count that leaves lanes without an expert (100).
    struct Case {
        size_t E, k, groups, kept;
        bool ties;
    };
    for (const Case& c :
         {Case{16, 4, 1, 1, false}, Case{16, 4, 4, 2, false}, Case{256, 8, 1, 1, true},
          Case{256, 8, 8, 4, true}, Case{1024, 8, 1, 1, false}, Case{100, 5, 1, 1, true}}) {
        const size_t n = 50, E = c.E, k = c.k;
        const bool grouped = c.groups > 1;
        auto logits = randn(n * E, 1), bias = randn(E, 2, 0.1f);
        if (c.ties)  // experts 3j and 3j+1 tie for every token
            for (size_t e = 1; e < E; e += 3) {
                bias[e] = bias[e - 1];
                for (size_t t = 0; t < n; ++t) logits[t * E + e] = logits[t * E + e - 1];
            }
        kl::cpu::RouterConfig rc{E, k, true, 2.5f, grouped, c.groups, c.kept};
        std::vector<int32_t> want_e(n * k);
        std::vector<float> want_w(n * k);
        for (size_t t = 0; t < n; ++t)
            kl::cpu::moe_route(rc, &logits[t * E], bias.data(), &want_e[t * k], &want_w[t * k]);
        Dev<float> dl(logits), db(bias), dw(n * k);
        Dev<int32_t> de(n * k);
        kl::cuda::moe_route(dl.ptr, db.ptr, n, E, k, true, 2.5f, c.groups, c.kept, de.ptr, dw.ptr,
                            nullptr);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        EXPECT_EQ(de.get(), want_e) << "E=" << E << " groups=" << c.groups;
        EXPECT_LE(rel_error(dw.get(), want_w), 1e-5) << "E=" << E << " groups=" << c.groups;
    }
}

TEST_F(GpuOps, MoeRouteChoosesValidExpertsForNanLogits) {
    // NaN router logits (a broken checkpoint) must still choose k distinct experts in range:
    // an id out of range would read another expert table's memory.
    const size_t n = 3, E = 256, k = 8;
    auto logits = randn(n * E, 3);
    for (size_t e = 0; e < E; ++e) logits[e] = NAN;  // token 0: all NaN
    for (size_t e = 0; e < E; e += 2) logits[E + e] = NAN;  // token 1: half
    Dev<float> dl(logits), db(std::vector<float>(E, 0.0f)), dw(n * k);
    Dev<int32_t> de(n * k);
    kl::cuda::moe_route(dl.ptr, db.ptr, n, E, k, true, 1.0f, 1, 1, de.ptr, dw.ptr, nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const auto chosen = de.get();
    for (size_t t = 0; t < n; ++t) {
        std::vector<int32_t> ids(chosen.begin() + t * k, chosen.begin() + (t + 1) * k);
        for (int32_t id : ids) EXPECT_TRUE(id >= 0 && id < int32_t(E)) << "token " << t;
        std::sort(ids.begin(), ids.end());
        EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end()) << "token " << t;
    }
    for (size_t j = 0; j < k; ++j) EXPECT_EQ(chosen[k + j] % 2, 1) << "token 1 slot " << j;
}

TEST_F(GpuOps, DecodeRouterEqualsGemvThenRoute) {
    // The fused decode router against gemv_bf16 + moe_route on the same inputs: logits,
    // experts and weights bit-equal. Router rows repeat in pairs (equal logits: ties broken
    // to the lower index) and biases repeat, across plain and grouped configurations, blocks
    // of 8 rows cut short (E = 100), and three calls in a row (the counter resets itself).
    struct Case {
        size_t E, k, groups, kept, hidden;
    };
    for (const Case& c :
         {Case{256, 8, 1, 1, 2304}, Case{256, 8, 8, 4, 2304}, Case{64, 6, 4, 2, 64},
          Case{100, 3, 5, 2, 2312}, Case{16, 4, 1, 1, 64}, Case{100, 7, 1, 1, 2312}})
        for (size_t n : {1, 2, 3, 4}) {
            const uint32_t seed = uint32_t(c.E * 10 + n);
            auto x = randn(n * c.hidden, seed), w = randn(c.E * c.hidden, seed + 1, 0.05f);
            for (size_t e = 1; e < c.E; e += 3)  // every third row equals the one before
                std::copy(w.begin() + (e - 1) * c.hidden, w.begin() + e * c.hidden,
                          w.begin() + e * c.hidden);
            auto bias = randn(c.E, seed + 2, 0.1f);
            for (size_t e = 1; e < c.E; e += 3) bias[e] = bias[e - 1];
            bias[c.E - 1] = 5.0f;  // one expert every token takes
            const auto xb = to_bf16(x), wb = to_bf16(w);
            Dev<uint16_t> dx(xb), dw(wb);
            Dev<float> db(bias), want_logits(n * c.E), want_w(n * c.k), logits(n * c.E),
                weights(n * c.k);
            Dev<int32_t> want_e(n * c.k), chosen(n * c.k);
            Dev<unsigned> done(std::vector<unsigned>{0});
            const auto* xp = reinterpret_cast<const kl::cuda::bf16*>(dx.ptr);
            const auto* wp = reinterpret_cast<const kl::cuda::bf16*>(dw.ptr);
            kl::cuda::gemv_bf16(xp, n, c.hidden, wp, c.E, want_logits.ptr, nullptr);
            kl::cuda::moe_route(want_logits.ptr, db.ptr, n, c.E, c.k, true, 2.5f, c.groups, c.kept,
                                want_e.ptr, want_w.ptr, nullptr);
            ASSERT_TRUE(kl::cuda::moe_route_decode_supported(n, c.hidden));
            for (int call = 0; call < 3; ++call) {
                kl::cuda::moe_route_decode(xp, n, c.hidden, wp, db.ptr, c.E, c.k, true, 2.5f,
                                           c.groups, c.kept, logits.ptr, done.ptr, chosen.ptr,
                                           weights.ptr, nullptr);
                ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
                const std::string what = "E=" + std::to_string(c.E) + " groups=" +
                                         std::to_string(c.groups) + " n=" + std::to_string(n) +
                                         " call " + std::to_string(call);
                EXPECT_EQ(logits.get(), want_logits.get()) << what;
                EXPECT_EQ(chosen.get(), want_e.get()) << what;
                EXPECT_EQ(weights.get(), want_w.get()) << what;
                EXPECT_EQ(done.get(), std::vector<unsigned>{0}) << what;
            }
        }
    EXPECT_FALSE(kl::cuda::moe_route_decode_supported(5, 64));
}

// One decode-experts call against the CPU experts: n tokens x top-k of E random distinct
// experts (+ the shared expert as one more slot), random slot weights of either sign, the
// experts' weights in `code` (the CPU runs the values they stand for). With `owned` narrower
// than [0, E), as on a shard of a split model: the other experts' tables are null and
// keep_owned_experts masks their slots, which then add nothing.
// x_scale multiplies x (far from 1: inputs and act outside f16's range, for the kernels that
// stage them as scaled f16).
void check_decode_experts(size_t n, size_t k, size_t E, size_t h, size_t inter, uint32_t seed,
                          kl::cuda::WeightCode code = kl::cuda::WeightCode::Bf16,
                          std::pair<int32_t, int32_t> owned = {0, INT32_MAX},
                          float x_scale = 1.0f) {
    owned.second = std::min<int32_t>(owned.second, int32_t(E));
    auto is_owned = [&](int32_t e) { return e >= owned.first && e < owned.second; };
    auto x = randn(n * h, seed, x_scale);
    const auto x_b = to_bf16(x);
    std::vector<std::vector<float>> w1(E + 1), w3(E + 1), w2(E + 1);  // [E]: the shared one
    std::vector<std::unique_ptr<DevWeight>> dev;
    std::vector<const void*> p1, p3, p2;
    std::vector<const float*> s1, s3, s2;
    for (size_t e = 0; e <= E; ++e) {
        const float scale_in = 2.0f / std::sqrt(float(h)), scale_down = 2.0f / std::sqrt(float(inter));
        w1[e] = randn(inter * h, seed + 10 + e, scale_in);
        w3[e] = randn(inter * h, seed + 1000 + e, scale_in);
        w2[e] = randn(h * inter, seed + 2000 + e, scale_down);
        for (auto* w : {&w1[e], &w3[e], &w2[e]}) {
            const bool down = w == &w2[e];
            dev.push_back(
                std::make_unique<DevWeight>(*w, down ? h : inter, down ? inter : h, code));
            const kl::cuda::QMatrix m = dev.back()->matrix();
            const bool held = e == E || is_owned(int32_t(e));  // [E] is the shared expert
            (w == &w1[e] ? p1 : w == &w3[e] ? p3 : p2).push_back(held ? m.data : nullptr);
            (w == &w1[e] ? s1 : w == &w3[e] ? s3 : s2).push_back(held ? m.scales : nullptr);
        }
    }
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> uw(-0.6f, 1.0f);
    std::vector<int32_t> chosen(n * k), ids(E);
    std::vector<float> weights(n * k);
    for (size_t t = 0; t < n; ++t) {
        for (size_t e = 0; e < E; ++e) ids[e] = int32_t(e);
        std::shuffle(ids.begin(), ids.end(), rng);
        for (size_t i = 0; i < k; ++i) chosen[t * k + i] = ids[i], weights[t * k + i] = uw(rng);
    }
    kl::ThreadPool pool(2);
    auto expert = [&](size_t t, size_t e) {  // CPU expert e on token t
        std::vector<float> g(inter), u(inter), y(h);
        kl::cpu::matmul_wt(pool, &x[t * h], 1, h, w1[e].data(), inter, g.data());
        kl::cpu::matmul_wt(pool, &x[t * h], 1, h, w3[e].data(), inter, u.data());
        for (size_t i = 0; i < inter; ++i) g[i] = kl::cpu::silu(g[i]) * u[i];
        kl::cpu::matmul_wt(pool, g.data(), 1, inter, w2[e].data(), h, y.data());
        return y;
    };
    const std::vector<float> out0 = randn(n * h, seed + 7);
    std::vector<float> routed(n * h, 0.0f), shared(n * h, 0.0f);
    for (size_t slot = 0; slot < n * k; ++slot) {
        if (!is_owned(chosen[slot])) continue;
        const auto y = expert(slot / k, chosen[slot]);
        for (size_t c = 0; c < h; ++c) routed[slot / k * h + c] += weights[slot] * y[c];
    }
    for (size_t t = 0; t < n; ++t) {
        const auto y = expert(t, E);
        for (size_t c = 0; c < h; ++c) shared[t * h + c] = y[c];
    }
    Dev<uint16_t> dx(x_b);
    Dev<int32_t> dc(chosen);
    if (owned != std::pair<int32_t, int32_t>{0, int32_t(E)}) {
        kl::cuda::keep_owned_experts(dc.ptr, n * k, owned.first, owned.second, nullptr);
        std::vector<int32_t> masked = chosen;
        for (int32_t& e : masked)
            if (!is_owned(e)) e = -1;
        ASSERT_EQ(dc.get(), masked);
    }
    Dev<float> dw(weights), act(n * (k + 1) * inter);
    Dev<const void*> d1(p1), d3(p3), d2(p2);
    Dev<const float*> ds1(s1), ds3(s3), ds2(s2);
    kl::cuda::ExpertWeights experts{code, d1.ptr, d3.ptr, d2.ptr, nullptr, nullptr, nullptr};
    if (code != kl::cuda::WeightCode::Bf16)
        experts.s1 = ds1.ptr, experts.s3 = ds3.ptr, experts.s2 = ds2.ptr;
    for (bool with_shared : {false, true}) {
        // Without the shared slot the sum is added to out; with it, out is overwritten.
        Dev<float> dout(out0);
        kl::cuda::DecodeSharedExpert s;
        if (with_shared) s = {{code, p1[E], s1[E]}, {code, p3[E], s3[E]}, {code, p2[E], s2[E]}};
        kl::cuda::moe_experts_gemv(reinterpret_cast<const kl::cuda::bf16*>(dx.ptr), n, h, inter, k,
                                   dc.ptr, dw.ptr, experts, s, !with_shared, act.ptr, dout.ptr,
                                   nullptr);
        cudaDeviceSynchronize();
        std::vector<float> want(n * h);
        for (size_t i = 0; i < want.size(); ++i)
            want[i] = routed[i] + (with_shared ? shared[i] : out0[i]);
        // fp32 sums of bf16 products in another order than the CPU's: 1e-4.
        EXPECT_LE(rel_error(dout.get(), want), 1e-4)
            << "n=" << n << " k=" << k << " h=" << h << " inter=" << inter
            << " with_shared=" << with_shared << " " << code_name(code) << " owned [" << owned.first
            << ", " << owned.second << ")";
    }
}

TEST_F(GpuOps, DecodeExpertGemvMatchesCpuExperts) {
    check_decode_experts(2, 3, 5, 64, 40, 1);  // tiny: most lanes idle
    // The real shapes (one batch of loads per row: 9 per 2304, 4 per 1024), then rows one
    // piece longer than a batch (a second, mostly idle batch), odd slot counts for the
    // down kernel's slot pairs.
    for (size_t n : {1, 4}) check_decode_experts(n, 8, 9, 2304, 1024, 2 + uint32_t(n));
    check_decode_experts(3, 8, 9, 2312, 1032, 9);
    check_decode_experts(1, 1, 3, 2304 + 2304, 2048 + 8, 10);
    // A shard's experts: 4 of 9 owned, so most tokens have absent slots; none owned.
    check_decode_experts(4, 8, 9, 2304, 1024, 11, kl::cuda::WeightCode::Bf16, {3, 7});
    check_decode_experts(2, 8, 9, 2304, 1024, 12, kl::cuda::WeightCode::Bf16, {9, 9});
    // 16 slots a token: more than one round of loads for each warp of the split down kernel
    // (KL_CUDA_DECODE_NARROW=1), k = 1 above leaves three of its warps without a slot.
    check_decode_experts(2, 15, 20, 256, 136, 13);
}

// The same over FP8 and INT4 experts: the real shapes (5 chunks of 16 per lane per 2304-long
// row, 2 per 1024-long row, 9 slots in two groups of 5), a row tail in a partial 128-column
// block, and tiny rows where most lanes are idle.
TEST_F(GpuOps, DecodeExpertGemvReadsQuantizedExperts) {
    for (auto code : {kl::cuda::WeightCode::Fp8, kl::cuda::WeightCode::Int4}) {
        for (size_t n : {1, 4}) check_decode_experts(n, 8, 9, 2304, 1024, 20 + uint32_t(n), code);
        check_decode_experts(3, 8, 9, 2320, 1040, 29, code);
        check_decode_experts(2, 3, 5, 64, 48, 31, code);
        check_decode_experts(1, 1, 3, 2304 * 2 + 16, 2048 + 16, 37, code);
        check_decode_experts(4, 8, 9, 2304, 1024, 38, code, {3, 7});  // a shard's experts
        check_decode_experts(2, 15, 20, 256, 144, 41, code);          // 16 slots a token
        // x up to ~4e5 and act up to ~1e10 (past f16's 65504), and x ~1e-5.
        check_decode_experts(2, 8, 9, 2304, 1024, 39, code, {0, INT32_MAX}, 1e5f);
        check_decode_experts(1, 8, 9, 2304, 1024, 40, code, {0, INT32_MAX}, 1e-5f);
    }
}

TEST_F(GpuOps, FewTokenGemvMatchesCpuMatmul) {
    kl::ThreadPool pool(2);
    for (size_t n : {1, 2, 3, 4})
        // 3000 and 4096: a second, partial batch of loads; 6000: three batches
        for (size_t in : {64, 2304, 3000, 4096, 6000})
            for (size_t out : {7, 1000}) {
                auto x = randn(n * in, 1), w = randn(out * in, 2, 0.05f);
                const auto xb = to_bf16(x), wb = to_bf16(w);
                ASSERT_TRUE(kl::cuda::gemv_supported(n, in));
                std::vector<float> want(n * out);
                kl::cpu::matmul_wt(pool, x.data(), n, in, w.data(), out, want.data());
                Dev<uint16_t> dx(xb), dw(wb);
                Dev<float> dy(n * out);
                kl::cuda::gemv_bf16(reinterpret_cast<const kl::cuda::bf16*>(dx.ptr), n, in,
                                    reinterpret_cast<const kl::cuda::bf16*>(dw.ptr), out, dy.ptr,
                                    nullptr);
                cudaDeviceSynchronize();
                EXPECT_LE(rel_error(dy.get(), want), 1e-5) << n << "x" << in << "->" << out;
            }
    EXPECT_FALSE(kl::cuda::gemv_supported(5, 64));
    EXPECT_FALSE(kl::cuda::gemv_supported(1, 63));
}

// The few-token GEMV over FP8 and INT4 weights against the CPU on their values: rows within
// one 128-row block and across several, columns in whole and partial 128-column blocks, one
// and two batches of 8 chunks per lane, outputs written ldy apart.
TEST_F(GpuOps, FewTokenGemvReadsQuantizedWeights) {
    kl::ThreadPool pool(2);
    for (auto code : {kl::cuda::WeightCode::Fp8, kl::cuda::WeightCode::Int4})
        for (size_t n : {1, 2, 3, 4})
            for (size_t in : {16, 112, 2304, 4096, 6000})
                for (size_t out : {7, 130, 1000}) {
                    auto x = randn(n * in, 3), w = randn(out * in, 4, 0.05f);
                    // Blocks of different magnitudes: scales that differ by row and column.
                    for (size_t r = 0; r < out; ++r)
                        for (size_t c = 0; c < in; ++c)
                            w[r * in + c] *= float(1 + r / 128 % 3) * float(1 + c / 128 % 2);
                    const auto xb = to_bf16(x);
                    DevWeight dw(w, out, in, code);
                    ASSERT_TRUE(kl::cuda::gemv_supported(n, in, code));
                    const size_t ldy = out + 3;
                    std::vector<float> want(n * out);
                    kl::cpu::matmul_wt(pool, x.data(), n, in, w.data(), out, want.data());
                    Dev<uint16_t> dx(xb);
                    Dev<float> dy(std::vector<float>(n * ldy, -1.0f));
                    kl::cuda::gemv(reinterpret_cast<const kl::cuda::bf16*>(dx.ptr), n, in,
                                   dw.matrix(), out, dy.ptr, ldy, nullptr);
                    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
                    const std::vector<float> y = dy.get();
                    std::vector<float> got(n * out);
                    for (size_t t = 0; t < n; ++t)
                        for (size_t r = 0; r < out; ++r) got[t * out + r] = y[t * ldy + r];
                    for (size_t t = 0; t < n; ++t)
                        for (size_t r = out; r < ldy; ++r) EXPECT_EQ(y[t * ldy + r], -1.0f);
                    // fp32 sums in another order than the CPU's, per-chunk scaling: 1e-5.
                    EXPECT_LE(rel_error(got, want), 1e-5)
                        << code_name(code) << " " << n << "x" << in << "->" << out;
                }
    EXPECT_FALSE(kl::cuda::gemv_supported(1, 24, kl::cuda::WeightCode::Fp8));
    EXPECT_TRUE(kl::cuda::gemv_supported(1, 24, kl::cuda::WeightCode::Bf16));
}

// The quantized GEMV with x far from 1 (past f16's range, and tiny), the real shapes.
TEST_F(GpuOps, FewTokenGemvQuantizedAtExtremeMagnitudes) {
    kl::ThreadPool pool(2);
    for (auto code : {kl::cuda::WeightCode::Fp8, kl::cuda::WeightCode::Int4})
        for (float x_scale : {1e5f, 1e-5f})
            for (size_t n : {1, 3})
                for (size_t in : {2304, 4096}) {
                    const size_t out = 2304;
                    auto x = randn(n * in, 8, x_scale), w = randn(out * in, 9, 0.05f);
                    const auto xb = to_bf16(x);
                    DevWeight dw(w, out, in, code);
                    std::vector<float> want(n * out);
                    kl::cpu::matmul_wt(pool, x.data(), n, in, w.data(), out, want.data());
                    Dev<uint16_t> dx(xb);
                    Dev<float> dy(n * out);
                    kl::cuda::gemv(reinterpret_cast<const kl::cuda::bf16*>(dx.ptr), n, in,
                                   dw.matrix(), out, dy.ptr, out, nullptr);
                    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
                    EXPECT_LE(rel_error(dy.get(), want), 1e-5)
                        << code_name(code) << " x scale " << x_scale << " " << n << "x" << in;
                }
}

// A quantized weight and a bf16 one in one launch (the KDA projections of a quantized model):
// bit-equal to the two GEMVs it replaces, the columns past both untouched.
TEST_F(GpuOps, GemvPairEqualsItsTwoGemvs) {
    for (auto code : {kl::cuda::WeightCode::Fp8, kl::cuda::WeightCode::Int4})
        for (size_t n : {1, 2, 4})
            for (size_t in : {112, 2304})
                for (size_t first_out : {130, 1024})
                    for (size_t second_out : {7, 288}) {
                        auto x_values = randn(n * in, 5),
                             first_values = randn(first_out * in, 6, 0.05f),
                             second_values = randn(second_out * in, 7, 0.05f);
                        const auto xb = to_bf16(x_values), second = to_bf16(second_values);
                        DevWeight first(first_values, first_out, in, code);
                        Dev<uint16_t> dx(xb), dsecond(second);
                        const size_t ldy = first_out + second_out + 5;
                        Dev<float> pair(std::vector<float>(n * ldy, -1.0f));
                        Dev<float> two(std::vector<float>(n * ldy, -1.0f));
                        const auto* x = reinterpret_cast<const kl::cuda::bf16*>(dx.ptr);
                        const auto* w2 = reinterpret_cast<const kl::cuda::bf16*>(dsecond.ptr);
                        kl::cuda::gemv_pair(x, n, in, first.matrix(), first_out, w2, second_out,
                                            pair.ptr, ldy, nullptr);
                        kl::cuda::gemv(x, n, in, first.matrix(), first_out, two.ptr, ldy, nullptr);
                        kl::cuda::gemv(x, n, in, {kl::cuda::WeightCode::Bf16, w2, nullptr},
                                       second_out, two.ptr + first_out, ldy, nullptr);
                        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
                        EXPECT_EQ(pair.get(), two.get()) << code_name(code) << " " << n << "x" << in
                                                         << "->" << first_out << "+" << second_out;
                    }
}

// Prefill GEMMs over quantized weights (Gemm): the weights expanded to bf16, then cuBLASLt,
// against the CPU on the bf16 of the weights' values. Shapes of the 48B model (q/k/v, the
// stacked KDA projections, o_proj, MLA kv_a with 576 rows, dense MLP) and odd ones; outputs
// packed and ldy apart.
TEST_F(GpuOps, PrefillGemmReadsQuantizedWeights) {
    kl::ThreadPool pool(2);
    struct Shape {
        size_t n, in, out, pad;
    };
    for (auto code : {kl::cuda::WeightCode::Fp8, kl::cuda::WeightCode::Int4})
        for (const Shape& s :
             {Shape{5, 2304, 4096, 0}, Shape{300, 4096, 2304, 8}, Shape{64, 2304, 576, 0},
              Shape{1000, 2304, 9216, 0}, Shape{17, 160, 48, 5}, Shape{4096, 2304, 12576, 0},
              Shape{13, 2304, 4096, 0}, Shape{1102, 576, 2304, 3}}) {
            auto x = randn(s.n * s.in, 5), w = randn(s.out * s.in, 6, 0.03f);
            const auto xb = to_bf16(x);
            DevWeight dw(w, s.out, s.in, code);
            kl::cuda::Gemm gemm;
            gemm.reserve_dequantized(s.out * s.in);
            gemm.prepare_fp8(dw.matrix(), s.out, s.in);
            gemm.reserve_fp8_activations(s.n, s.in, s.out);
            const size_t ldy = s.out + s.pad;
            // FP8 on the FP8 tensor cores: W's exact values times x's per-row FP8 values (W8A8),
            // for in and out of 2048 or more (smaller ones were faster expanded) and in a
            // multiple of 128 (cuBLASLt's rule; row counts not a multiple of 4 included: Gemm
            // pads them). Otherwise expanded like INT4: the bf16 weights times x.
            const bool w8a8 = gemm.runs_fp8(dw.matrix(), s.n, s.in, s.out, ldy);
            EXPECT_EQ(w8a8, code == kl::cuda::WeightCode::Fp8 && s.in % 128 == 0 && s.in >= 2048 &&
                                s.out >= 2048)
                << code_name(code) << " " << s.n << "x" << s.in << "->" << s.out;
            std::vector<float> wb = w;
            if (w8a8)
                w8a8_activations(x, s.n, s.in);
            else
                to_bf16(wb);
            std::vector<float> want(s.n * s.out);
            kl::cpu::matmul_wt(pool, x.data(), s.n, s.in, wb.data(), s.out, want.data());
            Dev<uint16_t> dx(xb);
            Dev<float> dy(std::vector<float>(s.n * ldy, -1.0f));
            gemm.run(reinterpret_cast<const kl::cuda::bf16*>(dx.ptr), s.n, s.in, dw.matrix(), s.out,
                     dy.ptr, ldy, nullptr);
            ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
            const std::vector<float> y = dy.get();
            std::vector<float> got(s.n * s.out);
            for (size_t t = 0; t < s.n; ++t)
                for (size_t r = 0; r < s.out; ++r) got[t * s.out + r] = y[t * ldy + r];
            if (s.pad) {
                EXPECT_EQ(y[s.out], -1.0f);
            }
            // fp32 sums of the same products in another order: 1e-5. The FP8 tensor cores
            // sum with fewer bits (a cuBLASLt probe on the H200 measured 1.2-2.6e-4 against
            // fp64 sums of the same FP8 products): 1e-3.
            EXPECT_LE(rel_error(got, want), w8a8 ? 1e-3 : 1e-5)
                << code_name(code) << (w8a8 ? " (W8A8) " : " ") << s.n << "x" << s.in << "->"
                << s.out;
        }
}

}  // namespace
