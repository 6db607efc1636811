// Quantizing and dequantizing one matrix (core/quantize.h): the block and group scales, the
// compressed-tensors packing order, and dequantize's values.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/e4m3.h"
#include "core/quantize.h"
#include "core/safetensors.h"

namespace {

using kl::WeightFormat;

std::vector<float> ramp(int64_t rows, int64_t cols) {
    std::vector<float> v(static_cast<size_t>(rows * cols));
    for (size_t i = 0; i < v.size(); ++i)
        v[i] = std::sin(0.37f * static_cast<float>(i)) * (1.0f + static_cast<float>(i % 300) / 7);
    return v;
}

TEST(Quantize, Fp8ScalesAreBlockAmaxOver448AndDequantizeIsCodeTimesScale) {
    const int64_t rows = 130, cols = 260;  // ragged last blocks in both directions
    const std::vector<float> x = ramp(rows, cols);
    const kl::QuantizedTensor q = kl::quantize(WeightFormat::Fp8, x.data(), rows, cols);
    ASSERT_EQ(q.scale_rows(), 2);
    ASSERT_EQ(q.scale_cols(), 3);
    ASSERT_EQ(q.scales.size(), 6u);
    ASSERT_EQ(q.data.size(), static_cast<size_t>(rows * cols));
    std::vector<float> amax(6, 0.0f);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
            float& a = amax[static_cast<size_t>((r / 128) * 3 + c / 128)];
            a = std::max(a, std::fabs(x[static_cast<size_t>(r * cols + c)]));
        }
    for (size_t b = 0; b < 6; ++b) EXPECT_EQ(q.scales[b], amax[b] / 448.0f) << "block " << b;

    std::vector<float> y(x.size());
    kl::dequantize(q, y.data());
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
            const size_t i = static_cast<size_t>(r * cols + c);
            const float scale = q.scales[static_cast<size_t>((r / 128) * 3 + c / 128)];
            ASSERT_EQ(y[i], kl::e4m3_to_f32(q.data[i]) * scale);
            // e4m3 keeps 3 mantissa bits: within 1/16 relative, or a subnormal step.
            ASSERT_LE(std::fabs(y[i] - x[i]), std::fabs(x[i]) / 16 * 1.001f + scale / 512) << i;
        }
}

TEST(Quantize, Int4PacksEightValuesPerWordLowNibbleFirstOffsetByEight) {
    // amax 7.5 gives the scale 1 (7.5 / 7.5): q = round(x), -7.5 rounding to even -8.
    std::vector<float> row = {-7.5f, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 3};
    const kl::QuantizedTensor q = kl::quantize(WeightFormat::Int4, row.data(), 1, 17);
    ASSERT_EQ(q.scales, std::vector<float>{1.0f});
    ASSERT_EQ(q.data.size(), 3u * 4u);  // ceil(17 / 8) words
    uint32_t words[3];
    std::memcpy(words, q.data.data(), sizeof(words));
    EXPECT_EQ(words[0], 0x76543210u);  // q = -8..-1 stored as 0..7
    EXPECT_EQ(words[1], 0xfedcba98u);  // q = 0..7 stored as 8..15
    EXPECT_EQ(words[2], 0x0000000bu);  // q = 3, then zero padding
    std::vector<float> back(17);
    kl::dequantize(q, back.data());
    EXPECT_EQ(back[0], -8.0f);
    for (size_t i = 1; i < 17; ++i) EXPECT_EQ(back[i], row[i]);
}

TEST(Quantize, Int4ScalesAreBf16OfGroupAmaxOverSevenAndAHalf) {
    const int64_t rows = 3, cols = 300;  // groups of 128, the last one of 44
    const std::vector<float> x = ramp(rows, cols);
    const kl::QuantizedTensor q = kl::quantize(WeightFormat::Int4, x.data(), rows, cols);
    ASSERT_EQ(q.scale_rows(), 3);
    ASSERT_EQ(q.scale_cols(), 3);
    std::vector<float> y(x.size());
    kl::dequantize(q, y.data());
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t g = 0; g < 3; ++g) {
            float amax = 0;
            for (int64_t c = g * 128; c < std::min<int64_t>(cols, g * 128 + 128); ++c)
                amax = std::max(amax, std::fabs(x[static_cast<size_t>(r * cols + c)]));
            const float scale = q.scales[static_cast<size_t>(r * 3 + g)];
            EXPECT_EQ(scale, kl::bf16_to_f32(kl::f32_to_bf16(amax / 7.5f)));
            for (int64_t c = g * 128; c < std::min<int64_t>(cols, g * 128 + 128); ++c) {
                const size_t i = static_cast<size_t>(r * cols + c);
                const float level = y[i] / scale;
                ASSERT_EQ(level, std::nearbyint(level));  // an integer multiple of the scale
                ASSERT_GE(level, -8.0f);
                ASSERT_LE(level, 7.0f);
                // Half a step, plus what the bf16 rounding of the scale moves the group's
                // largest value (clamped at 7 when the scale rounded down): 7.5 * 2^-8 steps.
                ASSERT_LE(std::fabs(y[i] - x[i]), scale * (0.5f + 7.5f / 256) * 1.001f) << i;
            }
        }
}

TEST(Quantize, AllZeroBlocksGiveZeros) {
    const std::vector<float> zeros(256 * 3, 0.0f);
    for (WeightFormat f : {WeightFormat::Fp8, WeightFormat::Int4}) {
        const kl::QuantizedTensor q = kl::quantize(f, zeros.data(), 3, 256);
        std::vector<float> y(zeros.size(), 1.0f);
        kl::dequantize(q, y.data());
        EXPECT_EQ(y, zeros);
        for (float s : q.scales) EXPECT_TRUE(std::isfinite(s) && s > 0);
    }
}

// Weights a checkpoint may hold but no model should (found by fuzz_model_folder: a NaN cast to
// int): quantizing them is defined. INT4: a NaN weight, and every weight of a group with an
// infinite one (its scale is infinite), quantize to level 0; the other groups as usual.
TEST(Quantize, NanAndInfiniteWeightsQuantizeWithoutUndefinedCasts) {
    std::vector<float> x(3 * 128, 0.5f);
    x[5] = std::nanf("");
    x[128 + 7] = INFINITY;
    x[256 + 9] = -INFINITY;
    const kl::QuantizedTensor q = kl::quantize(WeightFormat::Int4, x.data(), 3, 128);
    std::vector<float> y(x.size());
    kl::dequantize(q, y.data());
    EXPECT_EQ(y[5], 0.0f);
    // The NaN adds nothing to its group's amax: its other weights are those of a clean row.
    const std::vector<float> clean(128, 0.5f);
    std::vector<float> want(128);
    kl::dequantize(kl::quantize(WeightFormat::Int4, clean.data(), 1, 128), want.data());
    EXPECT_EQ(y[4], want[4]);
    for (size_t i = 128; i < x.size(); ++i) EXPECT_TRUE(std::isnan(y[i]) || y[i] == 0.0f) << i;
    const kl::QuantizedTensor f = kl::quantize(WeightFormat::Fp8, x.data(), 3, 128);
    kl::dequantize(f, y.data());  // defined; its NaN codes dequantize to NaN
    EXPECT_TRUE(std::isnan(y[5]));
}

TEST(Quantize, QuantizedBytesAreTheDataAndTheFp32ScalesOfTheTensor) {
    const int64_t rows = 130, cols = 260;  // ragged: 2 x 3 FP8 blocks, 33 words and 3 groups a row
    EXPECT_EQ(kl::quantized_bytes(WeightFormat::Fp8, rows, cols), 130u * 260u + 2u * 3u * 4u);
    EXPECT_EQ(kl::quantized_bytes(WeightFormat::Int4, rows, cols),
              130u * 33u * 4u + 130u * 3u * 4u);
    // What quantize() makes is that size.
    const std::vector<float> x = ramp(rows, cols);
    for (WeightFormat f : {WeightFormat::Fp8, WeightFormat::Int4}) {
        const kl::QuantizedTensor q = kl::quantize(f, x.data(), rows, cols);
        EXPECT_EQ(kl::quantized_bytes(f, rows, cols), q.data.size() + q.scales.size() * 4)
            << kl::weight_format_name(f);
    }
}

}  // namespace
