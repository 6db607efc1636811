// MLA prefill in the expanded form (mla_prefill.cu) against the CPU definition
// (mla_attention_expanded) on fresh random inputs: the released shapes and the presets',
// pieces of 256..1000 queries at positions that need one, two and three chunks of keys (the
// last one a few keys long). The keys' decompression (kv = c · kv_b^T) is done here on the
// host in fp32 and rounded to bf16, as the backend's GEMM and cast do, so this checks the
// kernel and its chunking; test_gpu_model.cpp checks the whole layer through the backend.
// The output, the running state and the cache rows past pos+T start as NaN, so an unwritten
// output or a read beyond the causal window fails the comparison.
// Tolerance (max |err| / max |ref|): 1e-2, as the absorbed path's (bf16 queries, keys,
// values and probabilities; fp32 accumulation).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "backends/cpu/ops.h"
#include "backends/cuda/ops.h"
#include "compare.h"
#include "core/thread_pool.h"
#include "gpu_test_util.h"

namespace {

using kl::test::rel_error;

constexpr uint16_t kBf16Nan = 0x7fc0;

struct PrefillCase {
    size_t pos, T;
};

// The GPU's output for T queries at pos, the chunks' keys decompressed on the host.
// cache and kv_b hold bf16 values.
std::vector<float> gpu_prefill(kl::ThreadPool& pool, const kl::cpu::MlaShape& s,
                               const std::vector<float>& q, const std::vector<float>& cache,
                               const std::vector<float>& kv_b, size_t pos, size_t T) {
    const size_t width = s.cache_width(), keys_total = pos + T, kv_width = s.nope + s.v_dim;
    std::vector<float> rounded = cache;
    std::vector<uint16_t> cache_b = to_bf16(rounded);
    cache_b.resize((keys_total + 37) * width, kBf16Nan);  // rows nobody may read
    Dev<float> q_d(q), out(T * s.heads * s.v_dim);
    Dev<uint16_t> cache_d(cache_b), kv_d(kl::cuda::kMlaPrefillChunkKeys * s.heads * kv_width);
    Dev<float2> state(T * s.heads);
    // The values by column for the wgmma kernel (unless KL_CUDA_MLA_WGMMA=0), NaN
    // until written: the zeros it needs past a chunk's keys must be the kernel's own.
    Dev<uint16_t> vt(s.heads * s.v_dim * kl::cuda::kMlaPrefillChunkKeys);
    cudaMemset(out.ptr, 0xff, out.n * sizeof(float));
    cudaMemset(state.ptr, 0xff, state.n * sizeof(float2));
    cudaMemset(vt.ptr, 0xff, vt.n * sizeof(uint16_t));
    for (size_t k0 = 0; k0 < keys_total; k0 += kl::cuda::kMlaPrefillChunkKeys) {
        const size_t keys = std::min(kl::cuda::kMlaPrefillChunkKeys, keys_total - k0);
        std::vector<float> latent(keys * s.rank), kv(keys * s.heads * kv_width);
        for (size_t r = 0; r < keys; ++r)
            std::copy_n(cache.begin() + (k0 + r) * width, s.rank, latent.begin() + r * s.rank);
        kl::cpu::matmul_wt(pool, latent.data(), keys, s.rank, kv_b.data(), s.heads * kv_width,
                           kv.data());
        const std::vector<uint16_t> kv_bf = to_bf16(kv);
        cudaMemcpy(kv_d.ptr, kv_bf.data(), kv_bf.size() * sizeof(uint16_t), cudaMemcpyHostToDevice);
        kl::cuda::mla_prefill_chunk(
            q_d.ptr, T, pos, reinterpret_cast<const kl::cuda::bf16*>(cache_d.ptr),
            reinterpret_cast<const kl::cuda::bf16*>(kv_d.ptr), k0, keys, k0 == 0,
            k0 + keys == keys_total, s.heads, s.nope, s.rope, s.v_dim, s.rank, state.ptr, out.ptr,
            nullptr, reinterpret_cast<kl::cuda::bf16*>(vt.ptr));
        EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    }
    return out.get();
}

double prefill_vs_cpu(kl::ThreadPool& pool, const kl::cpu::MlaShape& s, PrefillCase c,
                      uint32_t seed) {
    const size_t rows = c.pos + c.T;
    const std::vector<float> q = randn(c.T * s.q_width(), seed);
    std::vector<float> cache = randn(rows * s.cache_width(), seed + 1);
    std::vector<float> kv_b = randn(s.heads * (s.nope + s.v_dim) * s.rank, seed + 2, 0.125f);
    to_bf16(cache), to_bf16(kv_b);  // both sides read the bf16 values
    const std::vector<float> got = gpu_prefill(pool, s, q, cache, kv_b, c.pos, c.T);
    std::vector<float> want(c.T * s.heads * s.v_dim);
    kl::cpu::mla_attention_expanded(pool, s, q.data(), c.T, c.pos, cache.data(), kv_b.data(),
                                    want.data());
    return rel_error(got, want);
}

struct ShapeCase {
    const char* name;
    kl::cpu::MlaShape shape;
    std::vector<PrefillCase> cases;
};

std::ostream& operator<<(std::ostream& os, const ShapeCase& c) {
    return os << c.name;
}

class GpuMlaPrefill : public ::testing::TestWithParam<ShapeCase> {
protected:
    void SetUp() override {
        if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
    }
};

TEST_P(GpuMlaPrefill, MatchesExpandedCpu) {
    const ShapeCase& c = GetParam();
    const kl::cpu::MlaShape& s = c.shape;
    ASSERT_TRUE(kl::cuda::mla_prefill_supported(256, s.heads, s.nope, s.rope, s.v_dim, s.rank));
    kl::ThreadPool pool(0);
    double worst = 0.0;
    uint32_t seed = 500;
    for (const PrefillCase& pc : c.cases) {
        const double err = prefill_vs_cpu(pool, s, pc, seed += 3);
        EXPECT_LE(err, 1e-2) << c.name << " pos=" << pc.pos << " T=" << pc.T;
        worst = std::max(worst, err);
    }
    const bool wgmma = kl::cuda::mla_prefill_wgmma_usable(s.nope, s.rope, s.v_dim);
    std::printf("[ mla prefill ] %s (%s): worst rel error %.3g (tolerance 1e-2)\n", c.name,
                wgmma ? "wgmma" : "mma.sync", worst);
}

// Chunks of 4096 keys: pos + T <= 4096 is one chunk; 4300 two; 8450 three, the last 258.
INSTANTIATE_TEST_SUITE_P(
    Shapes, GpuMlaPrefill,
    ::testing::Values(
        ShapeCase{"real_h32_r512",
                  {32, 128, 64, 128, 512},
                  {{0, 256}, {0, 1000}, {4000, 300}, {8190, 260}}},
        ShapeCase{"h8_r256", {8, 64, 32, 64, 256}, {{0, 256}, {3, 777}, {4095, 256}, {8000, 450}}},
        ShapeCase{"h4_r64", {4, 32, 16, 32, 64}, {{0, 300}, {1, 4096}, {12000, 333}}},
        ShapeCase{"h2_r32_qk24", {2, 16, 8, 16, 32}, {{0, 256}, {5, 1001}, {9000, 257}}}),
    [](const ::testing::TestParamInfo<ShapeCase>& info) { return std::string(info.param.name); });

TEST(GpuMlaPrefillShapes, WhatRunsExpanded) {
    // Too few queries, or shapes without a built kernel, keep the absorbed path.
    EXPECT_FALSE(kl::cuda::mla_prefill_supported(255, 32, 128, 64, 128, 512));
    EXPECT_TRUE(kl::cuda::mla_prefill_supported(4096, 32, 128, 64, 128, 512));
    EXPECT_FALSE(kl::cuda::mla_prefill_supported(4096, 3, 24, 24, 40, 128));  // v 40
    EXPECT_FALSE(kl::cuda::mla_prefill_supported(4096, 4, 32, 20, 32, 64));   // rope % 8
}

}  // namespace
