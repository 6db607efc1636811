// Weight quantization on the device (backends/cuda/quantize_weights.cu) against
// core/quantize.cpp, exact: quantize_on_device's codes and scales equal kl::quantize's byte for
// byte, and dequantize_to_bf16 of kl::quantize's tensor equals bf16(kl::dequantize(...)) bit for
// bit (a NaN, which only the zero-scale edge case makes, needs only to be a NaN). Both formats,
// shapes that are multiples of 128 and odd ones (columns not a multiple of 4 or 8: partial
// words, padding nibbles), aligned buffers (the vector paths) and misaligned ones (the
// element-wise paths). Each 128 x 128 block of the input is one kind of values (below), the
// kinds rotated so that every shape sees every kind. Skipped without a usable GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backends/cuda/ops.h"
#include "core/e4m3.h"
#include "core/error.h"
#include "core/quantize.h"
#include "core/safetensors.h"
#include "gpu_test_util.h"

namespace {

using kl::cuda::QMatrix;
using kl::cuda::WeightCode;

class GpuQuantize : public ::testing::Test {
    void SetUp() override {
        if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
    }
};

enum Kind {
    kNormal,     // N(0, 1)
    kSmall,      // N(0, 1e-3)
    kLarge,      // N(0, 1e4)
    kZero,       // +0 and -0 (scale 1; -0 keeps its sign in e4m3)
    kHuge,       // up to ±FLT_MAX: the largest finite inputs
    kE4m3Sub,    // one value ~1 per 16, the rest ~1e-5 of it: e4m3 subnormal codes
    kBf16Sub,    // ~1e-39: subnormal fp32 values, bf16-subnormal INT4 scales
    kUnderflow,  // ~1e-44: amax / 448 underflows to an FP8 scale of 0 (codes ±448 and NaN)
    kWide,       // N(0, 1) * 10^U(-10, 10) per value
    kFp8Ties,    // 448 starting each block row, the rest halfway between e4m3 values (scale 1)
    kInt4Ties,   // 7.5 at each group's start, the rest multiples of 0.5 (INT4 scale 1)
    kKinds
};

std::vector<float> make_values(size_t rows, size_t cols, int rotation, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    std::uniform_int_distribution<int> code(0, 125), half_steps(-15, 15);
    std::vector<float> v(rows * cols);
    for (size_t r = 0; r < rows; ++r) {
        for (size_t c = 0; c < cols; ++c) {
            const size_t block = (r / 128) * 5 + c / 128;
            float x = 0.0f;
            switch (static_cast<Kind>((block + rotation) % kKinds)) {
                case kNormal:
                    x = normal(rng);
                    break;
                case kSmall:
                    x = 1e-3f * normal(rng);
                    break;
                case kLarge:
                    x = 1e4f * normal(rng);
                    break;
                case kZero:
                    x = (r + c) % 2 ? -0.0f : 0.0f;
                    break;
                case kHuge:
                    x = FLT_MAX * uniform(rng);
                    break;
                case kE4m3Sub:
                    x = normal(rng) * (c % 16 == 0 ? 1.0f : 3e-5f * std::exp2(6.0f * uniform(rng)));
                    break;
                case kBf16Sub:
                    x = 1e-39f * normal(rng);
                    break;
                case kUnderflow:
                    x = 1e-44f * normal(rng);
                    break;
                case kWide:
                    x = normal(rng) * std::pow(10.0f, 10.0f * uniform(rng));
                    break;
                case kFp8Ties: {
                    const int k = code(rng);
                    x = c % 128 == 0 ? 448.0f
                                     : 0.5f * (kl::e4m3_to_f32(static_cast<uint8_t>(k)) +
                                               kl::e4m3_to_f32(static_cast<uint8_t>(k + 1)));
                    if (uniform(rng) < 0.0f) x = -x;
                    break;
                }
                case kInt4Ties:
                    x = c % 128 == 0 ? 7.5f : 0.5f * half_steps(rng);
                    break;
                case kKinds:
                    break;
            }
            v[r * cols + c] = x;
        }
    }
    return v;
}

uint32_t bits(float x) {
    uint32_t b;
    std::memcpy(&b, &x, sizeof(b));
    return b;
}

bool is_nan_bf16(uint16_t b) {
    return (b & 0x7fffu) > 0x7f80u;
}

// The first index where two byte arrays differ, or -1.
long first_difference(const uint8_t* a, const uint8_t* b, size_t n) {
    for (size_t i = 0; i < n; ++i)
        if (a[i] != b[i]) return static_cast<long>(i);
    return -1;
}

// A device buffer of `bytes` bytes plus `pad` more, filled with 0xff so that a value the
// kernel leaves unwritten (a padding nibble, a missed scale) shows.
struct Scratch {
    explicit Scratch(size_t bytes, size_t pad = 16) : buffer(bytes + pad) {
        cudaMemset(buffer.ptr, 0xff, bytes + pad);
    }
    Dev<uint8_t> buffer;
};

void check_format(kl::WeightFormat format) {
    const WeightCode code = format == kl::WeightFormat::Fp8 ? WeightCode::Fp8 : WeightCode::Int4;
    const size_t word = format == kl::WeightFormat::Fp8 ? 1 : 4;  // bytes of one data unit
    uint32_t seed = 1;
    for (size_t rows : {1, 3, 130, 576}) {
        for (size_t cols : {5, 8, 24, 132, 136, 2304}) {
            for (int rotation = 0; rotation < kKinds; ++rotation) {
                const std::vector<float> values = make_values(rows, cols, rotation, seed++);
                const kl::QuantizedTensor ref = kl::quantize(
                    format, values.data(), static_cast<int64_t>(rows), static_cast<int64_t>(cols));
                std::vector<float> dq(values.size());
                kl::dequantize(ref, dq.data());
                std::vector<uint16_t> expected(values.size());
                for (size_t i = 0; i < dq.size(); ++i) expected[i] = kl::f32_to_bf16(dq[i]);

                // misaligned: values, codes and out off their vector alignment (the
                // element-wise paths); aligned: the vector paths where the shape allows.
                for (size_t misaligned : {0, 1}) {
                    const std::string where = "rows " + std::to_string(rows) + " cols " +
                                              std::to_string(cols) + " rotation " +
                                              std::to_string(rotation) + " misaligned " +
                                              std::to_string(misaligned);
                    SCOPED_TRACE(where);
                    Scratch in(values.size() * sizeof(float)), data(ref.data.size()),
                        scales(ref.scales.size() * sizeof(float));
                    float* in_ptr = reinterpret_cast<float*>(in.buffer.ptr) + misaligned;
                    uint8_t* data_ptr = data.buffer.ptr + misaligned * word;
                    cudaMemcpy(in_ptr, values.data(), values.size() * sizeof(float),
                               cudaMemcpyHostToDevice);
                    auto* scale_ptr = reinterpret_cast<float*>(scales.buffer.ptr);
                    kl::cuda::quantize_on_device(in_ptr, rows, cols, code, data_ptr, scale_ptr,
                                                 nullptr);
                    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

                    std::vector<uint8_t> got_data(ref.data.size());
                    std::vector<float> got_scales(ref.scales.size());
                    cudaMemcpy(got_data.data(), data_ptr, got_data.size(), cudaMemcpyDeviceToHost);
                    cudaMemcpy(got_scales.data(), scale_ptr, got_scales.size() * sizeof(float),
                               cudaMemcpyDeviceToHost);
                    const long bad_scale =
                        first_difference(reinterpret_cast<const uint8_t*>(got_scales.data()),
                                         reinterpret_cast<const uint8_t*>(ref.scales.data()),
                                         ref.scales.size() * sizeof(float));
                    if (bad_scale >= 0) {
                        const size_t i = static_cast<size_t>(bad_scale) / sizeof(float);
                        FAIL() << "scale " << i << ": " << got_scales[i] << " (0x" << std::hex
                               << bits(got_scales[i]) << "), expected " << ref.scales[i] << " (0x"
                               << bits(ref.scales[i]) << ")";
                    }
                    const long bad_byte =
                        first_difference(got_data.data(), ref.data.data(), ref.data.size());
                    if (bad_byte >= 0) {
                        const size_t i = static_cast<size_t>(bad_byte);
                        FAIL() << "data byte " << i << ": 0x" << std::hex << int(got_data[i])
                               << ", expected 0x" << int(ref.data[i]);
                    }

                    // dequantize_to_bf16 of the CPU's tensor.
                    Dev<uint8_t> q_data(ref.data);
                    Dev<float> q_scales(ref.scales);
                    Scratch out(values.size() * sizeof(uint16_t));
                    auto* out_ptr = reinterpret_cast<kl::cuda::bf16*>(out.buffer.ptr) + misaligned;
                    uint8_t* q_ptr = q_data.ptr;
                    Scratch q_shifted(ref.data.size());
                    if (misaligned) {
                        q_ptr = q_shifted.buffer.ptr + word;
                        cudaMemcpy(q_ptr, ref.data.data(), ref.data.size(), cudaMemcpyHostToDevice);
                    }
                    const QMatrix w{code, q_ptr, q_scales.ptr};
                    kl::cuda::dequantize_to_bf16(w, rows, cols, out_ptr, nullptr);
                    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
                    std::vector<uint16_t> got(values.size());
                    cudaMemcpy(got.data(), out_ptr, got.size() * sizeof(uint16_t),
                               cudaMemcpyDeviceToHost);
                    for (size_t i = 0; i < got.size(); ++i) {
                        if (got[i] == expected[i] ||
                            (is_nan_bf16(got[i]) && is_nan_bf16(expected[i])))
                            continue;
                        FAIL() << "dequantized value " << i << " (row " << i / cols << ", col "
                               << i % cols << "): 0x" << std::hex << got[i] << ", expected 0x"
                               << expected[i] << " (" << std::dec << dq[i] << ")";
                    }
                }
            }
        }
    }
}

TEST_F(GpuQuantize, Fp8OnDeviceEqualsCpuQuantizeAndDequantize) {
    check_format(kl::WeightFormat::Fp8);
}

TEST_F(GpuQuantize, Int4OnDeviceEqualsCpuQuantizeAndDequantize) {
    check_format(kl::WeightFormat::Int4);
}

// FP8 activations for W8A8 prefill: each row in groups of 128 columns, codes and scales
// equal to kl::quantize of the row as a [1, in] FP8 tensor, byte for byte, with the scales
// at the strides asked (token-major and group-major). Rows of normal, tiny, large, zero,
// bf16-subnormal and wide-ranging values; in from one group to a partial last group.
TEST_F(GpuQuantize, ActivationsFp8EqualCpuQuantizeOfEachRow) {
    std::mt19937 rng(77);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> exponent(-10.0f, 10.0f);
    for (size_t in : {16, 128, 144, 2304, 4096})
        for (size_t n : {1, 7, 300}) {
            std::vector<float> x(n * in);
            for (size_t t = 0; t < n; ++t)
                for (size_t c = 0; c < in; ++c) {
                    float v = normal(rng);
                    switch ((t + c / kl::cuda::kQuantBlock) % 6) {
                        case 1:
                            v *= 1e-3f;
                            break;
                        case 2:
                            v *= 3e4f;
                            break;
                        case 3:
                            v = c % 2 ? 0.0f : -0.0f;
                            break;
                        case 4:
                            v *= 1e-39f;
                            break;
                        case 5:
                            v *= std::pow(10.0f, exponent(rng));
                            break;
                        default:
                            break;
                    }
                    x[t * in + c] = v;
                }
            const std::vector<uint16_t> xb = to_bf16(x);  // x now holds the bf16 values
            const size_t groups = kl::cuda::quant_scale_cols(in);
            Dev<uint16_t> dx(xb);
            Dev<uint8_t> codes(n * in);
            Dev<float> scales(n * groups);
            for (bool token_major : {true, false}) {
                const size_t token_stride = token_major ? groups : 1;
                const size_t group_stride = token_major ? 1 : n;
                kl::cuda::quantize_activations_fp8(reinterpret_cast<const kl::cuda::bf16*>(dx.ptr),
                                                   n, in, codes.ptr, scales.ptr, token_stride,
                                                   group_stride, nullptr);
                ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
                const std::vector<uint8_t> got_codes = codes.get();
                const std::vector<float> got_scales = scales.get();
                for (size_t t = 0; t < n; ++t) {
                    const kl::QuantizedTensor q =
                        kl::quantize(kl::WeightFormat::Fp8, x.data() + t * in, 1, int64_t(in));
                    ASSERT_EQ(0, std::memcmp(q.data.data(), got_codes.data() + t * in, in))
                        << "codes of row " << t << ", in " << in << ", n " << n;
                    for (size_t g = 0; g < groups; ++g) {
                        const float got = got_scales[t * token_stride + g * group_stride];
                        ASSERT_EQ(0, std::memcmp(&got, &q.scales[g], sizeof(float)))
                            << "scale of row " << t << " group " << g << ": " << got
                            << ", expected " << q.scales[g] << " (in " << in << ")";
                    }
                }
            }
        }
}

TEST_F(GpuQuantize, ActivationsFp8RejectWidthsNotAMultipleOf16) {
    Dev<uint16_t> dx(std::vector<uint16_t>(2 * 40, 0));
    Dev<uint8_t> codes(2 * 40);
    Dev<float> scales(2);
    try {
        kl::cuda::quantize_activations_fp8(reinterpret_cast<const kl::cuda::bf16*>(dx.ptr), 2, 40,
                                           codes.ptr, scales.ptr, 1, 2, nullptr);
        ADD_FAILURE() << "in = 40 was accepted";
    } catch (const kl::Error& e) {
        EXPECT_EQ(e.status(), kl::Status::InvalidArgument) << e.what();
    }
}

TEST_F(GpuQuantize, DequantizeBf16IsACopy) {
    for (size_t rows : {1, 3, 130}) {
        for (size_t cols : {5, 8, 2304}) {
            std::vector<float> values = randn(rows * cols, static_cast<uint32_t>(rows + cols));
            const std::vector<uint16_t> bf = to_bf16(values);
            Dev<uint16_t> in(bf);
            Dev<uint16_t> out(bf.size());
            const QMatrix w{WeightCode::Bf16, in.ptr, nullptr};
            kl::cuda::dequantize_to_bf16(w, rows, cols, reinterpret_cast<kl::cuda::bf16*>(out.ptr),
                                         nullptr);
            ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
            EXPECT_EQ(out.get(), bf) << "rows " << rows << " cols " << cols;
        }
    }
}

}  // namespace
