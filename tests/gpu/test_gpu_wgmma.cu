// wgmma.cuh's building blocks on the device: one warpgroup computes a 64 x 128 tile of
// A · B^T over K = 256 (bf16, 16 k-steps) or K = 512 (e4m3, 16 k-steps) from 128-byte-
// swizzled K-major slabs, against the host's fp64 sums of the same values. It checks the
// descriptor fields, the swizzle, the k-step advance inside a slab and the accumulator layout
// that the wgmma kernels will rely on. Tolerance relative to the largest |C|: bf16 1e-5 (fp32
// accumulation of exact products), e4m3 3e-3 (the FP8 tensor cores' shorter sums).
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "backends/cuda/tensor_core.cuh"
#include "backends/cuda/wgmma.cuh"
#include "gpu_test_util.h"

namespace {

constexpr int kM = 64, kN = 128;

// A [64][K] and B [128][K] row-major (K-major) bytes, `elem` bytes per value; C [64][128].
// One CTA of one warpgroup; *ran = 1 where the sm_90a code ran.
template <bool kFp8>
__global__ void wgmma_tile(const uint8_t* a, const uint8_t* b, int k_bytes, float* c, int* ran) {
    extern __shared__ __align__(1024) uint8_t smem_raw[];
    // Slabs 1024-byte aligned whatever the dynamic area's start (1 KB of slack allocated).
    uint8_t* smem = smem_raw + ((1024 - (kl::cuda::smem_u32(smem_raw) & 1023)) & 1023);
    const int slabs = k_bytes / kl::cuda::kSwizzleRowBytes;
    uint8_t* a_s = smem;                     // [slabs][64 rows][128 B]
    uint8_t* b_s = smem + slabs * kM * 128;  // [slabs][128 rows][128 B]
    for (int i = threadIdx.x; i < slabs * kM * 8; i += blockDim.x) {
        const int slab = i / (kM * 8), row = (i / 8) % kM, chunk = i % 8;
        *reinterpret_cast<uint4*>(a_s + slab * kM * 128 + kl::cuda::swizzle128_offset(row, chunk)) =
            *reinterpret_cast<const uint4*>(a + size_t(row) * k_bytes + slab * 128 + chunk * 16);
    }
    for (int i = threadIdx.x; i < slabs * kN * 8; i += blockDim.x) {
        const int slab = i / (kN * 8), row = (i / 8) % kN, chunk = i % 8;
        *reinterpret_cast<uint4*>(b_s + slab * kN * 128 + kl::cuda::swizzle128_offset(row, chunk)) =
            *reinterpret_cast<const uint4*>(b + size_t(row) * k_bytes + slab * 128 + chunk * 16);
    }
    kl::cuda::fence_async_shared();
    __syncthreads();
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    float d[64];
    for (float& v : d) v = 0.0f;
    kl::cuda::wgmma_fence();
    for (int slab = 0; slab < slabs; ++slab)
        for (int step = 0; step < 4; ++step) {  // 4 k-steps of 32 bytes per 128-byte slab
            const uint64_t da = kl::cuda::wgmma_desc_sw128(a_s + slab * kM * 128, step * 32);
            const uint64_t db = kl::cuda::wgmma_desc_sw128(b_s + slab * kN * 128, step * 32);
            if constexpr (kFp8)
                kl::cuda::wgmma_m64n128k32_e4m3(d, da, db, slab + step > 0);
            else
                kl::cuda::wgmma_m64n128k16_bf16(d, da, db, slab + step > 0);
        }
    kl::cuda::wgmma_commit();
    kl::cuda::wgmma_wait<0>();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    for (int j = 0; j < kN / 8; ++j)
        for (int h = 0; h < 2; ++h) {
            const int row = 16 * warp + g + 8 * h, col = 8 * j + 2 * t;
            c[row * kN + col] = d[4 * j + 2 * h];
            c[row * kN + col + 1] = d[4 * j + 2 * h + 1];
        }
    if (threadIdx.x == 0) *ran = 1;
#endif
}

// Runs the tile for K values per row; a and b hold the values (already representable).
template <bool kFp8>
double tile_error(int K, uint32_t seed, bool& ran) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const int elem = kFp8 ? 1 : 2, k_bytes = K * elem;
    std::vector<uint8_t> a(size_t(kM) * k_bytes), b(size_t(kN) * k_bytes);
    std::vector<double> av(size_t(kM) * K), bv(size_t(kN) * K);
    auto fill = [&](std::vector<uint8_t>& bytes, std::vector<double>& values) {
        for (size_t i = 0; i < values.size(); ++i) {
            const float x = normal(rng) * (kFp8 ? 4.0f : 1.0f);
            if constexpr (kFp8) {
                const __nv_fp8_e4m3 code(x);
                bytes[i] = *reinterpret_cast<const uint8_t*>(&code);
                values[i] = float(code);
            } else {
                const __nv_bfloat16 v = __float2bfloat16(x);
                std::memcpy(&bytes[2 * i], &v, 2);
                values[i] = __bfloat162float(v);
            }
        }
    };
    fill(a, av);
    fill(b, bv);
    Dev<uint8_t> a_d(a), b_d(b);
    Dev<float> c_d(size_t(kM) * kN);
    Dev<int> ran_d(std::vector<int>{0});
    const size_t smem = size_t(k_bytes / 128) * (kM + kN) * 128 + 1024;
    cudaFuncSetAttribute(wgmma_tile<kFp8>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    wgmma_tile<kFp8><<<1, 128, smem>>>(a_d.ptr, b_d.ptr, k_bytes, c_d.ptr, ran_d.ptr);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    ran = ran_d.get()[0] == 1;
    const std::vector<float> c = c_d.get();
    double worst = 0.0, largest = 0.0;
    for (int i = 0; i < kM; ++i)
        for (int j = 0; j < kN; ++j) {
            double want = 0.0;
            for (int k = 0; k < K; ++k) want += av[size_t(i) * K + k] * bv[size_t(j) * K + k];
            worst = std::max(worst, std::abs(c[size_t(i) * kN + j] - want));
            largest = std::max(largest, std::abs(want));
        }
    return worst / largest;
}

bool sm90() {
    int device = 0, major = 0, minor = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
    return major == 9 && minor == 0;
}

// Skips off compute capability 9.0; fails where the sm_90a code did not run.
template <bool kFp8>
void check_tile(int K, uint32_t seed, const char* name, double tolerance) {
    if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
    if (!sm90()) GTEST_SKIP() << "wgmma needs a compute capability 9.0 device";
    bool ran = false;
    const double err = tile_error<kFp8>(K, seed, ran);
    ASSERT_TRUE(ran) << "the sm_90a code did not run (KL_CUDA_ARCHITECTURES without 90a?)";
    std::printf("[ wgmma ] %s 64x128x%d: rel error %.2e\n", name, K, err);
    EXPECT_LE(err, tolerance);
}

TEST(GpuWgmma, Bf16TileMatchesTheHost) {
    check_tile<false>(256, 1, "bf16", 1e-5);
}

TEST(GpuWgmma, E4m3TileMatchesTheHost) {
    // The FP8 tensor cores' sums keep fewer bits than fp32 (H200: 9.2e-4 over 16 k-steps);
    // a wrong layout or descriptor gives errors of order 1.
    check_tile<true>(512, 2, "e4m3", 3e-3);
}

}  // namespace
