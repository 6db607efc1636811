// The FP8 E4M3 codec (core/e4m3.h) over all 256 codes and the rounding rules.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/e4m3.h"

namespace {

TEST(E4m3, KnownCodesDecode) {
    EXPECT_EQ(kl::e4m3_to_f32(0x00), 0.0f);
    EXPECT_TRUE(std::signbit(kl::e4m3_to_f32(0x80)));
    EXPECT_EQ(kl::e4m3_to_f32(0x38), 1.0f);  // exponent 7 = bias
    EXPECT_EQ(kl::e4m3_to_f32(0xb8), -1.0f);
    EXPECT_EQ(kl::e4m3_to_f32(0x7e), 448.0f);        // the largest finite
    EXPECT_EQ(kl::e4m3_to_f32(0x08), 0.015625f);     // the smallest normal, 2^-6
    EXPECT_EQ(kl::e4m3_to_f32(0x01), 0.001953125f);  // the smallest subnormal, 2^-9
    EXPECT_EQ(kl::e4m3_to_f32(0x07), 7 * 0.001953125f);
    EXPECT_EQ(kl::e4m3_to_f32(0x3c), 1.5f);
    EXPECT_EQ(kl::e4m3_to_f32(0x77), 240.0f);  // exponent 14, mantissa 7: 1.875 * 128
    EXPECT_TRUE(std::isnan(kl::e4m3_to_f32(0x7f)));
    EXPECT_TRUE(std::isnan(kl::e4m3_to_f32(0xff)));
}

TEST(E4m3, EveryCodeRoundTripsAndPositiveCodesIncrease) {
    for (int code = 0; code < 256; ++code) {
        if ((code & 0x7f) == 0x7f) continue;  // NaN
        const float value = kl::e4m3_to_f32(static_cast<uint8_t>(code));
        EXPECT_EQ(kl::f32_to_e4m3(value), code) << "code " << code << " value " << value;
        // The negative code is the positive one with the sign bit.
        if (code < 0x80) {
            EXPECT_EQ(kl::e4m3_to_f32(static_cast<uint8_t>(code | 0x80)), -value);
        }
    }
    for (int code = 1; code <= 0x7e; ++code)
        EXPECT_LT(kl::e4m3_to_f32(static_cast<uint8_t>(code - 1)),
                  kl::e4m3_to_f32(static_cast<uint8_t>(code)));
}

TEST(E4m3, HalfwayRoundsToEvenAndOtherValuesToNearest) {
    for (int code = 0; code < 0x7e; ++code) {
        const float lo = kl::e4m3_to_f32(static_cast<uint8_t>(code));
        const float hi = kl::e4m3_to_f32(static_cast<uint8_t>(code + 1));
        const float mid = (lo + hi) / 2;  // exact: both have few significant bits
        const int even = code % 2 == 0 ? code : code + 1;
        EXPECT_EQ(kl::f32_to_e4m3(mid), even) << "between codes " << code << " and " << code + 1;
        EXPECT_EQ(kl::f32_to_e4m3(-mid), even | 0x80);
        EXPECT_EQ(kl::f32_to_e4m3(std::nextafter(mid, 0.0f)), code);
        EXPECT_EQ(kl::f32_to_e4m3(std::nextafter(mid, 1000.0f)), code + 1);
    }
}

TEST(E4m3, SaturatesAtTheLargestFiniteAndKeepsNan) {
    const float inf = std::numeric_limits<float>::infinity();
    for (float big : {448.0f, 449.0f, 464.0f, 480.0f, 1e9f, inf}) {
        EXPECT_EQ(kl::f32_to_e4m3(big), 0x7e) << big;
        EXPECT_EQ(kl::f32_to_e4m3(-big), 0xfe) << big;
    }
    EXPECT_EQ(kl::f32_to_e4m3(std::numeric_limits<float>::quiet_NaN()), 0x7f);
    EXPECT_EQ(kl::f32_to_e4m3(1e-30f), 0x00);  // far below the smallest subnormal
    EXPECT_EQ(kl::f32_to_e4m3(-1e-30f), 0x80);
    EXPECT_EQ(kl::f32_to_e4m3(std::ldexp(1.0f, -10)), 0x00);  // half the smallest: to even
}

}  // namespace
