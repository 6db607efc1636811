#include "e4m3.h"

#include <cmath>
#include <limits>

namespace kl {

float e4m3_to_f32(uint8_t code) {
    const float sign = (code & 0x80) ? -1.0f : 1.0f;
    const int exponent = (code >> 3) & 0xf;
    const int mantissa = code & 0x7;
    if (exponent == 0xf && mantissa == 0x7) return std::numeric_limits<float>::quiet_NaN();
    if (exponent == 0) return sign * std::ldexp(static_cast<float>(mantissa), -9);  // m/8 * 2^-6
    return sign * std::ldexp(static_cast<float>(8 + mantissa), exponent - 7 - 3);
}

uint8_t f32_to_e4m3(float value) {
    if (std::isnan(value)) return 0x7f;
    const uint8_t sign = std::signbit(value) ? 0x80 : 0x00;
    const float a = std::fabs(value);
    if (a >= kE4m3Max) return sign | 0x7e;
    // Every step below scales by a power of two, so it is exact in fp32, and nearbyint
    // rounds to nearest even in the default rounding mode.
    if (a < std::ldexp(1.0f, -6)) {  // subnormal range: units of 2^-9; 8 units is the
        // smallest normal, whose code is 0x08 too
        return sign | static_cast<uint8_t>(std::nearbyint(std::ldexp(a, 9)));
    }
    int e2 = 0;
    const float fraction = std::frexp(a, &e2);  // a = fraction * 2^e2, fraction in [0.5, 1)
    const int exponent = e2 - 1 + 7;            // biased exponent of a = 1.m * 2^(e2-1)
    int mantissa = static_cast<int>(std::nearbyint((fraction * 2.0f - 1.0f) * 8.0f));
    int biased = exponent;
    if (mantissa == 8) mantissa = 0, ++biased;  // rounded up into the next binade
    // a < 448 rounds to at most 448 (biased 15, mantissa 6), never onto the NaN code.
    return sign | static_cast<uint8_t>(biased << 3 | mantissa);
}

}  // namespace kl
