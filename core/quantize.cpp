#include "quantize.h"

#include <algorithm>
#include <cmath>

#include "e4m3.h"
#include "error.h"
#include "safetensors.h"

namespace kl {
namespace {

int64_t ceil_div(int64_t a, int64_t b) {
    return (a + b - 1) / b;
}

// The largest |value| of rows [r0, r1) and columns [c0, c1).
float block_amax(const float* values, int64_t cols, int64_t r0, int64_t r1, int64_t c0,
                 int64_t c1) {
    float amax = 0.0f;
    for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(values[r * cols + c]));
    return amax;
}

// Bytes of q's data: one per FP8 code, 4 per INT4 word.
int64_t data_bytes(const QuantizedTensor& q) {
    return q.format == WeightFormat::Fp8 ? q.rows * q.cols : q.rows * int4_words(q.cols) * 4;
}

void quantize_fp8(const float* values, QuantizedTensor& q) {
    q.data.resize(static_cast<size_t>(data_bytes(q)));
    for (int64_t br = 0; br < q.scale_rows(); ++br) {
        const int64_t r0 = br * kFp8BlockSize, r1 = std::min(q.rows, r0 + kFp8BlockSize);
        for (int64_t bc = 0; bc < q.scale_cols(); ++bc) {
            const int64_t c0 = bc * kFp8BlockSize, c1 = std::min(q.cols, c0 + kFp8BlockSize);
            const float amax = block_amax(values, q.cols, r0, r1, c0, c1);
            const float scale = amax > 0.0f ? amax / kE4m3Max : 1.0f;
            q.scales[static_cast<size_t>(br * q.scale_cols() + bc)] = scale;
            for (int64_t r = r0; r < r1; ++r)
                for (int64_t c = c0; c < c1; ++c)
                    q.data[static_cast<size_t>(r * q.cols + c)] =
                        f32_to_e4m3(values[r * q.cols + c] / scale);
        }
    }
}

void quantize_int4(const float* values, QuantizedTensor& q) {
    const int64_t words = int4_words(q.cols);
    q.data.assign(static_cast<size_t>(data_bytes(q)), 0);
    for (int64_t r = 0; r < q.rows; ++r) {
        for (int64_t g = 0; g < q.scale_cols(); ++g) {
            const int64_t c0 = g * kInt4GroupSize, c1 = std::min(q.cols, c0 + kInt4GroupSize);
            const float amax = block_amax(values, q.cols, r, r + 1, c0, c1);
            // The scale is stored as bf16 (the model's dtype), so quantize with that value.
            float scale = bf16_to_f32(f32_to_bf16(amax / 7.5f));
            if (!(scale > 0.0f)) scale = 1.0f;  // all zero (or amax / 7.5 below bf16's range)
            q.scales[static_cast<size_t>(r * q.scale_cols() + g)] = scale;
            for (int64_t c = c0; c < c1; ++c) {
                const float level = std::nearbyint(values[r * q.cols + c] / scale);
                // A NaN level (a NaN weight, or an infinite one over its infinite scale) is 0,
                // as the device's float-to-int conversion makes it: casting NaN is undefined.
                const int value =
                    (std::isnan(level) ? 0 : static_cast<int>(std::clamp(level, -8.0f, 7.0f))) + 8;
                const size_t byte = static_cast<size_t>((r * words + c / 8) * 4 + (c % 8) / 2);
                q.data[byte] |= static_cast<uint8_t>(value << (4 * (c % 2)));
            }
        }
    }
}

}  // namespace

int64_t int4_words(int64_t cols) {
    return ceil_div(cols, 8);
}

int64_t QuantizedTensor::scale_rows() const {
    return format == WeightFormat::Fp8 ? ceil_div(rows, kFp8BlockSize) : rows;
}

int64_t QuantizedTensor::scale_cols() const {
    return ceil_div(cols, format == WeightFormat::Fp8 ? kFp8BlockSize : kInt4GroupSize);
}

uint64_t quantized_bytes(WeightFormat format, int64_t rows, int64_t cols) {
    QuantizedTensor shape_only;
    shape_only.format = format;
    shape_only.rows = rows;
    shape_only.cols = cols;
    return static_cast<uint64_t>(data_bytes(shape_only)) +
           static_cast<uint64_t>(shape_only.scale_rows() * shape_only.scale_cols()) * sizeof(float);
}

QuantizedTensor quantize(WeightFormat format, const float* values, int64_t rows, int64_t cols) {
    if (format == WeightFormat::Plain || rows < 0 || cols < 0)
        fail(Status::Internal, "quantize: a format and a shape are needed");
    QuantizedTensor q;
    q.format = format;
    q.rows = rows;
    q.cols = cols;
    q.scales.resize(static_cast<size_t>(q.scale_rows() * q.scale_cols()));
    if (format == WeightFormat::Fp8)
        quantize_fp8(values, q);
    else
        quantize_int4(values, q);
    return q;
}

void dequantize(const QuantizedTensor& q, float* out) {
    const int64_t words = int4_words(q.cols);
    for (int64_t r = 0; r < q.rows; ++r) {
        for (int64_t c = 0; c < q.cols; ++c) {
            float value, scale;
            if (q.format == WeightFormat::Fp8) {
                value = e4m3_to_f32(q.data[static_cast<size_t>(r * q.cols + c)]);
                scale = q.scales[static_cast<size_t>((r / kFp8BlockSize) * q.scale_cols() +
                                                     c / kFp8BlockSize)];
            } else {
                const uint8_t byte =
                    q.data[static_cast<size_t>((r * words + c / 8) * 4 + (c % 8) / 2)];
                value = static_cast<float>(((byte >> (4 * (c % 2))) & 0xf) - 8);
                scale = q.scales[static_cast<size_t>(r * q.scale_cols() + c / kInt4GroupSize)];
            }
            out[r * q.cols + c] = value * scale;
        }
    }
}

}  // namespace kl
