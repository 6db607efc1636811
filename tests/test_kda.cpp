// KDA ops: the chunkwise form against the recurrence (the definition), the recurrence
// against an independent float64 loop, on fresh random inputs incl. strong decay, lengths
// that are not a multiple of the chunk, T = 1, and state carried across calls.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/ops.h"
#include "compare.h"
#include "core/error.h"

namespace {

struct KdaInputs {
    size_t T, H, D;
    std::vector<float> q, k, v, g, beta, state;
};

enum class Decay { Typical, Strong, AllStrong, NearZero };

// q, k L2-normalised; g = -exp(A) * softplus(x) like the model, or forced strong/weak.
KdaInputs random_inputs(size_t T, size_t H, size_t D, Decay decay, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
    KdaInputs in{T, H, D, {}, {}, {}, {}, {}, {}};
    const size_t n = T * H * D;
    for (auto* vec : {&in.q, &in.k, &in.v}) {
        vec->resize(n);
        for (float& x : *vec) x = normal(rng);
    }
    kl::cpu::l2_normalize_heads(in.q.data(), T * H, D);
    kl::cpu::l2_normalize_heads(in.k.data(), T * H, D);
    in.g.resize(n);
    for (float& x : in.g) {
        switch (decay) {
            case Decay::Typical:
                x = -std::exp(std::log(1.0f + 15.0f * uniform(rng))) *
                    kl::cpu::softplus(normal(rng) - 3.0f);
                break;
            case Decay::Strong:  // a mix: some channels forget almost at once (down to -10)
                x = uniform(rng) < 0.3f ? -10.0f * uniform(rng) : -0.05f * uniform(rng);
                break;
            case Decay::AllStrong:
                x = -10.0f + 0.5f * uniform(rng);
                break;
            case Decay::NearZero:
                x = -1e-6f * uniform(rng);
                break;
        }
    }
    in.beta.resize(T * H);
    for (float& b : in.beta) b = uniform(rng);
    in.state.resize(H * D * D);
    for (float& s : in.state) s = 0.3f * normal(rng);
    return in;
}

using kl::test::rel_error;

struct KdaRun {
    std::vector<float> o, state;
};

KdaRun run_recurrent(kl::ThreadPool& pool, const KdaInputs& in, size_t begin, size_t end,
                     std::vector<float> state) {
    const size_t stride = in.H * in.D;
    KdaRun r{std::vector<float>((end - begin) * stride), std::move(state)};
    kl::cpu::kda_recurrent(pool, &in.q[begin * stride], &in.k[begin * stride],
                           &in.v[begin * stride], &in.g[begin * stride], &in.beta[begin * in.H],
                           end - begin, in.H, in.D, 1.0f / std::sqrt(float(in.D)), r.state.data(),
                           r.o.data());
    return r;
}

KdaRun run_chunked(kl::ThreadPool& pool, const KdaInputs& in, size_t begin, size_t end,
                   std::vector<float> state, size_t chunk) {
    const size_t stride = in.H * in.D;
    KdaRun r{std::vector<float>((end - begin) * stride), std::move(state)};
    kl::cpu::kda_chunked(pool, &in.q[begin * stride], &in.k[begin * stride], &in.v[begin * stride],
                         &in.g[begin * stride], &in.beta[begin * in.H], end - begin, in.H, in.D,
                         1.0f / std::sqrt(float(in.D)), chunk, r.state.data(), r.o.data());
    return r;
}

// The model.md recurrence in double, written independently of kda.cpp.
KdaRun run_float64(const KdaInputs& in) {
    const size_t H = in.H, D = in.D;
    std::vector<double> S(in.state.begin(), in.state.end());
    KdaRun r{std::vector<float>(in.T * H * D), {}};
    for (size_t t = 0; t < in.T; ++t)
        for (size_t h = 0; h < H; ++h) {
            const size_t at = (t * H + h) * D;
            double* Sh = &S[h * D * D];
            for (size_t i = 0; i < D; ++i)
                for (size_t j = 0; j < D; ++j) Sh[i * D + j] *= std::exp(double(in.g[at + i]));
            for (size_t j = 0; j < D; ++j) {
                double kS = 0.0;
                for (size_t i = 0; i < D; ++i) kS += in.k[at + i] * Sh[i * D + j];
                const double u = in.beta[t * H + h] * (in.v[at + j] - kS);
                for (size_t i = 0; i < D; ++i) Sh[i * D + j] += in.k[at + i] * u;
            }
            for (size_t j = 0; j < D; ++j) {
                double o = 0.0;
                for (size_t i = 0; i < D; ++i)
                    o += in.q[at + i] / std::sqrt(double(D)) * Sh[i * D + j];
                r.o[at + j] = float(o);
            }
        }
    r.state.assign(S.begin(), S.end());
    return r;
}

struct ChunkCase {
    size_t T, chunk, H, D;
    Decay decay;
    uint32_t seed;
};

std::ostream& operator<<(std::ostream& os, const ChunkCase& c) {
    return os << "{T=" << c.T << " chunk=" << c.chunk << " H=" << c.H << " D=" << c.D
              << " decay=" << int(c.decay) << " seed=" << c.seed << "}";
}

class KdaChunkedVsRecurrent : public ::testing::TestWithParam<ChunkCase> {};

// fp32 rounding of two summation orders over up to a few hundred steps.
constexpr double kChunkTolerance = 1e-4;

TEST_P(KdaChunkedVsRecurrent, OutputsAndFinalStateAgree) {
    const ChunkCase c = GetParam();
    kl::ThreadPool pool(2);
    const KdaInputs in = random_inputs(c.T, c.H, c.D, c.decay, c.seed);
    const KdaRun want = run_recurrent(pool, in, 0, c.T, in.state);
    const KdaRun got = run_chunked(pool, in, 0, c.T, in.state, c.chunk);
    EXPECT_LE(rel_error(got.o, want.o), kChunkTolerance) << "outputs";
    EXPECT_LE(rel_error(got.state, want.state), kChunkTolerance) << "state";
}

std::vector<ChunkCase> chunk_cases() {
    std::vector<ChunkCase> cases;
    uint32_t seed = 100;
    for (size_t T : {1, 7, 63, 64, 65, 130, 300})
        for (size_t chunk : {16, 64})
            for (size_t H : {1, 3})
                for (size_t D : {16, 32}) cases.push_back({T, chunk, H, D, Decay::Typical, seed++});
    for (Decay d : {Decay::Strong, Decay::AllStrong, Decay::NearZero})
        for (size_t T : {1, 65, 200}) cases.push_back({T, 64, 2, 32, d, seed++});
    // Degenerate and odd chunk sizes; D = 20 takes the non-multiple-of-8 tails.
    for (size_t chunk : {1, 5})
        for (Decay d : {Decay::Typical, Decay::Strong})
            cases.push_back({37, chunk, 2, 20, d, seed++});
    cases.push_back({50, 16, 1, 20, Decay::Typical, seed++});
    return cases;
}

INSTANTIATE_TEST_SUITE_P(Kda, KdaChunkedVsRecurrent, ::testing::ValuesIn(chunk_cases()));

TEST(KdaRecurrent, MatchesFloat64Loop) {
    kl::ThreadPool pool(1);
    for (Decay d : {Decay::Typical, Decay::Strong}) {
        const KdaInputs in = random_inputs(40, 2, 16, d, 7);
        const KdaRun want = run_float64(in);
        const KdaRun got = run_recurrent(pool, in, 0, in.T, in.state);
        EXPECT_LE(rel_error(got.o, want.o), 1e-5);
        EXPECT_LE(rel_error(got.state, want.state), 1e-5);
    }
}

TEST(KdaChunked, StrongDecayStaysFiniteOverLongSequences) {
    kl::ThreadPool pool(2);
    // 1000 steps of g = -10: e^{-10000} cumulative; any e^{-G} factor would overflow.
    const KdaInputs in = random_inputs(1000, 1, 16, Decay::AllStrong, 3);
    const KdaRun got = run_chunked(pool, in, 0, in.T, in.state, 64);
    const KdaRun want = run_recurrent(pool, in, 0, in.T, in.state);
    for (float x : got.o) ASSERT_TRUE(std::isfinite(x));
    for (float x : got.state) ASSERT_TRUE(std::isfinite(x));
    EXPECT_LE(rel_error(got.o, want.o), kChunkTolerance);
    EXPECT_LE(rel_error(got.state, want.state), kChunkTolerance);
}

TEST(KdaChunked, NearZeroDecayOverALongSequenceMatches) {
    kl::ThreadPool pool(2);
    const KdaInputs in = random_inputs(1000, 1, 16, Decay::NearZero, 4);
    const KdaRun got = run_chunked(pool, in, 0, in.T, in.state, 64);
    const KdaRun want = run_recurrent(pool, in, 0, in.T, in.state);
    EXPECT_LE(rel_error(got.o, want.o), kChunkTolerance);
    EXPECT_LE(rel_error(got.state, want.state), kChunkTolerance);
}

TEST(KdaChunked, SplitCallsCarryTheStateExactlyLikeOneCall) {
    kl::ThreadPool pool(2);
    const KdaInputs in = random_inputs(150, 2, 16, Decay::Typical, 9);
    const KdaRun whole = run_chunked(pool, in, 0, 150, in.state, 64);
    const KdaRun first = run_chunked(pool, in, 0, 70, in.state, 64);
    const KdaRun second = run_chunked(pool, in, 70, 150, first.state, 64);
    std::vector<float> joined = first.o;
    joined.insert(joined.end(), second.o.begin(), second.o.end());
    EXPECT_LE(rel_error(joined, whole.o), kChunkTolerance);
    EXPECT_LE(rel_error(second.state, whole.state), kChunkTolerance);
    // The recurrence split anywhere is bit-identical: it is the same sequence of operations.
    const KdaRun rec_whole = run_recurrent(pool, in, 0, 150, in.state);
    const KdaRun rec_first = run_recurrent(pool, in, 0, 33, in.state);
    const KdaRun rec_second = run_recurrent(pool, in, 33, 150, rec_first.state);
    std::vector<float> rec_joined = rec_first.o;
    rec_joined.insert(rec_joined.end(), rec_second.o.begin(), rec_second.o.end());
    EXPECT_EQ(rec_joined, rec_whole.o);
    EXPECT_EQ(rec_second.state, rec_whole.state);
}

TEST(KdaChunked, ZeroTokensIsANoOp) {
    kl::ThreadPool pool(1);
    const KdaInputs in = random_inputs(1, 1, 16, Decay::Typical, 2);
    std::vector<float> state = in.state;
    kl::cpu::kda_chunked(pool, in.q.data(), in.k.data(), in.v.data(), in.g.data(), in.beta.data(),
                         0, 1, 16, 0.25f, 64, state.data(), nullptr);
    EXPECT_EQ(state, in.state);
}

TEST(KdaChunked, ChunkSizeZeroIsRejected) {
    kl::ThreadPool pool(1);
    const KdaInputs in = random_inputs(4, 1, 16, Decay::Typical, 2);
    std::vector<float> state = in.state, o(in.q.size());
    try {
        kl::cpu::kda_chunked(pool, in.q.data(), in.k.data(), in.v.data(), in.g.data(),
                             in.beta.data(), 4, 1, 16, 0.25f, 0, state.data(), o.data());
        FAIL() << "chunk 0 accepted";
    } catch (const kl::Error& e) {
        EXPECT_EQ(e.status(), kl::Status::InvalidArgument);
        EXPECT_NE(std::string(e.what()).find("chunk"), std::string::npos) << e.what();
    }
    EXPECT_EQ(state, in.state);
}

TEST(ShortConv, HandComputedCaseWithCarriedState) {
    // One channel, kernel 3: y_t = silu(w0 in_{t-2} + w1 in_{t-1} + w2 in_t).
    const float w[3] = {1.0f, 2.0f, 3.0f};
    float state[2] = {10.0f, 20.0f};  // in_{-2}, in_{-1}
    const float x[2] = {1.0f, -4.0f};
    float y[2];
    kl::cpu::short_conv_silu(x, 2, 1, w, 3, state, y);
    EXPECT_FLOAT_EQ(y[0], kl::cpu::silu(10 + 40 + 3));
    EXPECT_FLOAT_EQ(y[1], kl::cpu::silu(20 + 2 - 12));
    EXPECT_FLOAT_EQ(state[0], 1.0f);
    EXPECT_FLOAT_EQ(state[1], -4.0f);
}

class ShortConvSplit : public ::testing::TestWithParam<size_t> {};

// Token-by-token decode (split 1) and every prefill split, shorter or longer than the kernel
// history, must reproduce one call bit for bit: same products in the same order.
TEST_P(ShortConvSplit, AnySplitEqualsOneCall) {
    const size_t K = GetParam();
    std::mt19937 rng(static_cast<uint32_t>(5 + K));
    std::normal_distribution<float> normal;
    const size_t T = 23, C = 7;
    std::vector<float> x(T * C), w(C * K), state0((K - 1) * C);
    for (auto* v : {&x, &w, &state0})
        for (float& e : *v) e = normal(rng);
    std::vector<float> whole(T * C), state = state0;
    kl::cpu::short_conv_silu(x.data(), T, C, w.data(), K, state.data(), whole.data());
    // The state after the call is the last K-1 inputs.
    EXPECT_TRUE(std::equal(state.begin(), state.end(), x.end() - state.size())) << "kernel " << K;
    for (size_t split : {1u, 2u, 3u, 5u, 22u, 23u}) {
        std::vector<float> pieces(T * C), s = state0;
        for (size_t t = 0; t < T; t += split) {
            const size_t n = std::min(split, T - t);
            kl::cpu::short_conv_silu(&x[t * C], n, C, w.data(), K, s.data(), &pieces[t * C]);
        }
        EXPECT_EQ(pieces, whole) << "kernel " << K << " split " << split;
        EXPECT_EQ(s, state) << "kernel " << K << " split " << split;
    }
}

INSTANTIATE_TEST_SUITE_P(ShortConv, ShortConvSplit, ::testing::Values(1, 2, 4, 6));

TEST(ShortConv, ZeroTokensKeepTheStateAndKernelZeroIsRejected) {
    const float w[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    float state[3] = {1.0f, 2.0f, 3.0f};
    kl::cpu::short_conv_silu(nullptr, 0, 1, w, 4, state, nullptr);
    EXPECT_EQ(state[0], 1.0f);
    EXPECT_EQ(state[1], 2.0f);
    EXPECT_EQ(state[2], 3.0f);
    const float x = 1.0f;
    float y = 0.0f;
    try {
        kl::cpu::short_conv_silu(&x, 1, 1, w, 0, state, &y);
        FAIL() << "kernel 0 accepted";
    } catch (const kl::Error& e) {
        EXPECT_EQ(e.status(), kl::Status::InvalidArgument);
        EXPECT_NE(std::string(e.what()).find("kernel"), std::string::npos) << e.what();
    }
}

TEST(KdaL2Norm, UnitNormAndZeroVectorStaysFinite) {
    std::vector<float> x = {3.0f, 4.0f, 0.0f, 0.0f};
    kl::cpu::l2_normalize_heads(x.data(), 2, 2);
    EXPECT_NEAR(x[0] * x[0] + x[1] * x[1], 1.0f, 1e-6f);
    EXPECT_EQ(x[2], 0.0f);
    EXPECT_EQ(x[3], 0.0f);
}

}  // namespace
