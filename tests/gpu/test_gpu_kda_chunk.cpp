// The chunked tensor-core KDA prefill (backends/cuda/kda_chunk.cu) against a float64 recurrence,
// the definition in model.md, on fresh random inputs: every head size, odd and long lengths,
// mild and strong decay, a nonzero initial state, and a prompt split over two calls.
// Tolerance: 16-bit tensor-core operands with fp32 accumulation and an fp32 state; the output
// and the final state must be within 5e-3 (max |err| / max |ref|, docs/design/kernels.md) of the
// fp64 reference (bf16 operands measured 3e-3..1e-2 here; the fp16 ones ~1e-3); an unwritten
// output (poisoned with NaN) fails.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backends/cpu/ops.h"
#include "backends/cuda/ops.h"
#include "compare.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "gpu_test_util.h"

namespace {

using kl::test::rel_error;

constexpr double kTolerance = 5e-3;

struct KdaInputs {
    size_t T, H, D;
    float scale;
    std::vector<float> q, k, v, g, beta, state;
};

// q, k L2-normalised; g = -decay * U(0, 1) per channel; beta = U(0, 1); state0 nonzero.
KdaInputs make_inputs(size_t T, size_t H, size_t D, float decay, uint32_t seed) {
    KdaInputs in{T, H, D, 1.0f / std::sqrt(static_cast<float>(D)), {}, {}, {}, {}, {}, {}};
    const size_t n = T * H * D;
    in.q = randn(n, seed);
    in.k = randn(n, seed + 1);
    in.v = randn(n, seed + 2);
    in.state = randn(H * D * D, seed + 3, 0.3f);
    kl::cpu::l2_normalize_heads(in.q.data(), T * H, D);
    kl::cpu::l2_normalize_heads(in.k.data(), T * H, D);
    std::mt19937 rng(seed + 4);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    in.g.resize(n);
    in.beta.resize(T * H);
    for (float& x : in.g) x = -decay * u(rng);
    for (float& b : in.beta) b = u(rng);
    return in;
}

// The recurrence of model.md in float64, heads in parallel; state updated in place.
void reference_fp64(kl::ThreadPool& pool, const KdaInputs& in, std::vector<double>& state,
                    std::vector<double>& o) {
    const size_t T = in.T, H = in.H, D = in.D;
    o.assign(T * H * D, 0.0);
    pool.parallel_for(H, 1, [&](size_t h0, size_t h1) {
        std::vector<double> decay(D), delta(D);
        for (size_t h = h0; h < h1; ++h) {
            double* S = state.data() + h * D * D;
            for (size_t t = 0; t < T; ++t) {
                const size_t at = (t * H + h) * D;
                for (size_t c = 0; c < D; ++c) decay[c] = std::exp(double(in.g[at + c]));
                for (size_t j = 0; j < D; ++j) delta[j] = in.v[at + j];
                for (size_t c = 0; c < D; ++c) {
                    double* row = S + c * D;
                    const double kc = in.k[at + c];
                    for (size_t j = 0; j < D; ++j) {
                        row[j] *= decay[c];
                        delta[j] -= kc * row[j];
                    }
                }
                const double b = in.beta[t * H + h];
                for (size_t c = 0; c < D; ++c) {
                    double* row = S + c * D;
                    const double kc = in.k[at + c], qc = double(in.q[at + c]) * in.scale;
                    for (size_t j = 0; j < D; ++j) {
                        row[j] += kc * b * delta[j];
                        o[at + j] += qc * row[j];
                    }
                }
            }
        }
    });
}

std::vector<float> to_float(const std::vector<double>& x) {
    return std::vector<float>(x.begin(), x.end());
}

// Runs the GPU prefill over tokens [t_begin, t_end) of `in`, state in place on the device.
void run_gpu(const KdaInputs& in, size_t t_begin, size_t t_end, float* d_state, float* d_o) {
    const size_t H = in.H, D = in.D, T = t_end - t_begin, off = t_begin * H * D;
    auto slice = [&](const std::vector<float>& x, size_t per_token) {
        return std::vector<float>(x.begin() + t_begin * per_token, x.begin() + t_end * per_token);
    };
    Dev<float> q(slice(in.q, H * D)), k(slice(in.k, H * D)), v(slice(in.v, H * D)),
        g(slice(in.g, H * D)), beta(slice(in.beta, H));
    Dev<unsigned char> ws(kl::cuda::kda_chunk_workspace_bytes(T, H, D));
    kl::cuda::kda_chunked_prefill(q.ptr, k.ptr, v.ptr, g.ptr, beta.ptr, T, H, D, in.scale, d_state,
                                  d_o + off, ws.ptr, nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

struct Case {
    size_t D, T, H;
    float decay;
};

class GpuKdaChunk : public ::testing::TestWithParam<Case> {
protected:
    void SetUp() override {
        if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
    }
};

TEST_P(GpuKdaChunk, MatchesFloat64Recurrence) {
    const Case c = GetParam();
    const KdaInputs in = make_inputs(c.T, c.H, c.D, c.decay, 11 + c.T + c.D);
    kl::ThreadPool pool(0);
    std::vector<double> s_ref(in.state.begin(), in.state.end()), o_ref;
    reference_fp64(pool, in, s_ref, o_ref);

    Dev<float> state(in.state), o(in.T * in.H * in.D);
    cudaMemset(o.ptr, 0xff, o.n * sizeof(float));  // NaN: an unwritten output fails
    run_gpu(in, 0, in.T, state.ptr, o.ptr);
    const double e_o = rel_error(o.get(), to_float(o_ref));
    const double e_s = rel_error(state.get(), to_float(s_ref));
    EXPECT_LE(e_o, kTolerance) << "output, D=" << c.D << " T=" << c.T << " H=" << c.H
                               << " decay=" << c.decay;
    EXPECT_LE(e_s, kTolerance) << "state, D=" << c.D << " T=" << c.T << " H=" << c.H
                               << " decay=" << c.decay;
    std::printf("  D=%zu T=%zu H=%zu decay=%g: output err %.2e, state err %.2e\n", c.D, c.T, c.H,
                c.decay, e_o, e_s);
}

std::vector<Case> cases() {
    std::vector<Case> all;
    for (size_t D : {16, 32, 64, 128})
        for (size_t T : {1, 15, 16, 17, 64, 100, 1000})
            for (float decay : {0.05f, 10.0f}) all.push_back({D, T, 3, decay});
    // Channels decaying by more than 2^240 over a chunk take the exact pairwise path.
    for (size_t D : {16, 128}) all.push_back({D, 100, 3, 40.0f});
    for (float decay : {0.05f, 10.0f}) {
        all.push_back({128, 4099, 32, decay});  // the model's heads, a long odd prompt
        all.push_back({64, 4099, 1, decay});
        all.push_back({128, 17, 32, decay});
    }
    return all;
}

INSTANTIATE_TEST_SUITE_P(Shapes, GpuKdaChunk, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                             const Case& c = info.param;
                             return "D" + std::to_string(c.D) + "_T" + std::to_string(c.T) + "_H" +
                                    std::to_string(c.H) + "_decay" +
                                    std::to_string(static_cast<int>(c.decay * 100));
                         });

class GpuKdaChunkApi : public ::testing::Test {
protected:
    void SetUp() override {
        if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
    }
};

// A prompt in two calls (split inside a chunk) equals the single call and the reference.
TEST_F(GpuKdaChunkApi, TwoCallsEqualOne) {
    for (float decay : {0.05f, 10.0f}) {
        const KdaInputs in = make_inputs(300, 4, 128, decay, 77);
        kl::ThreadPool pool(0);
        std::vector<double> s_ref(in.state.begin(), in.state.end()), o_ref;
        reference_fp64(pool, in, s_ref, o_ref);

        Dev<float> s_one(in.state), o_one(in.T * in.H * in.D);
        Dev<float> s_two(in.state), o_two(in.T * in.H * in.D);
        cudaMemset(o_two.ptr, 0xff, o_two.n * sizeof(float));
        run_gpu(in, 0, in.T, s_one.ptr, o_one.ptr);
        run_gpu(in, 0, 37, s_two.ptr, o_two.ptr);
        run_gpu(in, 37, in.T, s_two.ptr, o_two.ptr);
        // Different chunk boundaries round differently: compare at the bf16 tolerance.
        EXPECT_LE(rel_error(o_two.get(), o_one.get()), kTolerance) << "decay " << decay;
        EXPECT_LE(rel_error(s_two.get(), s_one.get()), kTolerance) << "decay " << decay;
        EXPECT_LE(rel_error(o_two.get(), to_float(o_ref)), kTolerance) << "decay " << decay;
        EXPECT_LE(rel_error(s_two.get(), to_float(s_ref)), kTolerance) << "decay " << decay;
    }
}

TEST_F(GpuKdaChunkApi, RejectsBadArguments) {
    EXPECT_FALSE(kl::cuda::kda_chunk_supported(48));
    EXPECT_TRUE(kl::cuda::kda_chunk_supported(128));
    const KdaInputs in = make_inputs(20, 2, 32, 1.0f, 5);
    Dev<float> q(in.q), k(in.k), v(in.v), g(in.g), beta(in.beta), state(in.state), o(in.q.size());
    auto status_of = [&](size_t D, void* ws) {
        try {
            kl::cuda::kda_chunked_prefill(q.ptr, k.ptr, v.ptr, g.ptr, beta.ptr, 20, 2, D, 1.0f,
                                          state.ptr, o.ptr, ws, nullptr);
        } catch (const kl::Error& e) {
            return e.status();
        }
        return kl::Status::Ok;
    };
    Dev<unsigned char> ws(kl::cuda::kda_chunk_workspace_bytes(20, 2, 32));
    EXPECT_EQ(status_of(48, ws.ptr), kl::Status::Unsupported);
    EXPECT_EQ(status_of(32, nullptr), kl::Status::InvalidArgument);
    EXPECT_EQ(status_of(32, ws.ptr + 4), kl::Status::InvalidArgument);  // misaligned
    EXPECT_EQ(status_of(32, ws.ptr), kl::Status::Ok);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace
