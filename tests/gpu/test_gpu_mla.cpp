// MLA attention on the GPU against the CPU definition (mla_attention_expanded) on fresh random
// inputs: tiny and real shapes, positions 0..4097 and 70000, 1..256 queries, a captured graph
// replayed at several positions through one pos buffer; the batched form (1..64 sessions,
// each over its own cache at its own position) per session. The output and workspace start as
// NaN, and cache rows past pos+T hold NaN, so unwritten outputs and reads beyond the causal
// window fail the comparison.
// Tolerance (max |err| / max |ref|): 1e-2 on the tensor-core path (bf16 latent queries and
// probabilities, fp32 accumulation); 1e-4 on the fp32 simple path (ranks the fast kernel
// does not take).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "backends/cpu/ops.h"
#include "backends/cuda/ops.h"
#include "compare.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "gpu_test_util.h"

namespace {

using kl::test::rel_error;

constexpr size_t kBackendPiece = 256;  // the backend sizes the workspace for this T
constexpr size_t kPoisonRows = 37;     // NaN rows after pos+T, inside max_rows

enum class Reference { Expanded, Absorbed };

struct Inputs {
    std::vector<float> q, cache, kv_b;
    std::vector<uint16_t> cache_b, kv_b_b;
};

Inputs make_inputs(const kl::cpu::MlaShape& s, size_t T, size_t rows, size_t max_rows,
                   uint32_t seed) {
    Inputs in;
    in.q = randn(T * s.q_width(), seed);
    in.cache = randn(rows * s.cache_width(), seed + 1);
    in.kv_b = randn(s.heads * (s.nope + s.v_dim) * s.rank, seed + 2, 0.125f);
    in.cache_b = to_bf16(in.cache);
    in.kv_b_b = to_bf16(in.kv_b);
    in.cache_b.resize(max_rows * s.cache_width(), 0x7fc0);  // bf16 NaN past the valid rows
    return in;
}

std::vector<float> reference(kl::ThreadPool& pool, const kl::cpu::MlaShape& s, const Inputs& in,
                             size_t T, size_t pos, Reference ref) {
    std::vector<float> want(T * s.heads * s.v_dim);
    if (ref == Reference::Expanded)
        kl::cpu::mla_attention_expanded(pool, s, in.q.data(), T, pos, in.cache.data(),
                                        in.kv_b.data(), want.data());
    else
        kl::cpu::mla_attention_absorbed(pool, s, in.q.data(), T, pos, in.cache.data(),
                                        in.kv_b.data(), want.data());
    return want;
}

struct GpuRun {
    GpuRun(const kl::cpu::MlaShape& s, const Inputs& in, size_t T, size_t max_rows)
        : shape(s), T(T), max_rows(max_rows), q(in.q), cache(in.cache_b), kv_b(in.kv_b_b),
          pos(size_t(1)), out(T * s.heads * s.v_dim),
          work(std::max<size_t>(1, kl::cuda::mla_workspace_bytes(
                                       std::max(T, kBackendPiece), s.heads, s.rank, s.rope,
                                       s.v_dim, max_rows))) {
        cudaMemset(work.ptr, 0xff, work.n);  // NaN floats: partials nobody wrote poison results
    }
    void launch(cudaStream_t stream) {
        kl::cuda::mla_attention(q.ptr, T, pos.ptr, max_rows,
                                reinterpret_cast<const kl::cuda::bf16*>(cache.ptr),
                                reinterpret_cast<const kl::cuda::bf16*>(kv_b.ptr), shape.heads,
                                shape.nope, shape.rope, shape.v_dim, shape.rank, work.ptr,
                                out.ptr, stream);
    }
    void set_pos(size_t p) {
        const int32_t value = static_cast<int32_t>(p);
        cudaMemcpy(pos.ptr, &value, sizeof(value), cudaMemcpyHostToDevice);
        cudaMemset(out.ptr, 0xff, out.n * sizeof(float));
    }
    kl::cpu::MlaShape shape;
    size_t T, max_rows;
    Dev<float> q;
    Dev<uint16_t> cache, kv_b;
    Dev<int32_t> pos;
    Dev<float> out;
    Dev<uint8_t> work;
};

double gpu_vs_cpu(kl::ThreadPool& pool, const kl::cpu::MlaShape& s, size_t pos, size_t T,
                  uint32_t seed, Reference ref) {
    const size_t rows = pos + T, max_rows = rows + kPoisonRows;
    const Inputs in = make_inputs(s, T, rows, max_rows, seed);
    const auto want = reference(pool, s, in, T, pos, ref);
    GpuRun run(s, in, T, max_rows);
    run.set_pos(pos);
    run.launch(nullptr);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    return rel_error(run.out.get(), want);
}

struct ShapeCase {
    const char* name;
    kl::cpu::MlaShape shape;
    double tolerance;
};

std::ostream& operator<<(std::ostream& os, const ShapeCase& c) {
    return os << c.name;
}

class GpuMla : public ::testing::TestWithParam<ShapeCase> {
protected:
    void SetUp() override {
        if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
    }
};

TEST_P(GpuMla, MatchesExpandedCpu) {
    const ShapeCase& c = GetParam();
    kl::ThreadPool pool(0);
    double worst = 0.0;
    uint32_t seed = 100;
    for (size_t pos : {0, 1, 5, 300, 4097})
        for (size_t T : {1, 2, 4, 9, 64, 256}) {
            const double err = gpu_vs_cpu(pool, c.shape, pos, T, seed += 3, Reference::Expanded);
            EXPECT_LE(err, c.tolerance) << c.name << " pos=" << pos << " T=" << T;
            worst = std::max(worst, err);
        }
    std::printf("[ mla ] %s: worst rel error %.3g (tolerance %.0e)\n", c.name, worst, c.tolerance);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, GpuMla,
    ::testing::Values(ShapeCase{"real_h32_r512", {32, 128, 64, 128, 512}, 1e-2},
                      ShapeCase{"h4_r64", {4, 32, 16, 32, 64}, 1e-2},
                      ShapeCase{"h8_r256", {8, 64, 32, 64, 256}, 1e-2},
                      ShapeCase{"h3_r128_width152", {3, 24, 24, 40, 128}, 1e-2},
                      ShapeCase{"simple_h2_r32", {2, 16, 8, 16, 32}, 1e-4},
                      ShapeCase{"simple_h4_r96", {4, 32, 16, 32, 96}, 1e-4}),
    [](const ::testing::TestParamInfo<ShapeCase>& info) { return std::string(info.param.name); });

class GpuMlaLong : public ::testing::Test {
protected:
    void SetUp() override {
        if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
    }
};

TEST_F(GpuMlaLong, LongDecodeContext) {
    kl::ThreadPool pool(0);
    // Real shapes against the absorbed CPU form (the expanded one would decompress 70K rows
    // per head: minutes on the CPU); a tiny shape against the expanded definition.
    const kl::cpu::MlaShape real{32, 128, 64, 128, 512}, tiny{2, 32, 32, 32, 128};
    for (size_t T : {1, 4}) {
        const double e_real = gpu_vs_cpu(pool, real, 70000, T, 7 + T, Reference::Absorbed);
        const double e_tiny = gpu_vs_cpu(pool, tiny, 70001, T, 9 + T, Reference::Expanded);
        EXPECT_LE(e_real, 1e-2) << "real T=" << T;
        EXPECT_LE(e_tiny, 1e-2) << "tiny T=" << T;
        std::printf("[ mla ] pos 70000 T=%zu: real %.3g, tiny %.3g\n", T, e_real, e_tiny);
    }
}

TEST_F(GpuMlaLong, GraphReplayedAtNewPositions) {
    // Captured once, replayed with new values in the same pos buffer, as the decode graph is.
    kl::ThreadPool pool(0);
    const kl::cpu::MlaShape s{32, 128, 64, 128, 512};
    const size_t max_rows = 5000;
    for (size_t T : {1, 4}) {
        const Inputs in = make_inputs(s, T, max_rows, max_rows, 40 + T);
        GpuRun run(s, in, T, max_rows);
        cudaStream_t stream;
        ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
        cudaGraph_t graph;
        cudaGraphExec_t exec;
        ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
        run.launch(stream);
        ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
        ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
        for (size_t pos : {0, 7, 300, 4097, 4996}) {
            if (pos + T > max_rows) continue;
            run.set_pos(pos);
            ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
            ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
            const auto want = reference(pool, s, in, T, pos, Reference::Expanded);
            const double err = rel_error(run.out.get(), want);
            EXPECT_LE(err, 1e-2) << "graph T=" << T << " pos=" << pos;
            std::printf("[ mla ] graph T=%zu pos=%zu: rel error %.3g\n", T, pos, err);
        }
        cudaGraphExecDestroy(exec);
        cudaGraphDestroy(graph);
        cudaStreamDestroy(stream);
    }
}

TEST_F(GpuMlaLong, RejectsBadArguments) {
    const kl::cpu::MlaShape s{4, 32, 16, 32, 64};
    const Inputs in = make_inputs(s, 4, 4, 4, 1);
    GpuRun run(s, in, 4, 4);
    auto call = [&](size_t max_rows, void* work) {
        kl::cuda::mla_attention(run.q.ptr, 4, run.pos.ptr, max_rows,
                                reinterpret_cast<const kl::cuda::bf16*>(run.cache.ptr),
                                reinterpret_cast<const kl::cuda::bf16*>(run.kv_b.ptr), s.heads,
                                s.nope, s.rope, s.v_dim, s.rank, work, run.out.ptr, nullptr);
    };
    try {
        call(3, run.work.ptr);
        ADD_FAILURE() << "max_rows < T accepted";
    } catch (const kl::Error& e) {
        EXPECT_EQ(e.status(), kl::Status::InvalidArgument);
    }
    try {
        call(4, nullptr);
        ADD_FAILURE() << "null workspace accepted";
    } catch (const kl::Error& e) {
        EXPECT_EQ(e.status(), kl::Status::InvalidArgument);
    }
}

}  // namespace

namespace {

// mla_attention_batch: n sessions, each one query over its own cache at its own position
// (around the 32-row block edges and spread over 0..4097, so the splits' boundaries fall
// differently per session), against the CPU per session. The workspace is sized for 256
// sessions as the backend sizes it and starts as NaN; each cache holds NaN past its row
// pos, so a read beyond a session's own window fails the comparison.
void check_mla_batch(const ShapeCase& c, size_t n, uint32_t seed, double& worst) {
    const kl::cpu::MlaShape& s = c.shape;
    kl::ThreadPool pool(2);
    const size_t pattern[] = {0, 1, 5, 31, 32, 33, 300, 1000, 4097};
    // The real rank against the absorbed CPU form (the expanded one decompresses every row
    // per head: minutes); the others against the expanded definition.
    const Reference ref = s.rank >= 512 ? Reference::Absorbed : Reference::Expanded;
    std::vector<Inputs> in;
    std::vector<size_t> pos;
    std::vector<float> q;
    size_t max_rows = 0;
    for (size_t i = 0; i < n; ++i) {
        pos.push_back(pattern[(i * 7 + n) % 9]);
        const size_t rows = pos.back() + 1, with_poison = rows + kPoisonRows;
        in.push_back(make_inputs(s, 1, rows, with_poison, seed + 3 * uint32_t(i)));
        if (i > 0) in[i].kv_b = in[0].kv_b, in[i].kv_b_b = in[0].kv_b_b;  // one layer
        q.insert(q.end(), in[i].q.begin(), in[i].q.end());
        max_rows = std::max(max_rows, with_poison);
    }
    std::vector<std::unique_ptr<Dev<uint16_t>>> caches;
    std::vector<uint64_t> cache_ptrs;
    std::vector<int32_t> pos32;
    for (size_t i = 0; i < n; ++i) {
        caches.push_back(std::make_unique<Dev<uint16_t>>(in[i].cache_b));
        cache_ptrs.push_back(reinterpret_cast<uint64_t>(caches.back()->ptr));
        pos32.push_back(static_cast<int32_t>(pos[i]));
    }
    Dev<float> d_q(q), out(std::vector<float>(n * s.heads * s.v_dim, std::nanf("")));
    Dev<uint16_t> kv_b(in[0].kv_b_b);
    Dev<uint64_t> d_caches(cache_ptrs);
    Dev<int32_t> d_pos(pos32);
    Dev<uint8_t> work(std::max<size_t>(
        1, kl::cuda::mla_batch_workspace_bytes(256, s.heads, s.rank, s.rope, s.v_dim, max_rows)));
    cudaMemset(work.ptr, 0xff, work.n);
    kl::cuda::mla_attention_batch(
        d_q.ptr, n, d_pos.ptr, reinterpret_cast<const kl::cuda::bf16* const*>(d_caches.ptr),
        max_rows, reinterpret_cast<const kl::cuda::bf16*>(kv_b.ptr), s.heads, s.nope, s.rope,
        s.v_dim, s.rank, work.ptr, out.ptr, nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const std::vector<float> got = out.get();
    const size_t each = s.heads * s.v_dim;
    for (size_t i = 0; i < n; ++i) {
        const auto want = reference(pool, s, in[i], 1, pos[i], ref);
        const std::vector<float> row(got.begin() + i * each, got.begin() + (i + 1) * each);
        const double err = rel_error(row, want);
        EXPECT_LE(err, c.tolerance)
            << c.name << " n=" << n << " session " << i << " pos " << pos[i];
        worst = std::max(worst, err);
    }
}

}  // namespace

TEST_P(GpuMla, BatchMatchesCpuPerSession) {
    const ShapeCase& c = GetParam();
    double worst = 0.0;
    uint32_t seed = 900;
    for (size_t n : {1, 3, 8, 64}) check_mla_batch(c, n, seed += 211, worst);
    std::printf("[ mla batch ] %s: worst rel error %.3g (tolerance %.0e)\n", c.name, worst,
                c.tolerance);
}
