// A linear layer's weight [rows = out, cols = in] in a quantized format, and the one
// definition of quantizing and dequantizing it. The CPU backend runs dequantize()'s fp32
// values; a GPU kernel that reads the quantized form must compute the same
// dequantized values (docs/design/model.md, "Quantized weights").
#pragma once

#include <cstdint>
#include <vector>

#include "quant_config.h"

namespace kl {

struct QuantizedTensor {
    WeightFormat format = WeightFormat::Plain;  // Fp8 or Int4
    int64_t rows = 0, cols = 0;
    // Fp8: rows * cols E4M3 codes, row-major.
    // Int4: rows * int4_words(cols) little-endian 32-bit words (compressed-tensors
    // pack_to_int32): value j of a row is nibble j % 8 (bits 4*(j%8)..) of word j / 8, held
    // as q + 8 for q in [-8, 7]; the padding nibbles of a row's last word are 0.
    std::vector<uint8_t> data;
    // fp32 scales, row-major [scale_rows(), scale_cols()].
    // Fp8: one per 128 x 128 block, value = e4m3(code) * scale (weight_scale_inv).
    // Int4: one per row and 128 columns, value = q * scale (weight_scale; bf16 values when
    // quantize() made them).
    std::vector<float> scales;

    int64_t scale_rows() const;
    int64_t scale_cols() const;
};

int64_t int4_words(int64_t cols);  // ceil(cols / 8)

// The bytes of a QuantizedTensor of `format` (Fp8 or Int4) and shape [rows, cols]: its data
// and its fp32 scales, what a backend that holds it as it loads reads of it.
uint64_t quantized_bytes(WeightFormat format, int64_t rows, int64_t cols);

// Round to nearest (ties to even). Fp8: per block scale = amax / 448 (1 for an all-zero
// block), codes saturate at ±448. Int4: symmetric, per group scale = bf16(amax / 7.5)
// (compressed-tensors' symmetric range [-8, 7]; 1 for an all-zero group), q =
// clamp(round(x / scale), -8, 7). `values` holds rows * cols fp32 values.
QuantizedTensor quantize(WeightFormat format, const float* values, int64_t rows, int64_t cols);

// out[rows * cols] = the values the quantized tensor stands for.
void dequantize(const QuantizedTensor& q, float* out);

}  // namespace kl
