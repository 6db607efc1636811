// Weight quantization on the device with core/quantize.cpp's results bit for bit (FP8 block
// scaled, INT4 group scaled), and the dequantization to bf16 that prefill's cuBLASLt GEMMs read.
//
// Bit-exactness with the CPU rests on IEEE fp32 arithmetic: the divisions and products are
// __fdiv_rn / __fmul_rn (correctly rounded, never contracted or approximated), the conversions
// round to nearest even, and subnormals must survive: the build passes no fast-math or -ftz
// flag (CMakeLists.txt; nvcc has no macro this file could check it with), which would flush
// the subnormal values and scales the CPU keeps.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <climits>

#include "core/e4m3.h"
#include "cuda_util.h"
#include "ops.h"

namespace kl::cuda {
namespace {

constexpr int kThreads = 256;
constexpr float kInt4Step = 7.5f;  // scale = bf16(amax / 7.5): core/quantize.cpp

// Grid-stride kernels need no more blocks than this to fill the device many times over; the
// cap keeps any size within gridDim.x.
constexpr size_t kMaxBlocks = size_t{1} << 20;

unsigned blocks_for(size_t threads) {
    return static_cast<unsigned>(std::min((threads + kThreads - 1) / kThreads, kMaxBlocks));
}

bool aligned(const void* p, size_t bytes) {
    return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// The e4m3 codes of a and b (a in the low byte), as kl::f32_to_e4m3 gives them. The hardware
// cvt.rn.satfinite is round to nearest even and saturates finite values and infinities
// beyond ±448 to ±448 (0x7e / 0xfe), keeps the sign of zero (-0 and negative values that
// round to zero give 0x80), and handles e4m3 subnormals: all as the CPU does. Only NaN is left
// open by PTX ("a NaN"); the CPU gives 0x7f, so this does too. NaN reaches the conversion
// from a NaN input, or as 0 / 0 in a block whose amax / 448 underflows to a zero scale
// (amax below ~2^-141), where the CPU makes the same 0x7f codes.
__device__ inline uint32_t e4m3_pair(float a, float b) {
    uint32_t pair = __nv_cvt_float2_to_fp8x2(make_float2(a, b), __NV_SATFINITE, __NV_E4M3);
    if (isnan(a)) pair = (pair & 0xff00u) | 0x007fu;
    if (isnan(b)) pair = (pair & 0x00ffu) | 0x7f00u;
    return pair;
}

// The largest of one value per thread over a block of kThreads threads; every thread gets it.
// Max is exact and order-free, so any reduction order gives the CPU's amax.
__device__ inline float block_max(float value) {
    __shared__ float partial[kThreads / 32];
    for (int offset = 16; offset > 0; offset >>= 1)
        value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = value;
    __syncthreads();
    value = partial[0];
#pragma unroll
    for (int w = 1; w < kThreads / 32; ++w) value = fmaxf(value, partial[w]);
    return value;
}

// ---- FP8: one 128 x 128 block per thread block ------------------------------------------
// A warp per block row, 4 columns per lane, 8 rows per pass: the block's 16384 values are
// loaded once into registers (64 per thread, all loads issued before the reduction), the
// block's amax reduced, and the codes made from the registers. kVec: cols % 4 == 0 and
// 16-byte aligned values, 4-byte aligned codes (one float4 load and one 4-byte store per
// lane and row); otherwise one element at a time.
constexpr int kFp8Rows = kThreads / 32;             // block rows per pass
constexpr int kFp8Passes = kQuantBlock / kFp8Rows;  // 16
static_assert(kQuantBlock == 4 * 32, "a warp covers one block row, 4 columns per lane");

template <bool kVec>
__global__ void __launch_bounds__(kThreads)
    quantize_fp8_kernel(const float* values, size_t rows, size_t cols, size_t block_cols,
                        uint8_t* codes, float* scales) {
    const size_t r0 = (blockIdx.x / block_cols) * kQuantBlock;
    const size_t c = (blockIdx.x % block_cols) * kQuantBlock + 4 * (threadIdx.x & 31);
    const size_t warp = threadIdx.x >> 5;
    float v[kFp8Passes][4];
    float amax = 0.0f;  // padding reads as 0, which leaves the amax as it is
#pragma unroll
    for (int p = 0; p < kFp8Passes; ++p) {
        const size_t r = r0 + p * kFp8Rows + warp;
        const float* src = values + r * cols + c;
        if (kVec) {
            float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (r < rows && c < cols) x = *reinterpret_cast<const float4*>(src);
            v[p][0] = x.x, v[p][1] = x.y, v[p][2] = x.z, v[p][3] = x.w;
        } else {
#pragma unroll
            for (int j = 0; j < 4; ++j) v[p][j] = r < rows && c + j < cols ? src[j] : 0.0f;
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) amax = fmaxf(amax, fabsf(v[p][j]));
    }
    amax = block_max(amax);
    const float scale = amax > 0.0f ? __fdiv_rn(amax, kl::kE4m3Max) : 1.0f;
    if (threadIdx.x == 0) scales[blockIdx.x] = scale;
#pragma unroll
    for (int p = 0; p < kFp8Passes; ++p) {
        const size_t r = r0 + p * kFp8Rows + warp;
        if (r >= rows || c >= cols) continue;
        const uint32_t lo = e4m3_pair(__fdiv_rn(v[p][0], scale), __fdiv_rn(v[p][1], scale));
        const uint32_t hi = e4m3_pair(__fdiv_rn(v[p][2], scale), __fdiv_rn(v[p][3], scale));
        uint8_t* dst = codes + r * cols + c;
        if (kVec) {
            *reinterpret_cast<uint32_t*>(dst) = lo | hi << 16;
        } else {
            const uint32_t four = lo | hi << 16;
            for (int j = 0; j < 4 && c + j < cols; ++j)
                dst[j] = static_cast<uint8_t>(four >> (8 * j));
        }
    }
}

// ---- INT4: a half warp per row and group of 128 -----------------------------------------
// Lane k of the half warp makes word k of the group (8 values), so `slot` (a lane's place in
// its row, groups * 16 of them) is the word index; the slots past the row's last word only
// take part in the amax reduction. kVec: cols % 4 == 0 and 16-byte aligned values (two float4
// loads per lane).
constexpr int kWordsPerGroup = kQuantBlock / 8;
static_assert(kWordsPerGroup == 16, "the amax reduction spans a half warp");

template <bool kVec>
__global__ void __launch_bounds__(kThreads)
    quantize_int4_kernel(const float* values, size_t rows, size_t cols, size_t groups,
                         uint32_t* words_out, float* scales) {
    const size_t words = (cols + 7) / 8;
    const size_t slots = groups * kWordsPerGroup;
    const size_t total = rows * slots;  // a multiple of 16: half warps never straddle groups
    const size_t lane = threadIdx.x & 31;
    const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
    // The loop runs per warp (its first lane's index), as every lane must join the shuffles.
    for (size_t base = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x - lane;
         base < total; base += stride) {
        const size_t i = base + lane;
        const size_t r = i / slots, slot = i % slots;
        const size_t c = slot * 8;
        const bool live = i < total && c < cols;
        const float* src = values + r * cols + c;
        float v[8];
        if (kVec) {
            float4 x0 = make_float4(0.0f, 0.0f, 0.0f, 0.0f), x1 = x0;
            if (live) x0 = *reinterpret_cast<const float4*>(src);
            if (live && c + 4 < cols) x1 = *reinterpret_cast<const float4*>(src + 4);
            v[0] = x0.x, v[1] = x0.y, v[2] = x0.z, v[3] = x0.w;
            v[4] = x1.x, v[5] = x1.y, v[6] = x1.z, v[7] = x1.w;
        } else {
#pragma unroll
            for (int j = 0; j < 8; ++j) v[j] = live && c + j < cols ? src[j] : 0.0f;
        }
        float amax = 0.0f;
#pragma unroll
        for (int j = 0; j < 8; ++j) amax = fmaxf(amax, fabsf(v[j]));
        for (int offset = kWordsPerGroup / 2; offset > 0; offset >>= 1)
            amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
        // The scale is held as bf16 (the model's dtype), so the codes are made with that value.
        float scale = __bfloat162float(__float2bfloat16_rn(__fdiv_rn(amax, kInt4Step)));
        if (!(scale > 0.0f)) scale = 1.0f;  // all zero, or amax / 7.5 below bf16's range
        if (i >= total) continue;
        if (slot % kWordsPerGroup == 0) scales[r * groups + slot / kWordsPerGroup] = scale;
        if (!live) continue;
        uint32_t word = 0;  // padding nibbles past the last column stay 0
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            if (c + j >= cols) break;
            // std::clamp's comparisons: -8 and 7 are the ends of the symmetric int4 range.
            float level = rintf(__fdiv_rn(v[j], scale));
            level = level < -8.0f ? -8.0f : (7.0f < level ? 7.0f : level);
            word |= static_cast<uint32_t>(static_cast<int>(level) + 8) << (4 * j);
        }
        words_out[r * words + slot] = word;
    }
}

// ---- dequantize to bf16 -------------------------------------------------------------------
// out = bf16_rn(fp32(code value) * scale). The e4m3 codes go through fp16 (which holds every
// e4m3 value exactly) with the hardware's paired conversion; a NaN code (0x7f / 0xff) gives a
// NaN, not necessarily with the bits of the CPU's bf16(NaN).
__device__ inline float2 e4m3_pair_to_float2(uint16_t pair) {
    const __half2_raw raw = __nv_cvt_fp8x2_to_halfraw2(pair, __NV_E4M3);
    return __half22float2(__half2(raw));
}

__device__ inline uint32_t bf16_pair(float a, float b, float scale) {  // a in the low half
    const __nv_bfloat162 pair = __floats2bfloat162_rn(__fmul_rn(a, scale), __fmul_rn(b, scale));
    return *reinterpret_cast<const uint32_t*>(&pair);
}

// 16 codes per thread: one 16-byte load, two 16-byte stores (cols % 16 == 0, data and out
// 16-byte aligned). The 16 columns lie in one 128-column block, so they share a scale.
__global__ void __launch_bounds__(kThreads)
    dequantize_fp8_vec_kernel(const uint4* codes, const float* scales, size_t scale_cols,
                              size_t rows, size_t cols, uint4* out) {
    const size_t per_row = cols / 16, total = rows * per_row;
    for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
         i += static_cast<size_t>(gridDim.x) * blockDim.x) {
        const size_t r = i / per_row, c = (i % per_row) * 16;
        const float scale = scales[(r / kQuantBlock) * scale_cols + c / kQuantBlock];
        const uint4 in = codes[i];
        const uint32_t in_words[4] = {in.x, in.y, in.z, in.w};
        uint32_t o[8];
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const float2 f =
                e4m3_pair_to_float2(static_cast<uint16_t>(in_words[k / 2] >> (16 * (k % 2))));
            o[k] = bf16_pair(f.x, f.y, scale);
        }
        out[2 * i] = make_uint4(o[0], o[1], o[2], o[3]);
        out[2 * i + 1] = make_uint4(o[4], o[5], o[6], o[7]);
    }
}

__global__ void __launch_bounds__(kThreads)
    dequantize_fp8_kernel(const uint8_t* codes, const float* scales, size_t scale_cols, size_t rows,
                          size_t cols, bf16* out) {
    const size_t total = rows * cols;
    for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
         i += static_cast<size_t>(gridDim.x) * blockDim.x) {
        const size_t r = i / cols, c = i % cols;
        const float scale = scales[(r / kQuantBlock) * scale_cols + c / kQuantBlock];
        const float value = e4m3_pair_to_float2(codes[i]).x;
        out[i] = __float2bfloat16_rn(__fmul_rn(value, scale));
    }
}

__device__ inline float int4_value(uint32_t word, int j) {  // q of nibble j
    return static_cast<float>(static_cast<int>((word >> (4 * j)) & 0xfu) - 8);
}

// 4 words (32 values) per thread: one 16-byte load, four 16-byte stores (cols % 32 == 0,
// data and out 16-byte aligned). The 32 columns lie in one group, so they share a scale.
__global__ void __launch_bounds__(kThreads)
    dequantize_int4_vec_kernel(const uint4* words, const float* scales, size_t scale_cols,
                               size_t rows, size_t cols, uint4* out) {
    const size_t per_row = cols / 32, total = rows * per_row;
    for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
         i += static_cast<size_t>(gridDim.x) * blockDim.x) {
        const size_t r = i / per_row, c = (i % per_row) * 32;
        const float scale = scales[r * scale_cols + c / kQuantBlock];
        const uint4 in = words[i];
        const uint32_t in_words[4] = {in.x, in.y, in.z, in.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const uint32_t w = in_words[k];
            out[4 * i + k] = make_uint4(bf16_pair(int4_value(w, 0), int4_value(w, 1), scale),
                                        bf16_pair(int4_value(w, 2), int4_value(w, 3), scale),
                                        bf16_pair(int4_value(w, 4), int4_value(w, 5), scale),
                                        bf16_pair(int4_value(w, 6), int4_value(w, 7), scale));
        }
    }
}

__global__ void __launch_bounds__(kThreads)
    dequantize_int4_kernel(const uint32_t* words, const float* scales, size_t scale_cols,
                           size_t rows, size_t cols, bf16* out) {
    const size_t total = rows * cols, row_words = (cols + 7) / 8;
    for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
         i += static_cast<size_t>(gridDim.x) * blockDim.x) {
        const size_t r = i / cols, c = i % cols;
        const float scale = scales[r * scale_cols + c / kQuantBlock];
        const float q = int4_value(words[r * row_words + c / 8], static_cast<int>(c % 8));
        out[i] = __float2bfloat16_rn(__fmul_rn(q, scale));
    }
}

}  // namespace

void quantize_on_device(const float* values, size_t rows, size_t cols, WeightCode code, void* data,
                        float* scales, cudaStream_t stream) {
    if (rows == 0 || cols == 0) return;
    const bool vec_in = cols % 4 == 0 && aligned(values, 16);
    if (code == WeightCode::Fp8) {
        const size_t block_cols = quant_scale_cols(cols);
        const size_t blocks = quant_scale_cols(rows) * block_cols;
        if (blocks > static_cast<size_t>(INT_MAX))
            fail(Status::Internal, "quantize_on_device: matrix too large");
        auto* codes = static_cast<uint8_t*>(data);
        if (vec_in && aligned(codes, 4))
            quantize_fp8_kernel<true><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
                values, rows, cols, block_cols, codes, scales);
        else
            quantize_fp8_kernel<false><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
                values, rows, cols, block_cols, codes, scales);
        check_launch("quantize_fp8_kernel");
    } else if (code == WeightCode::Int4) {
        const size_t groups = quant_scale_cols(cols);
        const unsigned blocks = blocks_for(rows * groups * kWordsPerGroup);
        auto* words = static_cast<uint32_t*>(data);
        if (vec_in)
            quantize_int4_kernel<true>
                <<<blocks, kThreads, 0, stream>>>(values, rows, cols, groups, words, scales);
        else
            quantize_int4_kernel<false>
                <<<blocks, kThreads, 0, stream>>>(values, rows, cols, groups, words, scales);
        check_launch("quantize_int4_kernel");
    } else {
        fail(Status::Internal, "quantize_on_device: Fp8 or Int4 only");
    }
}

void dequantize_to_bf16(const QMatrix& w, size_t rows, size_t cols, bf16* out,
                        cudaStream_t stream) {
    if (rows == 0 || cols == 0) return;
    const size_t scale_cols = quant_scale_cols(cols);
    switch (w.code) {
        case WeightCode::Bf16:
            check(cudaMemcpyAsync(out, w.data, rows * cols * sizeof(bf16), cudaMemcpyDeviceToDevice,
                                  stream),
                  "dequantize_to_bf16 copy");
            return;
        case WeightCode::Fp8:
            if (cols % 16 == 0 && aligned(w.data, 16) && aligned(out, 16))
                dequantize_fp8_vec_kernel<<<blocks_for(rows * cols / 16), kThreads, 0, stream>>>(
                    static_cast<const uint4*>(w.data), w.scales, scale_cols, rows, cols,
                    reinterpret_cast<uint4*>(out));
            else
                dequantize_fp8_kernel<<<blocks_for(rows * cols), kThreads, 0, stream>>>(
                    static_cast<const uint8_t*>(w.data), w.scales, scale_cols, rows, cols, out);
            check_launch("dequantize_fp8_kernel");
            return;
        case WeightCode::Int4:
            if (cols % 32 == 0 && aligned(w.data, 16) && aligned(out, 16))
                dequantize_int4_vec_kernel<<<blocks_for(rows * cols / 32), kThreads, 0, stream>>>(
                    static_cast<const uint4*>(w.data), w.scales, scale_cols, rows, cols,
                    reinterpret_cast<uint4*>(out));
            else
                dequantize_int4_kernel<<<blocks_for(rows * cols), kThreads, 0, stream>>>(
                    static_cast<const uint32_t*>(w.data), w.scales, scale_cols, rows, cols, out);
            check_launch("dequantize_int4_kernel");
            return;
    }
    fail(Status::Internal, "dequantize_to_bf16: unknown weight code");
}

}  // namespace kl::cuda
