// FP8 E4M3 ("e4m3fn" of the OCP 8-bit floating point spec, the float8_e4m3fn of PyTorch and
// safetensors' F8_E4M3): 1 sign, 4 exponent bits (bias 7), 3 mantissa bits, subnormals, no
// infinities; S.1111.111 is NaN, so the largest finite value is 448 (S.1111.110).
#pragma once

#include <cstdint>

namespace kl {

constexpr float kE4m3Max = 448.0f;

// The value of a code (NaN for 0x7f and 0xff).
float e4m3_to_f32(uint8_t code);

// The nearest code, ties to the even code (as a hardware cvt.rn.satfinite does). Values
// beyond ±448, infinities included, saturate to ±448; NaN gives 0x7f. -0 keeps its sign.
uint8_t f32_to_e4m3(float value);

}  // namespace kl
