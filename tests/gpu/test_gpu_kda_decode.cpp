// The fused KDA decode step (backends/cuda/kda_decode.cu) against the CPU ops strung as the CPU
// backend's KDA layer does, on fresh random inputs: all head sizes, 1/3/32 heads, 1..8
// tokens, mild and strong decay (g ~ -10 per step), in place and out of place, every split
// of a head over a cluster, conv kernels 1..16, and a long chain of calls; the batched form
// (kda_decode_step_batch, 1..64 sessions) equal to the single-session kernel per row.
// Tolerances: the state is fp32 math on bf16-rounded weights, 1e-4 of its scale per call;
// o is the bf16 output, so within bf16 rounding of the fp32 reference (2^-8 relative per
// element, plus 1e-5 of the scale for elements near zero).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backends/cpu/ops.h"
#include "backends/cuda/ops.h"
#include "compare.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "gpu_test_util.h"

namespace {

using kl::cuda::bf16;
using kl::test::rel_error;

constexpr double kStateTol = 1e-4;
constexpr double kConvTol = 0.0;  // the conv state is a copy of inputs

// One layer's weights and one call's inputs, on the host (weights already bf16-rounded).
struct Problem {
    size_t H, D, n, kernel, stride;
    float eps = 1e-5f;
    std::vector<float> proj, conv, state;  // proj [n, stride]; conv [3, kernel-1, H*D]
    std::vector<float> conv_q, conv_k, conv_v, f_b, g_b, o_norm, a_log, dt_bias;
    std::vector<uint16_t> conv_q_b, conv_k_b, conv_v_b, f_b_b, g_b_b, o_norm_b;
    float scale() const { return 1.0f / std::sqrt(float(D)); }
};

Problem make_problem(size_t H, size_t D, size_t n, size_t kernel, bool strong, uint32_t seed) {
    Problem p;
    p.H = H, p.D = D, p.n = n, p.kernel = kernel;
    p.stride = 3 * H * D + 2 * D + H + 3;  // odd padding in the row stride
    const size_t HD = H * D;
    p.proj = randn(n * p.stride, seed);
    p.conv = randn(3 * (kernel - 1) * HD, seed + 1);
    p.state = randn(H * D * D, seed + 2, 0.3f);
    p.conv_q = randn(HD * kernel, seed + 3, 0.5f), p.conv_q_b = to_bf16(p.conv_q);
    p.conv_k = randn(HD * kernel, seed + 4, 0.5f), p.conv_k_b = to_bf16(p.conv_k);
    p.conv_v = randn(HD * kernel, seed + 5, 0.5f), p.conv_v_b = to_bf16(p.conv_v);
    const float w_scale = 1.0f / std::sqrt(float(D));
    p.f_b = randn(HD * D, seed + 6, w_scale), p.f_b_b = to_bf16(p.f_b);
    p.g_b = randn(HD * D, seed + 7, w_scale), p.g_b_b = to_bf16(p.g_b);
    p.o_norm = randn(D, seed + 8, 0.1f);
    for (float& x : p.o_norm) x += 1.0f;
    p.o_norm_b = to_bf16(p.o_norm);
    // A_log ~ 2.5 makes -exp(A_log) * softplus(..) about -10 per step: strong decay.
    p.a_log = randn(H, seed + 9, 0.3f);
    for (float& x : p.a_log) x += strong ? 2.5f : -3.0f;
    p.dt_bias = randn(HD, seed + 10, 0.5f);
    return p;
}

struct Result {
    std::vector<float> state, conv, o;  // o in fp32, before the bf16 cast
};

// The CPU backend's KDA layer from the projections on (backends/cpu/cpu_backend.cpp).
Result reference(const Problem& p, kl::ThreadPool& pool) {
    const size_t H = p.H, D = p.D, n = p.n, HD = H * D, hist = p.kernel - 1;
    Result r{p.state, p.conv, std::vector<float>(n * HD)};
    std::vector<float> x(n * HD), qkv[3] = {std::vector<float>(n * HD), std::vector<float>(n * HD),
                                            std::vector<float>(n * HD)};
    const std::vector<float>* conv_w[3] = {&p.conv_q, &p.conv_k, &p.conv_v};
    for (size_t g = 0; g < 3; ++g) {
        for (size_t t = 0; t < n; ++t)
            std::copy_n(p.proj.data() + t * p.stride + g * HD, HD, x.data() + t * HD);
        kl::cpu::short_conv_silu(x.data(), n, HD, conv_w[g]->data(), p.kernel,
                                 r.conv.data() + g * hist * HD, qkv[g].data());
    }
    kl::cpu::l2_normalize_heads(qkv[0].data(), n * H, D);
    kl::cpu::l2_normalize_heads(qkv[1].data(), n * H, D);
    std::vector<float> f_low(n * D), g_low(n * D), g(n * HD), gate(n * HD), beta(n * H);
    for (size_t t = 0; t < n; ++t) {
        const float* row = p.proj.data() + t * p.stride + 3 * HD;
        std::copy_n(row, D, f_low.data() + t * D);
        std::copy_n(row + D, D, g_low.data() + t * D);
        for (size_t h = 0; h < H; ++h) beta[t * H + h] = kl::cpu::sigmoid(row[2 * D + h]);
    }
    kl::cpu::matmul_wt(pool, f_low.data(), n, D, p.f_b.data(), HD, g.data());
    for (size_t t = 0; t < n; ++t)
        for (size_t c = 0; c < HD; ++c) {
            float& gc = g[t * HD + c];
            gc = -std::exp(p.a_log[c / D]) * kl::cpu::softplus(gc + p.dt_bias[c]);
        }
    kl::cpu::kda_recurrent(pool, qkv[0].data(), qkv[1].data(), qkv[2].data(), g.data(), beta.data(),
                           n, H, D, p.scale(), r.state.data(), r.o.data());
    kl::cpu::matmul_wt(pool, g_low.data(), n, D, p.g_b.data(), HD, gate.data());
    for (size_t i = 0; i < n * H; ++i) {
        float* o = r.o.data() + i * D;
        kl::cpu::rms_norm(o, p.o_norm.data(), D, p.eps, o);
        for (size_t c = 0; c < D; ++c) o[c] *= kl::cpu::sigmoid(gate[i * D + c]);
    }
    return r;
}

// The problem's weights on the device.
struct DeviceWeights {
    explicit DeviceWeights(const Problem& p)
        : conv_q(p.conv_q_b),
          conv_k(p.conv_k_b),
          conv_v(p.conv_v_b),
          f_b(p.f_b_b),
          g_b(p.g_b_b),
          o_norm(p.o_norm_b),
          a_log(p.a_log),
          dt_bias(p.dt_bias) {
        auto b = [](const Dev<uint16_t>& d) { return reinterpret_cast<const bf16*>(d.ptr); };
        w = {b(conv_q), b(conv_k), b(conv_v),   p.kernel,  b(f_b),
             b(g_b),    a_log.ptr, dt_bias.ptr, b(o_norm), p.eps};
    }
    Dev<uint16_t> conv_q, conv_k, conv_v, f_b, g_b, o_norm;
    Dev<float> a_log, dt_bias;
    kl::cuda::KdaDecodeWeights w;
};

std::vector<float> nan_floats(size_t n) {
    return std::vector<float>(n, std::nanf(""));
}

std::vector<float> bf16_to_floats(const std::vector<uint16_t>& b) {
    std::vector<float> f(b.size());
    for (size_t i = 0; i < b.size(); ++i) f[i] = kl::bf16_to_f32(b[i]);
    return f;
}

// Elements of the bf16 output farther from the fp32 reference than its rounding allows
// (2^-8 relative, plus `floor` of the scale for elements near zero).
size_t bf16_misses(const std::vector<float>& got, const std::vector<float>& want,
                   double floor = 1e-5) {
    double scale = 0.0;
    for (float w : want) scale = std::max(scale, std::fabs(double(w)));
    size_t misses = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        const double err = std::fabs(double(got[i]) - want[i]);
        if (!(err <= std::ldexp(std::fabs(double(want[i])), -8) + floor * scale)) ++misses;
    }
    return misses;
}

// Worst errors seen by a test, printed at its end for the record.
struct Worst {
    double state = 0, o = 0;
    void print(const char* what) const {
        std::printf("[ %s ] worst state rel err %.3g (tol %.0e), worst o rel err %.3g (bf16)\n",
                    what, state, kStateTol, o);
    }
};

// One call on the device, checked against the reference; out of place, the inputs must come
// back unchanged. Returns through `worst`.
void check_call(const Problem& p, bool in_place, size_t split, kl::ThreadPool& pool, Worst& worst) {
    const Result want = reference(p, pool);
    const size_t HD = p.H * p.D;
    DeviceWeights dw(p);
    Dev<float> proj(p.proj), state_in(p.state), conv_in(p.conv);
    Dev<float> state_out(nan_floats(in_place ? 0 : p.state.size()));
    Dev<float> conv_out(nan_floats(in_place ? 0 : p.conv.size()));
    Dev<uint16_t> o(std::vector<uint16_t>(p.n * HD, 0x7fc0));  // NaN: every element is written
    float* s_out = in_place ? state_in.ptr : state_out.ptr;
    float* c_out = in_place ? conv_in.ptr : conv_out.ptr;
    kl::cuda::kda_decode_step_with_split(proj.ptr, p.stride, p.n, p.H, p.D, p.scale(), dw.w,
                                         state_in.ptr, conv_in.ptr, s_out, c_out,
                                         reinterpret_cast<bf16*>(o.ptr), split, nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const std::vector<float> got_state = in_place ? state_in.get() : state_out.get();
    const std::vector<float> got_conv = in_place ? conv_in.get() : conv_out.get();
    const std::vector<float> got_o = bf16_to_floats(o.get());
    const double e_state = rel_error(got_state, want.state), e_o = rel_error(got_o, want.o);
    worst.state = std::max(worst.state, e_state), worst.o = std::max(worst.o, e_o);
    const std::string where = "D=" + std::to_string(p.D) + " H=" + std::to_string(p.H) +
                              " n=" + std::to_string(p.n) + " kernel=" + std::to_string(p.kernel) +
                              " split=" + std::to_string(split) +
                              (in_place ? " in place" : " out of place");
    EXPECT_LE(e_state, kStateTol) << where;
    EXPECT_LE(rel_error(got_conv, want.conv), kConvTol) << where;
    EXPECT_LE(e_o, 4e-3) << where;
    EXPECT_EQ(bf16_misses(got_o, want.o), 0u) << where;
    if (!in_place) {
        EXPECT_EQ(state_in.get(), p.state) << where << ": state_in changed";
        EXPECT_EQ(conv_in.get(), p.conv) << where << ": conv_in changed";
    }
}

class GpuKdaDecode : public ::testing::Test {
    void SetUp() override {
        if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
    }
};

TEST_F(GpuKdaDecode, MatchesCpuAcrossShapes) {
    kl::ThreadPool pool(2);
    Worst worst;
    uint32_t seed = 100;
    for (size_t D : {16, 32, 64, 128})
        for (size_t H : {1, 3, 32})
            for (size_t n : {1, 2, 5})
                for (bool strong : {false, true})
                    for (bool in_place : {false, true})
                        check_call(make_problem(H, D, n, 4, strong, seed += 20), in_place, 0, pool,
                                   worst);
    worst.print("shapes");
}

TEST_F(GpuKdaDecode, EverySplitMatchesCpu) {
    kl::ThreadPool pool(2);
    Worst worst;
    uint32_t seed = 5000;
    for (size_t D : {16, 32, 64, 128})
        for (size_t split : {1, 2, 4, 8}) {
            if (D / split < 8) continue;
            for (bool strong : {false, true})
                for (bool in_place : {false, true})
                    check_call(make_problem(3, D, 3, 4, strong, seed += 20), in_place, split, pool,
                               worst);
        }
    worst.print("splits");
}

TEST_F(GpuKdaDecode, ConvKernelSizesAndEightTokens) {
    kl::ThreadPool pool(2);
    Worst worst;
    uint32_t seed = 9000;
    for (size_t kernel : {1, 2, 4, 16})
        for (size_t n : {1, 3, 8})
            for (size_t D : {64, 128})
                check_call(make_problem(2, D, n, kernel, n == 3, seed += 20), n != 8, 0, pool,
                           worst);
    worst.print("kernels");
}

// 40 calls of 1..8 tokens each, chained through the device state (alternating two buffers,
// as the backend does); the state and conv state after ~180 tokens against the CPU chain.
TEST_F(GpuKdaDecode, LongChainOfCallsMatchesCpu) {
    kl::ThreadPool pool(2);
    for (bool strong : {false, true}) {
        const size_t H = 4, D = 128, kernel = 4;
        Problem p = make_problem(H, D, 1, kernel, strong, strong ? 77 : 78);
        DeviceWeights dw(p);
        Dev<float> state[2] = {Dev<float>(p.state), Dev<float>(p.state.size())};
        Dev<float> conv[2] = {Dev<float>(p.conv), Dev<float>(p.conv.size())};
        std::mt19937 rng(strong ? 3 : 4);
        size_t tokens = 0;
        double worst_o = 0.0;
        for (int call = 0; call < 40; ++call) {
            p.n = 1 + rng() % 8;
            tokens += p.n;
            p.proj = randn(p.n * p.stride, 1000 + call);
            const Result want = reference(p, pool);
            Dev<float> proj(p.proj);
            Dev<uint16_t> o(p.n * H * D);
            const int from = call % 2, to = 1 - from;
            kl::cuda::kda_decode_step(proj.ptr, p.stride, p.n, H, D, p.scale(), dw.w,
                                      state[from].ptr, conv[from].ptr, state[to].ptr, conv[to].ptr,
                                      reinterpret_cast<bf16*>(o.ptr), nullptr);
            ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
            worst_o = std::max(worst_o, rel_error(bf16_to_floats(o.get()), want.o));
            // The chains' states drift apart by rounding, so a looser floor near zero.
            EXPECT_EQ(bf16_misses(bf16_to_floats(o.get()), want.o, 1e-4), 0u) << "call " << call;
            p.state = want.state, p.conv = want.conv;  // the CPU chain goes on from its own
        }
        const double e_state = rel_error(state[0].get(), p.state);
        std::printf("[ chain ] %s decay, %zu tokens: state rel err %.3g, worst o rel err %.3g\n",
                    strong ? "strong" : "mild", tokens, e_state, worst_o);
        EXPECT_LE(e_state, 1e-4 * 4) << "accumulated over " << tokens << " tokens";
        EXPECT_LE(rel_error(conv[0].get(), p.conv), kConvTol);
        EXPECT_LE(worst_o, 4e-3);
    }
}

TEST_F(GpuKdaDecode, RejectsBadArguments) {
    Problem p = make_problem(2, 64, 1, 4, false, 1);
    DeviceWeights dw(p);
    Dev<float> proj(p.proj), state(p.state), conv(p.conv);
    Dev<uint16_t> o(p.n * p.H * p.D);
    bf16* out = reinterpret_cast<bf16*>(o.ptr);
    auto call = [&](size_t D, size_t n, size_t stride, const kl::cuda::KdaDecodeWeights& w,
                    float* state_out, size_t split) {
        kl::cuda::kda_decode_step_with_split(proj.ptr, stride, n, p.H, D, p.scale(), w, state.ptr,
                                             conv.ptr, state_out, conv.ptr, out, split, nullptr);
    };
    auto status_of = [&](auto&& f) {
        try {
            f();
        } catch (const kl::Error& e) {
            EXPECT_NE(std::string(e.what()).find("kda_decode_step"), std::string::npos);
            return e.status();
        }
        return kl::Status::Ok;
    };
    using kl::Status;
    EXPECT_EQ(status_of([&] { call(48, 1, p.stride, dw.w, state.ptr, 0); }), Status::Unsupported);
    EXPECT_EQ(status_of([&] { call(64, 9, p.stride, dw.w, state.ptr, 0); }), Status::Unsupported);
    EXPECT_EQ(status_of([&] { call(64, 1, p.stride - 4, dw.w, state.ptr, 0); }),
              Status::InvalidArgument);
    EXPECT_EQ(status_of([&] { call(64, 1, p.stride, dw.w, state.ptr, 3); }),
              Status::InvalidArgument);
    EXPECT_EQ(status_of([&] { call(64, 1, p.stride, dw.w, state.ptr + 4, 0); }),
              Status::InvalidArgument);  // partly overlapping state buffers
    EXPECT_EQ(status_of([&] { call(64, 1, p.stride, dw.w, state.ptr + 1, 0); }),
              Status::InvalidArgument);  // misaligned
    kl::cuda::KdaDecodeWeights bad = dw.w;
    bad.kernel = 17;
    EXPECT_EQ(status_of([&] { call(64, 1, p.stride, bad, state.ptr, 0); }), Status::Unsupported);
    bad = dw.w;
    bad.f_b = nullptr;
    EXPECT_EQ(status_of([&] { call(64, 1, p.stride, bad, state.ptr, 0); }),
              Status::InvalidArgument);
    // None of the rejected calls touched the state; n = 0 is a no-op.
    EXPECT_EQ(status_of([&] { call(64, 0, p.stride, dw.w, state.ptr, 0); }), Status::Ok);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(state.get(), p.state);
    EXPECT_EQ(conv.get(), p.conv);
}

}  // namespace

namespace {

// kda_decode_step_batch: `rows` sessions of one layer, each its own state and conv state in
// its own buffer (at an offset, as a layer inside a session's state), one token each, read
// from one set of buffers and written to another. Each row must equal the single-session
// kernel with the same split bit for bit (one code path) and the CPU reference within the
// tolerances above; the input buffers must come back unchanged.
void check_batch(size_t H, size_t D, size_t kernel, bool strong, size_t rows, size_t split,
                 kl::ThreadPool& pool, Worst& worst) {
    const Problem p = make_problem(H, D, 1, kernel, strong, uint32_t(1000 + rows * 31 + D + H));
    const size_t HD = H * D, state = H * D * D, conv = 3 * (kernel - 1) * HD;
    const size_t state_offset = 12, conv_offset = state_offset + state;  // 16-byte multiples
    const size_t each = conv_offset + conv + 4;
    DeviceWeights dw(p);
    std::vector<float> proj(rows * p.stride), in_host(rows * each, 0.0f);
    std::vector<Problem> row_problems;
    for (size_t r = 0; r < rows; ++r) {
        Problem q = p;  // the layer's weights; this session's inputs
        q.proj = randn(p.stride, uint32_t(7 * r + 1));
        q.state = randn(state, uint32_t(7 * r + 2), 0.3f);
        q.conv = randn(conv, uint32_t(7 * r + 3));
        std::copy(q.proj.begin(), q.proj.end(), proj.begin() + r * p.stride);
        std::copy(q.state.begin(), q.state.end(), in_host.begin() + r * each + state_offset);
        std::copy(q.conv.begin(), q.conv.end(), in_host.begin() + r * each + conv_offset);
        row_problems.push_back(std::move(q));
    }
    Dev<float> d_proj(proj), d_in(in_host), d_out(nan_floats(rows * each));
    std::vector<uint64_t> in_ptrs(rows), out_ptrs(rows);
    for (size_t r = 0; r < rows; ++r) {
        in_ptrs[r] = reinterpret_cast<uint64_t>(d_in.ptr + r * each);
        out_ptrs[r] = reinterpret_cast<uint64_t>(d_out.ptr + r * each);
    }
    // The session order reversed in the tables: rows must not depend on their neighbours.
    std::reverse(in_ptrs.begin(), in_ptrs.end());
    std::reverse(out_ptrs.begin(), out_ptrs.end());
    std::vector<float> proj_rev(proj.size());
    for (size_t r = 0; r < rows; ++r)
        std::copy_n(proj.begin() + (rows - 1 - r) * p.stride, p.stride,
                    proj_rev.begin() + r * p.stride);
    Dev<float> d_proj_rev(proj_rev);
    Dev<uint64_t> d_in_ptrs(in_ptrs), d_out_ptrs(out_ptrs);
    Dev<uint16_t> o(std::vector<uint16_t>(rows * HD, 0x7fc0));
    kl::cuda::kda_decode_step_batch(d_proj_rev.ptr, p.stride, rows, H, D, p.scale(), dw.w,
                                    reinterpret_cast<const float* const*>(d_in_ptrs.ptr),
                                    reinterpret_cast<float* const*>(d_out_ptrs.ptr), state_offset,
                                    conv_offset, reinterpret_cast<bf16*>(o.ptr), split, nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(d_in.get(), in_host) << "the inputs changed";
    const std::vector<float> out = d_out.get();
    const std::vector<uint16_t> o_all = o.get();
    for (size_t r = 0; r < rows; ++r) {
        const Problem& q = row_problems[r];
        const std::string where = "D=" + std::to_string(D) + " H=" + std::to_string(H) +
                                  " kernel=" + std::to_string(kernel) +
                                  " rows=" + std::to_string(rows) + " row " + std::to_string(r) +
                                  (strong ? " strong" : " mild");
        const size_t slot = rows - 1 - r;  // where session r sits in the reversed batch
        const std::vector<float> got_state(out.begin() + r * each + state_offset,
                                           out.begin() + r * each + state_offset + state);
        const std::vector<float> got_conv(out.begin() + r * each + conv_offset,
                                          out.begin() + r * each + conv_offset + conv);
        const std::vector<uint16_t> got_o(o_all.begin() + slot * HD,
                                          o_all.begin() + (slot + 1) * HD);
        // The single-session kernel on the same inputs.
        Dev<float> s_proj(q.proj), s_state(q.state), s_conv(q.conv);
        Dev<float> s_state_out(state), s_conv_out(std::max<size_t>(conv, 1));
        Dev<uint16_t> s_o(HD);
        kl::cuda::kda_decode_step_with_split(
            s_proj.ptr, p.stride, 1, H, D, p.scale(), dw.w, s_state.ptr, s_conv.ptr,
            s_state_out.ptr, s_conv_out.ptr, reinterpret_cast<bf16*>(s_o.ptr), split, nullptr);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        EXPECT_EQ(got_state, s_state_out.get()) << where << ": state vs single-session kernel";
        if (conv) {
            EXPECT_EQ(got_conv, s_conv_out.get()) << where << ": conv vs single";
        }
        EXPECT_EQ(got_o, s_o.get()) << where << ": o vs single-session kernel";
        const Result want = reference(q, pool);
        const std::vector<float> got_o_f = bf16_to_floats(got_o);
        const double e_state = rel_error(got_state, want.state), e_o = rel_error(got_o_f, want.o);
        worst.state = std::max(worst.state, e_state), worst.o = std::max(worst.o, e_o);
        EXPECT_LE(e_state, kStateTol) << where;
        EXPECT_LE(rel_error(got_conv, want.conv), kConvTol) << where;
        EXPECT_EQ(bf16_misses(got_o_f, want.o), 0u) << where;
    }
}

}  // namespace

TEST_F(GpuKdaDecode, BatchEqualsSingleSessionKernelPerRow) {
    kl::ThreadPool pool(2);
    Worst worst;
    for (bool strong : {false, true})
        for (size_t rows : {1, 3, 8, 64}) {
            check_batch(2, 16, 4, strong, rows, 1, pool, worst);   // tiny preset shapes
            check_batch(4, 32, 4, strong, rows, 2, pool, worst);   // small preset
            check_batch(3, 64, 1, strong, rows, 4, pool, worst);   // no conv, odd H
            check_batch(3, 128, 5, strong, rows, 8, pool, worst);  // odd H, odd kernel
        }
    // The real shapes (H=32, D=128): one row with the split both pick by themselves (0: the
    // same for one row), and 8 rows on one CTA per head.
    check_batch(32, 128, 4, true, 1, 0, pool, worst);
    check_batch(32, 128, 4, true, 8, 1, pool, worst);
    worst.print("kda batch");
}

TEST_F(GpuKdaDecode, BatchRejectsBadArguments) {
    Problem p = make_problem(2, 64, 1, 4, false, 1);
    DeviceWeights dw(p);
    Dev<float> proj(p.proj);
    Dev<uint64_t> ptrs(std::vector<uint64_t>(1, 0));
    Dev<uint16_t> o(p.H * p.D);
    auto status_of = [&](size_t offset, bool null_tables) {
        try {
            kl::cuda::kda_decode_step_batch(
                proj.ptr, p.stride, 1, p.H, p.D, p.scale(), dw.w,
                null_tables ? nullptr : reinterpret_cast<const float* const*>(ptrs.ptr),
                reinterpret_cast<float* const*>(ptrs.ptr), offset, offset,
                reinterpret_cast<bf16*>(o.ptr), 0, nullptr);
        } catch (const kl::Error& e) {
            EXPECT_NE(std::string(e.what()).find("kda_decode_step"), std::string::npos);
            return e.status();
        }
        return kl::Status::Ok;
    };
    EXPECT_EQ(status_of(2, false), kl::Status::InvalidArgument);  // misaligned state
    EXPECT_EQ(status_of(0, true), kl::Status::InvalidArgument);   // no table
}
