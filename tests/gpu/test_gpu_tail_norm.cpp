// The residual step run by the last block of a decode kernel (backends/cuda/tail_norm.cuh,
// KL_CUDA_DECODE_TAILNORM=1) against the same kernel followed by add_rms_norm_to_bf16, the
// path the CPU comparisons check (test_gpu_ops.cpp). The calls pass the tail themselves, so
// these run whatever the switch says.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "backends/cuda/ops.h"
#include "gpu_test_util.h"

namespace {

using kl::cuda::WeightCode;

class GpuTailNorm : public ::testing::Test {
    void SetUp() override {
        if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
    }
};

constexpr float kEps = 1e-6f;

kl::cuda::bf16* bf(const Dev<uint16_t>& d) {
    return reinterpret_cast<kl::cuda::bf16*>(d.ptr);
}

// The residual and the norm's weight of `rows` x `dim`, as the model holds them.
struct Residual {
    Residual(size_t rows, size_t dim, uint32_t seed)
        : x0(randn(rows * dim, seed, 3.0f)), w_values(randn(dim, seed + 1, 0.5f)) {
        for (float& v : w_values) v += 1.0f;
        w = std::make_unique<Dev<uint16_t>>(to_bf16(w_values));
    }
    std::vector<float> x0, w_values;
    std::unique_ptr<Dev<uint16_t>> w;
};

// One run's outputs: the branch the kernel wrote, x after the residual add, xn.
struct Outputs {
    std::vector<float> branch, x;
    std::vector<uint16_t> xn;
};

// Each element of b within one bf16 step (2^-7 of its magnitude, relative) of a's.
void expect_within_a_bf16_step(const std::vector<uint16_t>& a, const std::vector<uint16_t>& b,
                               const std::string& what) {
    ASSERT_EQ(a.size(), b.size());
    size_t off = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        const float u = kl::bf16_to_f32(a[i]), v = kl::bf16_to_f32(b[i]);
        if (std::fabs(u - v) > std::ldexp(std::fabs(u), -7) + 1e-30f) ++off;
    }
    EXPECT_EQ(off, 0u) << what;
}

// The tail's outputs (run(true)), twice in a row, against the separate norm's (run(false)):
// the branch and x bit for bit, xn bit for bit or within a bf16 step; the counter back at
// zero after each launch.
template <typename Run>
void expect_tail_matches(Run run, const Dev<unsigned>& counter, const std::string& what,
                         bool exact_xn) {
    const Outputs want = run(false);
    for (int round = 0; round < 2; ++round) {
        const Outputs got = run(true);
        const std::string at = what + " round " + std::to_string(round);
        EXPECT_EQ(got.branch, want.branch) << at;
        EXPECT_EQ(got.x, want.x) << at;
        if (exact_xn)
            EXPECT_EQ(got.xn, want.xn) << at;
        else
            expect_within_a_bf16_step(want.xn, got.xn, at);
        EXPECT_EQ(counter.get()[0], 0u) << at;
    }
}

// The decode GEMV (every format, 1 and 3 tokens; the KDA o_proj's 4096 -> 2304, the dense
// and MLA shapes' 2304 -> 2304, a short odd one) with the tail equals the GEMV and then the
// norm kernel bit for bit: the GEMV's blocks have the norm kernel's 256 threads, so the
// same sums. Run twice: the last block leaves the counter at zero for the next launch.
TEST_F(GpuTailNorm, GemvsLastBlockGivesTheNormKernelsResultBitForBit) {
    struct Shape {
        size_t in, out;
    };
    for (auto code : {WeightCode::Bf16, WeightCode::Fp8, WeightCode::Int4})
        for (size_t n : {1, 3})
            for (Shape s : {Shape{4096, 2304}, Shape{2304, 2304}, Shape{112, 200}}) {
                auto xv = randn(n * s.in, 11), wv = randn(s.out * s.in, 12, 0.05f);
                const auto xb = to_bf16(xv);
                DevWeight w(wv, s.out, s.in, code);
                Residual r(n, s.out, 13);
                Dev<uint16_t> dx(xb);
                Dev<unsigned> counter(std::vector<unsigned>{0});
                auto run = [&](bool tail) {
                    Dev<float> branch(n * s.out), x(r.x0);
                    Dev<uint16_t> xn(n * s.out);
                    kl::cuda::TailNorm t;
                    if (tail) t = {x.ptr, bf(*r.w), int(s.out), kEps, bf(xn), counter.ptr};
                    kl::cuda::gemv(bf(dx), n, s.in, w.matrix(), s.out, branch.ptr, s.out, nullptr,
                                   t);
                    if (!tail)
                        kl::cuda::add_rms_norm_to_bf16(x.ptr, branch.ptr, bf(*r.w), n, s.out, kEps,
                                                       bf(xn), nullptr);
                    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
                    return Outputs{branch.get(), x.get(), xn.get()};
                };
                expect_tail_matches(run, counter,
                                    std::string(code_name(code)) + " " + std::to_string(n) + "x" +
                                        std::to_string(s.in) + "->" + std::to_string(s.out),
                                    true);
            }
}

// The decode experts (every format, 1 and 4 tokens, with the shared expert as a slot and
// accumulating into the branch) with the tail in the down kernel's last block: the branch
// and the residual sum equal the separate norm's bit for bit; xn within one bf16 step (the
// experts' blocks have 128 threads, the norm kernel 256: the sum of squares in another
// order).
TEST_F(GpuTailNorm, DecodeExpertsLastBlockRunsTheResidualStep) {
    const size_t E = 9, k = 8, h = 2304, inter = 1024;
    for (auto code : {WeightCode::Bf16, WeightCode::Fp8, WeightCode::Int4}) {
        std::vector<std::unique_ptr<DevWeight>> dev;
        std::vector<const void*> p[3];
        std::vector<const float*> sc[3];
        for (size_t e = 0; e <= E; ++e)  // [E]: the shared expert
            for (int m = 0; m < 3; ++m) {
                const size_t rows = m == 2 ? h : inter, cols = m == 2 ? inter : h;
                auto v =
                    randn(rows * cols, uint32_t(100 + 3 * e + m), 2.0f / std::sqrt(float(cols)));
                dev.push_back(std::make_unique<DevWeight>(v, rows, cols, code));
                p[m].push_back(dev.back()->matrix().data);
                sc[m].push_back(dev.back()->matrix().scales);
            }
        Dev<const void*> d1(p[0]), d3(p[1]), d2(p[2]);
        Dev<const float*> s1(sc[0]), s3(sc[1]), s2(sc[2]);
        kl::cuda::ExpertWeights experts{code, d1.ptr, d3.ptr, d2.ptr, nullptr, nullptr, nullptr};
        if (code != WeightCode::Bf16) experts.s1 = s1.ptr, experts.s3 = s3.ptr, experts.s2 = s2.ptr;
        for (size_t n : {1, 4})
            for (bool with_shared : {false, true}) {
                std::mt19937 rng(uint32_t(n) + 7);
                std::vector<int32_t> chosen(n * k);
                std::vector<float> weights(n * k);
                for (size_t i = 0; i < n * k; ++i)
                    chosen[i] = int32_t((i * 5 + n) % E), weights[i] = float(rng() % 100) / 80.0f;
                auto xv = randn(n * h, 21);
                Dev<uint16_t> dx(to_bf16(xv));
                Dev<int32_t> dc(chosen);
                Dev<float> dw(weights), act(n * (k + 1) * inter);
                Dev<unsigned> counter(std::vector<unsigned>{0});
                Residual r(n, h, 23);
                const std::vector<float> branch0 = randn(n * h, 25);
                kl::cuda::DecodeSharedExpert shared;
                if (with_shared)
                    shared = {{code, p[0][E], sc[0][E]},
                              {code, p[1][E], sc[1][E]},
                              {code, p[2][E], sc[2][E]}};
                auto run = [&](bool tail) {
                    Dev<float> branch(branch0), x(r.x0);
                    Dev<uint16_t> xn(n * h);
                    kl::cuda::TailNorm t;
                    if (tail) t = {x.ptr, bf(*r.w), int(h), kEps, bf(xn), counter.ptr};
                    kl::cuda::moe_experts_gemv(bf(dx), n, h, inter, k, dc.ptr, dw.ptr, experts,
                                               shared, !with_shared, act.ptr, branch.ptr, nullptr,
                                               t);
                    if (!tail)
                        kl::cuda::add_rms_norm_to_bf16(x.ptr, branch.ptr, bf(*r.w), n, h, kEps,
                                                       bf(xn), nullptr);
                    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
                    return Outputs{branch.get(), x.get(), xn.get()};
                };
                expect_tail_matches(run, counter,
                                    std::string(code_name(code)) + " n=" + std::to_string(n) +
                                        " shared=" + std::to_string(with_shared),
                                    false);
            }
    }
}

}  // namespace
