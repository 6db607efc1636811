// The safetensors reader and writer: round trips of every dtype, the half-precision
// conversions, and a Format error (never a crash) for every kind of damaged file.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <future>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "core/safetensors.h"
#include "expect_error.h"
#include "tiny_model.h"

namespace {

using kl::DType;
using kl::Status;
using kl::test::expect_error;

float bits_to_float(uint32_t bits) {
    float f;
    std::memcpy(&f, &bits, sizeof(f));
    return f;
}

uint32_t float_to_bits(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof(bits));
    return bits;
}

std::vector<float> normal_values(size_t n, uint32_t seed, float scale) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = normal(rng);
    return v;
}

TEST(Safetensors, RoundTripsEveryDtype) {
    const std::string path = kl::test::temp_dir() + "/t.safetensors";
    const std::vector<kl::TensorToWrite> tensors = {
        {"f32", DType::F32, {3, 5}, normal_values(15, 1, 3.0f)},
        {"bf16", DType::BF16, {2, 2, 7}, normal_values(28, 2, 3.0f)},
        {"f16", DType::F16, {33}, normal_values(33, 3, 3.0f)},
        {"scalar", DType::F32, {}, {42.0f}},
        {"empty", DType::BF16, {0, 4}, {}},
    };
    kl::write_safetensors(path, tensors);
    kl::MappedFile file(path);
    const std::vector<kl::TensorView> views = kl::parse_safetensors(file);
    ASSERT_EQ(views.size(), tensors.size());
    for (const auto& t : tensors) {
        SCOPED_TRACE(t.name);
        auto v = std::find_if(views.begin(), views.end(),
                              [&](const kl::TensorView& x) { return x.name == t.name; });
        ASSERT_NE(v, views.end());
        EXPECT_EQ(v->dtype, t.dtype);
        EXPECT_EQ(v->shape, t.shape);
        EXPECT_EQ(v->file, path);
        EXPECT_EQ(v->nbytes, t.values.size() * kl::dtype_size(t.dtype));
        EXPECT_EQ(static_cast<size_t>(v->numel()), t.values.size());
        std::vector<float> back(t.values.size());
        v->to_f32(back.data());
        for (size_t i = 0; i < back.size(); ++i) {
            // Exactly the rounded value; within half an ulp of the 8 (bf16) or 11 (f16) bits.
            const float expected = t.dtype == DType::F32 ? t.values[i]
                                   : t.dtype == DType::BF16
                                       ? kl::bf16_to_f32(kl::f32_to_bf16(t.values[i]))
                                       : kl::f16_to_f32(kl::f32_to_f16(t.values[i]));
            EXPECT_EQ(back[i], expected) << i;
            const float rel = t.dtype == DType::F32    ? 0.0f
                              : t.dtype == DType::BF16 ? 0x1p-8f
                                                       : 0x1p-11f;
            EXPECT_LE(std::fabs(back[i] - t.values[i]), rel * std::fabs(t.values[i])) << i;
        }
    }
}

TEST(Safetensors, WrittenHeaderIsSpacePaddedJsonInFileOrder) {
    const std::string path = kl::test::temp_dir() + "/h.safetensors";
    kl::write_safetensors(path, {{"b", DType::F16, {3}, {1, 2, 3}}, {"a", DType::F32, {1}, {4}}});
    const std::string bytes = kl::test::read_file(path);
    uint64_t header_len = 0;
    std::memcpy(&header_len, bytes.data(), 8);
    EXPECT_EQ(header_len % 8, 0u);
    EXPECT_EQ(bytes.size(), 8 + header_len + 3 * 2 + 4);
    const std::string header = bytes.substr(8, header_len);
    const size_t json_end = header.find_last_not_of(' ');
    EXPECT_GE(json_end + 8, header.size()) << "more padding than needed";
    const auto j = nlohmann::json::parse(header);
    EXPECT_EQ(j["b"]["dtype"], "F16");
    EXPECT_EQ(j["b"]["shape"], nlohmann::json::array({3}));
    EXPECT_EQ(j["b"]["data_offsets"], nlohmann::json::array({0, 6}));
    EXPECT_EQ(j["a"]["dtype"], "F32");
    EXPECT_EQ(j["a"]["data_offsets"], nlohmann::json::array({6, 10}));
}

TEST(Safetensors, WriterRejectsAValueCountThatIsNotTheShape) {
    const std::string path = kl::test::temp_dir() + "/w.safetensors";
    expect_error(
        [&] {
            kl::write_safetensors(path, {{"t", DType::F32, {2, 3}, {1, 2, 3}}});
        },
        Status::InvalidArgument, {"tensor t", "[2,3]"});
}

// SafetensorsWriter, a tensor at a time: values past one conversion chunk (65536) arrive
// whole, a tensor out of the header's order and an unfinished file are refused, and a
// negative dim is refused before the file is created.
TEST(Safetensors, WriterTakesTheHeadersTensorsInOrder) {
    const std::string path = kl::test::temp_dir() + "/w.safetensors";
    const std::vector<float> values = normal_values(65536 * 2 + 3, 4, 3.0f);
    {
        kl::SafetensorsWriter file(path,
                                   {{"big", DType::F32, {65536 * 2 + 3}}, {"i", DType::I32, {1}}});
        EXPECT_EQ(file.write({"big", DType::F32, {65536 * 2 + 3}, values}), values.size() * 4);
        expect_error([&] { file.finish(); }, Status::InvalidArgument, {"1 of the header's 2"});
        expect_error(
            [&] {
                file.write({"j", DType::I32, {1}, {}, {1, 0, 0, 0}});
            },
            Status::InvalidArgument, {"j (I32 [1])", "the header has i (I32 [1])"});
        EXPECT_EQ(file.write({"i", DType::I32, {1}, {}, {1, 0, 0, 0}}), 4u);
        file.finish();
    }
    kl::MappedFile mapped(path);
    const std::vector<kl::TensorView> views = kl::parse_safetensors(mapped);
    ASSERT_EQ(views.size(), 2u);
    const kl::TensorView& big = views[0].name == "big" ? views[0] : views[1];
    std::vector<float> read(values.size());
    big.to_f32(read.data());
    EXPECT_EQ(read, values);

    const std::string never = kl::test::temp_dir() + "/never.safetensors";
    expect_error(
        [&] {
            kl::SafetensorsWriter file(never, {{"t", DType::F32, {2, -1}}});
        },
        Status::InvalidArgument, {"tensor t", "negative"});
    EXPECT_FALSE(std::filesystem::exists(never));
}

// SafetensorsWriter from a mapped tensor (what the checkpoint writer does with a tensor it
// keeps): the file it writes is the same bytes, and a view that is not the next entry is
// refused as a TensorToWrite would be.
TEST(Safetensors, WriterTakesAMappedTensorAsItIs) {
    const std::string in = kl::test::temp_dir() + "/in.safetensors";
    kl::write_safetensors(in, {{"a", DType::BF16, {3, 2}, {1, 2, 3, 4, 5, 6}},
                               {"b", DType::I32, {1}, {}, {7, 0, 0, 0}}});
    kl::MappedFile mapped(in);
    std::vector<kl::TensorView> views = kl::parse_safetensors(mapped);
    std::sort(views.begin(), views.end(),
              [](const kl::TensorView& x, const kl::TensorView& y) { return x.name < y.name; });
    const std::string out = kl::test::temp_dir() + "/out.safetensors";
    {
        kl::SafetensorsWriter file(out, {{"a", DType::BF16, {3, 2}}, {"b", DType::I32, {1}}});
        expect_error([&] { file.write(views[1]); }, Status::InvalidArgument,
                     {"b (I32 [1])", "the header has a (BF16 [3,2])"});
        EXPECT_EQ(file.write(views[0]), 12u);
        EXPECT_EQ(file.write(views[1]), 4u);
        file.finish();
    }
    EXPECT_EQ(kl::test::read_file(out), kl::test::read_file(in));
}

TEST(Safetensors, Bf16RoundsToNearestEven) {
    EXPECT_EQ(kl::f32_to_bf16(1.0f), 0x3f80);
    EXPECT_EQ(kl::bf16_to_f32(0x3f80), 1.0f);
    EXPECT_EQ(kl::f32_to_bf16(1.00390625f), 0x3f80);  // 1 + 2^-8: a tie, goes to even 1.0
    EXPECT_EQ(kl::f32_to_bf16(1.01171875f), 0x3f82);  // tie above an odd one: up to even
    EXPECT_EQ(kl::f32_to_bf16(bits_to_float(0x3f808001)), 0x3f81);  // just above a tie: up
    EXPECT_EQ(kl::f32_to_bf16(bits_to_float(0x3f807fff)), 0x3f80);  // just below: down
    EXPECT_EQ(kl::f32_to_bf16(-2.0f), 0xc000);
    EXPECT_EQ(kl::f32_to_bf16(-0.0f), 0x8000);
    EXPECT_EQ(kl::f32_to_bf16(INFINITY), 0x7f80);
    EXPECT_EQ(kl::f32_to_bf16(-INFINITY), 0xff80);
    // The largest float rounds past the largest bf16, to infinity.
    EXPECT_EQ(kl::f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);
    EXPECT_EQ(kl::f32_to_bf16(std::numeric_limits<float>::denorm_min()), 0x0000);
    EXPECT_EQ(kl::f32_to_bf16(bits_to_float(0x00010000)), 0x0001);  // subnormals stay
    // A NaN whose payload sits only in the dropped low bits must stay a NaN, not become inf.
    EXPECT_TRUE(std::isnan(kl::bf16_to_f32(kl::f32_to_bf16(bits_to_float(0x7f800001)))));
    EXPECT_TRUE(std::isnan(kl::bf16_to_f32(kl::f32_to_bf16(NAN))));
    // Every bf16 survives bf16 -> f32 -> bf16 (NaNs as NaNs).
    for (uint32_t bits = 0; bits < 0x10000; ++bits) {
        const float f = kl::bf16_to_f32(static_cast<uint16_t>(bits));
        EXPECT_EQ(float_to_bits(f), bits << 16);
        if (std::isnan(f))
            ASSERT_TRUE(std::isnan(kl::bf16_to_f32(kl::f32_to_bf16(f)))) << bits;
        else
            ASSERT_EQ(kl::f32_to_bf16(f), bits) << bits;
    }
}

// The nearest f16 by brute force over all finite halves (ties to the even code).
uint16_t nearest_f16(float value, const std::vector<std::pair<double, uint16_t>>& halves) {
    const double x = std::fabs(static_cast<double>(value));
    const uint16_t sign = std::signbit(value) ? 0x8000 : 0;
    if (x >= 65520.0) return sign | 0x7c00;  // at or past the midpoint to 2^16: inf
    auto hi = std::lower_bound(halves.begin(), halves.end(), std::make_pair(x, uint16_t(0)));
    if (hi == halves.end()) return sign | 0x7bff;  // between 65504 and the midpoint
    if (hi->first == x) return sign | hi->second;
    auto lo = hi - 1;
    const double below = x - lo->first, above = hi->first - x;
    if (below < above) return sign | lo->second;
    if (above < below) return sign | hi->second;
    return sign | ((lo->second & 1) ? hi->second : lo->second);
}

TEST(Safetensors, F16MatchesBruteForceRoundingIncludingSubnormalsAndInfinity) {
    EXPECT_EQ(kl::f32_to_f16(1.0f), 0x3c00);
    EXPECT_EQ(kl::f32_to_f16(-2.0f), 0xc000);
    EXPECT_EQ(kl::f32_to_f16(-0.0f), 0x8000);
    EXPECT_EQ(kl::f32_to_f16(65504.0f), 0x7bff);
    EXPECT_EQ(kl::f32_to_f16(65519.0f), 0x7bff);
    EXPECT_EQ(kl::f32_to_f16(65520.0f), 0x7c00);  // the tie with 2^16 goes to "even" inf
    EXPECT_EQ(kl::f32_to_f16(1e6f), 0x7c00);
    EXPECT_EQ(kl::f32_to_f16(-INFINITY), 0xfc00);
    EXPECT_EQ(kl::f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
    EXPECT_EQ(kl::f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // half of it: tie to even 0
    EXPECT_EQ(kl::f32_to_f16(std::ldexp(1.5f, -25)), 0x0001);
    EXPECT_EQ(kl::f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);     // 1.5 units: tie to even 2
    EXPECT_EQ(kl::f32_to_f16(std::ldexp(1.0f, -14)), 0x0400);     // smallest normal
    EXPECT_EQ(kl::f32_to_f16(std::ldexp(1023.5f, -24)), 0x0400);  // rounds up into normals
    EXPECT_EQ(kl::f16_to_f32(0x7c00), INFINITY);
    EXPECT_EQ(kl::f16_to_f32(0xfc00), -INFINITY);
    EXPECT_TRUE(std::isnan(kl::f16_to_f32(0x7e00)));
    EXPECT_TRUE(std::isnan(kl::f16_to_f32(0x7c01)));
    EXPECT_TRUE(std::isnan(kl::f16_to_f32(kl::f32_to_f16(NAN))));
    EXPECT_EQ(kl::f16_to_f32(0x3555), 0.333251953125f);

    // Every finite half: its value by definition, and f16 -> f32 -> f16 is the identity.
    std::vector<std::pair<double, uint16_t>> halves;
    for (uint32_t bits = 0; bits < 0x10000; ++bits) {
        const uint32_t exponent = (bits >> 10) & 0x1f, mantissa = bits & 0x3ff;
        if (exponent == 0x1f) continue;
        const double magnitude = exponent == 0
                                     ? std::ldexp(double(mantissa), -24)
                                     : std::ldexp(double(1024 + mantissa), int(exponent) - 25);
        const double value = (bits & 0x8000) ? -magnitude : magnitude;
        ASSERT_EQ(static_cast<double>(kl::f16_to_f32(uint16_t(bits))), value) << bits;
        ASSERT_EQ(kl::f32_to_f16(kl::f16_to_f32(uint16_t(bits))), bits) << bits;
        if (!(bits & 0x8000)) halves.emplace_back(magnitude, uint16_t(bits));
    }
    std::sort(halves.begin(), halves.end());

    // Random floats across the whole f16 range and beyond, and exact midpoints.
    std::mt19937 rng(7);
    for (int i = 0; i < 200000; ++i) {
        const uint32_t exponent = 100 + rng() % 45;  // 2^-27 .. 2^17
        const float f =
            bits_to_float((rng() & 0x80000000u) | (exponent << 23) | (rng() & 0x7fffff));
        ASSERT_EQ(kl::f32_to_f16(f), nearest_f16(f, halves)) << f;
    }
    for (size_t i = 1; i < halves.size(); ++i) {
        const float mid = static_cast<float>((halves[i - 1].first + halves[i].first) / 2);
        ASSERT_EQ(kl::f32_to_f16(mid), nearest_f16(mid, halves)) << mid;
    }
}

// A small valid file as bytes, for damaging.
std::string small_file() {
    const std::string path = kl::test::temp_dir() + "/s.safetensors";
    kl::write_safetensors(
        path, {{"x", DType::F32, {2, 2}, {1, 2, 3, 4}}, {"y", DType::BF16, {3}, {1, 2, 3}}});
    return kl::test::read_file(path);
}

// Parses `bytes` from a file; returns the kl::Error status, or Ok.
Status parse_status(const std::string& bytes, std::string* message = nullptr) {
    static const std::string path = kl::test::temp_dir() + "/c.safetensors";
    kl::test::write_file(path, bytes);
    try {
        kl::MappedFile file(path);
        kl::parse_safetensors(file);
        return Status::Ok;
    } catch (const kl::Error& e) {
        if (message) *message = e.what();
        return e.status();
    }
}

std::string with_header(const std::string& header, const std::string& data) {
    std::string out(8, '\0');
    const uint64_t n = header.size();
    std::memcpy(&out[0], &n, 8);
    return out + header + data;
}

TEST(Safetensors, EveryTruncationIsAnErrorNamingTheFile) {
    const std::string bytes = small_file();
    ASSERT_EQ(parse_status(bytes), Status::Ok);
    for (size_t n = 0; n < bytes.size(); ++n) {
        std::string message;
        const Status status = parse_status(bytes.substr(0, n), &message);
        EXPECT_TRUE(status == Status::Format || status == Status::Io) << "length " << n;
        EXPECT_NE(message.find("c.safetensors"), std::string::npos) << message;
    }
}

TEST(Safetensors, DamagedHeadersAreFormatErrorsWithAReason) {
    const std::string data(16, '\0');
    std::string huge(8, '\0');
    const uint64_t big = kl::kMaxSafetensorsHeaderBytes + 8;
    std::memcpy(&huge[0], &big, 8);
    std::string past_end(8, '\0');
    const uint64_t past = 64;
    std::memcpy(&past_end[0], &past, 8);
    const std::vector<std::pair<std::string, std::string>> cases = {
        {huge + "{}", "exceeds the limit"},
        {past_end + "{}", "truncated"},
        {with_header(R"({"x": {"dtype": "F32", "shape": [2)", data), "not valid JSON"},
        {with_header("\x01\x02garbage", data), "not valid JSON"},
        {with_header("[1, 2]", data), "not a JSON object"},
        {with_header(R"({"x": 5})", data), "tensor x: entry is not an object"},
        {with_header(R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 24]}})", data),
         "tensor x: data_offsets [0, 24] lie outside the 16-byte data region"},
        {with_header(R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", data),
         "outside"},
        {with_header(R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}})", data),
         "non-negative"},
        {with_header(R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", data),
         "[begin, end]"},
        {with_header(R"({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", data),
         "tensor x: holds 8 bytes, but F32 [3] needs 12"},
        {with_header(
             R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "y": {"dtype": "BF16", "shape": [2], "data_offsets": [6, 10]}})",
             data),
         "overlap"},
        {with_header(R"({"x": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", data),
         "non-negative"},
        {with_header(R"({"x": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})", data),
         "non-negative integers"},
        {with_header(
             R"({"x": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})",
             data),
         "overflows"},
        {with_header(
             R"({"x": {"dtype": "F32", "shape": [0, 18446744073709551615], "data_offsets": [0, 0]}})",
             data),
         "overflows"},
        {with_header(R"({"x": {"shape": [2], "data_offsets": [0, 8]}})", data), "missing dtype"},
        {with_header(R"({"x": {"dtype": "F32", "data_offsets": [0, 8]}})", data), "missing shape"},
    };
    for (const auto& [bytes, fragment] : cases) {
        std::string message;
        EXPECT_EQ(parse_status(bytes, &message), Status::Format) << fragment;
        EXPECT_NE(message.find(fragment), std::string::npos) << message;
        EXPECT_NE(message.find("c.safetensors"), std::string::npos) << message;
    }
}

TEST(Safetensors, OtherDtypesAreRejectedNamingTensorAndDtype) {
    // F8_E4M3, I32 and I64 hold quantized weights (test_quantized_checkpoint.cpp).
    for (const char* dtype : {"I8", "F64", "U8", "F8_E5M2", "BOOL"}) {
        const std::string header = std::string(R"({"w.weight": {"dtype": ")") + dtype +
                                   R"(", "shape": [2], "data_offsets": [0, 2]}})";
        std::string message;
        // Format, not Unsupported: a checkpoint in another dtype is not one this runtime reads.
        EXPECT_EQ(parse_status(with_header(header, std::string(16, '\0')), &message),
                  Status::Format);
        EXPECT_NE(message.find("tensor w.weight"), std::string::npos) << message;
        EXPECT_NE(message.find(std::string("dtype ") + dtype), std::string::npos) << message;
    }
}

TEST(Safetensors, MetadataIsSkippedAndTouchingTensorsAreFine) {
    const std::string header =
        R"({"__metadata__": {"format": "pt"}, "a": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}, "b": {"dtype": "F32", "shape": [1, 3], "data_offsets": [4, 16]}})";
    std::string data(16, '\0');
    const float one = 1.0f;
    std::memcpy(&data[4], &one, 4);
    const std::string path = kl::test::temp_dir() + "/m.safetensors";
    kl::test::write_file(path, with_header(header, data));
    kl::MappedFile file(path);
    const auto views = kl::parse_safetensors(file);
    ASSERT_EQ(views.size(), 2u);
    const kl::TensorView& b = views[0].name == "b" ? views[0] : views[1];
    EXPECT_EQ(b.shape, (std::vector<int64_t>{1, 3}));
    float values[3];
    b.to_f32(values);
    EXPECT_EQ(values[0], 1.0f);
    EXPECT_EQ(values[1], 0.0f);
}

TEST(Safetensors, TensorsMustTileTheDataRegionExactly) {
    // The format's rule: no gap before, between or after the tensors. A header length a
    // byte or two short kept valid JSON (its trailing spaces cut off) and shifted every
    // tensor: the file loaded and its values were garbage.
    const std::string x = R"("x": {"dtype": "F32", "shape": [2], "data_offsets": )";
    const std::vector<std::pair<std::string, std::string>> cases = {
        {with_header("{" + x + "[0, 8]}}", std::string(12, '\0')),
         "the tensors end at byte 8 of the 12-byte data region"},
        {with_header("{" + x + "[4, 12]}}", std::string(12, '\0')),
         "bytes 0..4 of the data region belong to no tensor"},
        {with_header(
             "{" + x +
                 R"([0, 8]}, "y": {"dtype": "BF16", "shape": [1], "data_offsets": [10, 12]}})",
             std::string(12, '\0')),
         "bytes 8..10"},
    };
    for (const auto& [bytes, fragment] : cases) {
        std::string message;
        EXPECT_EQ(parse_status(bytes, &message), Status::Format) << fragment;
        EXPECT_NE(message.find(fragment), std::string::npos) << message;
    }
    // A file whose header the writer padded with at least two spaces (to 8 bytes): the name's
    // length decides how many.
    const std::string path = kl::test::temp_dir() + "/padded.safetensors";
    std::string valid;
    uint64_t header_len = 0;
    for (std::string name = "x"; name.size() < 9; name += "x") {
        kl::write_safetensors(path, {{name, DType::F32, {2}, {1, 2}}});
        valid = kl::test::read_file(path);
        std::memcpy(&header_len, valid.data(), 8);
        if (valid.substr(8 + header_len - 2, 2) == "  ") break;
    }
    ASSERT_EQ(valid.substr(8 + header_len - 2, 2), "  ");
    for (uint64_t off_by : {1, 2}) {
        std::string bytes = valid;
        const uint64_t short_len = header_len - off_by;
        std::memcpy(&bytes[0], &short_len, 8);
        std::string message;
        EXPECT_EQ(parse_status(bytes, &message), Status::Format) << off_by;
        EXPECT_NE(message.find("is the header length right?"), std::string::npos) << message;
    }
    EXPECT_EQ(parse_status(valid), Status::Ok);
}

TEST(Safetensors, DeeplyNestedHeadersAndHugeNamesGiveShortFormatErrors) {
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    std::string message;
    EXPECT_EQ(parse_status(with_header(R"({"x": {"dtype": "F32", "shape": )" + deep +
                                           R"(, "data_offsets": [0, 0]}})",
                                       ""),
                           &message),
              Status::Format);
    EXPECT_NE(message.find("nested deeper than 64"), std::string::npos) << message;
    // A number 200,000 digits long overflows; the parser's message quotes it, cut short.
    const std::string wide = "[" + std::string(200000, '1') + "]";
    EXPECT_EQ(parse_status(with_header(R"({"x": {"dtype": "F32", "shape": )" + wide +
                                           R"(, "data_offsets": [0, 0]}})",
                                       ""),
                           &message),
              Status::Format);
    EXPECT_LT(message.size(), 600u) << message.substr(0, 600);
    const std::string name(1u << 20, 'n');
    EXPECT_EQ(parse_status(
                  with_header("{\"" + name +
                                  R"(": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}})",
                              std::string(8, '\0')),
                  &message),
              Status::Format);
    EXPECT_LT(message.size(), 600u);
    EXPECT_NE(message.find("nnnn... (1048576 bytes)"), std::string::npos) << message.substr(0, 600);
}

TEST(Safetensors, AFifoIsAnIoErrorNotAHang) {
    const std::string path = kl::test::temp_dir() + "/fifo.safetensors";
    ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
    // Opening a FIFO for reading blocked until a writer came; run it where a hang is seen.
    auto result = std::async(std::launch::async, [&] {
        try {
            kl::MappedFile file(path);
            return std::string("opened");
        } catch (const kl::Error& e) {
            return std::string(e.what());
        }
    });
    if (result.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
        ADD_FAILURE() << "MappedFile hangs on a FIFO";
        const int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK);  // releases the reader
        if (fd >= 0) ::close(fd);
    }
    EXPECT_EQ(result.get(), path + " is not a readable regular file");
}

TEST(Safetensors, MappedFileErrorsAreIo) {
    expect_error([] { kl::MappedFile("/nonexistent/x.safetensors"); }, Status::Io,
                 {"/nonexistent/x.safetensors"});
    const std::string dir = kl::test::temp_dir();
    expect_error([&] { kl::MappedFile file(dir); }, Status::Io, {dir});
}

TEST(Safetensors, RandomByteDamageNeverCrashes) {
    const std::string bytes = small_file();
    std::mt19937 rng(1);
    int rejected = 0;
    for (int trial = 0; trial < 500; ++trial) {
        std::string bad = bytes;
        for (int k = 0; k < 3; ++k) bad[rng() % bad.size()] = static_cast<char>(rng());
        const Status status = parse_status(bad);
        EXPECT_TRUE(status == Status::Ok || status == Status::Format) << static_cast<int>(status);
        rejected += status != Status::Ok;
    }
    EXPECT_GT(rejected, 0);
}

TEST(Safetensors, ShapeStringAndDtypeNames) {
    EXPECT_EQ(kl::shape_string({64, 32}), "[64,32]");
    EXPECT_EQ(kl::shape_string({}), "[]");
    EXPECT_STREQ(kl::dtype_name(DType::BF16), "BF16");
    EXPECT_STREQ(kl::dtype_name(DType::F16), "F16");
    EXPECT_STREQ(kl::dtype_name(DType::F32), "F32");
    EXPECT_EQ(kl::dtype_size(DType::BF16), 2u);
    EXPECT_EQ(kl::dtype_size(DType::F16), 2u);
    EXPECT_EQ(kl::dtype_size(DType::F32), 4u);
}

}  // namespace
