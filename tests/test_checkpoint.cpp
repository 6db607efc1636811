// config.json parsing and validation, the safetensors reader's bounds checks, checkpoint
// validation against a config, and make_tiny_model's output.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "core/config.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "core/weights.h"
#include "tiny_model.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

void write_file(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << bytes;
}

json tiny_config() {
    return json::parse(read_file(kl::test::tiny_model_dir() + "/config.json"));
}

// Expects `body` to throw kl::Error with `status` and every fragment in the message.
template <typename Body>
void expect_error(Body&& body, kl::Status status, std::vector<std::string> fragments) {
    try {
        body();
        ADD_FAILURE() << "no error; wanted one mentioning " << fragments[0];
    } catch (const kl::Error& e) {
        EXPECT_EQ(static_cast<int>(e.status()), static_cast<int>(status)) << e.what();
        for (const auto& f : fragments)
            EXPECT_NE(std::string(e.what()).find(f), std::string::npos)
                << "message \"" << e.what() << "\" lacks \"" << f << "\"";
    }
}

// ---- config ------------------------------------------------------------------------------

TEST(Config, RoundTripsThroughJson) {
    const kl::ModelConfig a = kl::ModelConfig::from_json(tiny_config().dump(), "t");
    const kl::ModelConfig b = kl::ModelConfig::from_json(a.to_json(), "t");
    EXPECT_EQ(a.to_json(), b.to_json());
    EXPECT_EQ(a.hidden_size, 64);
    EXPECT_TRUE(a.is_kda_layer(0));
    EXPECT_FALSE(a.is_kda_layer(3));  // full_attn_layers [4] is 1-based
    EXPECT_FALSE(a.is_moe_layer(0));  // first_k_dense_replace 1
    EXPECT_TRUE(a.is_moe_layer(1));
}

TEST(Config, ReleasedShapesParse) {
    json j = tiny_config();
    j["hidden_size"] = 2304;
    j["num_hidden_layers"] = 27;
    j["linear_attn_config"]["kda_layers"] = {1,  2,  3,  5,  6,  7,  9,  10, 11, 13,
                                             14, 15, 17, 18, 19, 21, 22, 23, 25, 26};
    j["linear_attn_config"]["full_attn_layers"] = {4, 8, 12, 16, 20, 24, 27};
    j["head_dim"] = 72;  // unused top-level key: ignored
    const kl::ModelConfig c = kl::ModelConfig::from_json(j.dump(), "t");
    EXPECT_EQ(c.n_kda_layers(), 20);
    EXPECT_EQ(c.n_mla_layers(), 7);
    EXPECT_FALSE(c.is_kda_layer(26));
}

struct BadConfig {
    const char* name;
    std::function<void(json&)> edit;
    kl::Status status;
    std::vector<std::string> fragments;
};

TEST(Config, EveryInconsistencyIsAnErrorNamingTheKey) {
    const std::vector<BadConfig> cases = {
        {"missing key",
         [](json& j) { j.erase("hidden_size"); },
         kl::Status::Format,
         {"hidden_size", "missing"}},
        {"string for int",
         [](json& j) { j["vocab_size"] = "many"; },
         kl::Status::Format,
         {"vocab_size", "integer"}},
        {"zero size",
         [](json& j) { j["num_attention_heads"] = 0; },
         kl::Status::Format,
         {"num_attention_heads"}},
        {"layer twice",
         [](json& j) {
             j["linear_attn_config"]["kda_layers"] = {1, 2, 3, 4};
         },
         kl::Status::Format,
         {"layer 4", "both"}},
        {"layer missing",
         [](json& j) {
             j["linear_attn_config"]["kda_layers"] = {1, 2};
         },
         kl::Status::Format,
         {"layer 3", "neither"}},
        {"0-based layer",
         [](json& j) { j["linear_attn_config"]["full_attn_layers"] = {0}; },
         kl::Status::Format,
         {"full_attn_layers", "1-based"}},
        {"layer out of range",
         [](json& j) {
             j["linear_attn_config"]["full_attn_layers"] = {4, 9};
         },
         kl::Status::Format,
         {"layer 9"}},
        {"duplicate",
         [](json& j) {
             j["linear_attn_config"]["kda_layers"] = {1, 2, 3, 3};
         },
         kl::Status::Format,
         {"twice"}},
        {"top-k > experts",
         [](json& j) { j["num_experts_per_token"] = 9; },
         kl::Status::Format,
         {"num_experts_per_token"}},
        {"groups",
         [](json& j) {
             j["use_grouped_topk"] = true;
             j["num_expert_group"] = 3;
         },
         kl::Status::Format,
         {"num_expert_group"}},
        {"topk_group",
         [](json& j) {
             j["use_grouped_topk"] = true;
             j["num_expert_group"] = 4;
             j["topk_group"] = 5;
         },
         kl::Status::Format,
         {"topk_group"}},
        {"kept groups too small",
         [](json& j) {
             j["use_grouped_topk"] = true;
             j["num_expert_group"] = 8;
             j["topk_group"] = 1;
         },
         kl::Status::Format,
         {"topk_group"}},
        {"bool type",
         [](json& j) { j["moe_renormalize"] = 1; },
         kl::Status::Format,
         {"moe_renormalize"}},
        {"linear config type",
         [](json& j) { j["linear_attn_config"] = 5; },
         kl::Status::Format,
         {"linear_attn_config"}},
        {"q_lora",
         [](json& j) { j["q_lora_rank"] = 64; },
         kl::Status::Unsupported,
         {"q_lora_rank"}},
        {"rope",
         [](json& j) { j["mla_use_nope"] = false; },
         kl::Status::Unsupported,
         {"mla_use_nope"}},
        {"softmax router",
         [](json& j) { j["moe_router_activation_func"] = "softmax"; },
         kl::Status::Unsupported,
         {"moe_router_activation_func"}},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.name);
        json j = tiny_config();
        c.edit(j);
        auto fragments = c.fragments;
        fragments.push_back("origin.json");
        expect_error([&] { kl::ModelConfig::from_json(j.dump(), "origin.json"); }, c.status,
                     fragments);
    }
    expect_error([] { kl::ModelConfig::from_json("{\"hidden_size\": 64,", "x.json"); },
                 kl::Status::Format, {"x.json", "JSON"});
    expect_error([] { kl::ModelConfig::load("/nonexistent/dir"); }, kl::Status::Io,
                 {"config.json"});
}

// ---- safetensors ---------------------------------------------------------------------------

TEST(Safetensors, RoundTripsEveryDtype) {
    const std::string path = kl::test::temp_dir() + "/t.safetensors";
    std::vector<kl::TensorToWrite> tensors = {
        {"a", kl::DType::F32, {2, 3}, {1.5f, -2.0f, 3.25f, 0.0f, 1e-8f, 6e4f}},
        {"b", kl::DType::BF16, {3}, {1.0f, -0.5f, 3.0f}},
        {"c", kl::DType::F16, {1, 2}, {0.099975586f, -65504.0f}},
        {"empty", kl::DType::F32, {0, 4}, {}},
    };
    kl::write_safetensors(path, tensors);
    kl::MappedFile file(path);
    auto views = kl::parse_safetensors(file);
    ASSERT_EQ(views.size(), 4u);
    for (const auto& t : tensors) {
        auto v =
            std::find_if(views.begin(), views.end(), [&](auto& x) { return x.name == t.name; });
        ASSERT_NE(v, views.end());
        EXPECT_EQ(v->dtype, t.dtype);
        EXPECT_EQ(v->shape, t.shape);
        std::vector<float> back(static_cast<size_t>(v->numel()));
        v->to_f32(back.data());
        EXPECT_EQ(back, t.values) << t.name;
    }
}

TEST(Safetensors, HalfConversionsRoundToNearestEven) {
    EXPECT_EQ(kl::f32_to_bf16(1.0f), 0x3f80);
    // 1 + 2^-8 is halfway between two bf16 values: ties go to the even one (1.0).
    EXPECT_EQ(kl::f32_to_bf16(1.00390625f), 0x3f80);
    EXPECT_EQ(kl::f32_to_bf16(1.01171875f), 0x3f82);  // halfway above an odd one: up
    EXPECT_TRUE(std::isnan(kl::bf16_to_f32(kl::f32_to_bf16(NAN))));
    EXPECT_EQ(kl::f32_to_f16(1.0f), 0x3c00);
    EXPECT_EQ(kl::f32_to_f16(65504.0f), 0x7bff);
    EXPECT_EQ(kl::f32_to_f16(1e6f), 0x7c00);                   // overflow to inf
    EXPECT_EQ(kl::f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
    EXPECT_EQ(kl::f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);
    EXPECT_EQ(kl::f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 ulp: tie to even (2)
    EXPECT_EQ(kl::f16_to_f32(0x7c00), INFINITY);
    EXPECT_TRUE(std::isnan(kl::f16_to_f32(0x7e00)));
    // Every finite half survives f16 -> f32 -> f16.
    for (uint32_t bits = 0; bits < 0x10000; ++bits) {
        if ((bits & 0x7c00) == 0x7c00) continue;
        ASSERT_EQ(kl::f32_to_f16(kl::f16_to_f32(uint16_t(bits))), bits) << bits;
    }
}

// A small valid file as bytes, for corrupting.
std::string small_file() {
    const std::string path = kl::test::temp_dir() + "/s.safetensors";
    kl::write_safetensors(path, {{"x", kl::DType::F32, {2, 2}, {1, 2, 3, 4}},
                                 {"y", kl::DType::BF16, {3}, {1, 2, 3}}});
    return read_file(path);
}

// Parses `bytes` written to a file; returns the kl::Error status or Ok.
kl::Status parse_status(const std::string& bytes, std::string* message = nullptr) {
    const std::string path = kl::test::temp_dir() + "/c.safetensors";
    write_file(path, bytes);
    try {
        kl::MappedFile file(path);
        kl::parse_safetensors(file);
        return kl::Status::Ok;
    } catch (const kl::Error& e) {
        if (message) *message = e.what();
        return e.status();
    }
}

std::string with_header(const std::string& header, const std::string& data) {
    std::string out(8, '\0');
    uint64_t n = header.size();
    std::memcpy(&out[0], &n, 8);
    return out + header + data;
}

TEST(Safetensors, EveryTruncationIsRejected) {
    const std::string bytes = small_file();
    ASSERT_EQ(parse_status(bytes), kl::Status::Ok);
    for (size_t n = 0; n < bytes.size(); ++n)
        EXPECT_EQ(parse_status(bytes.substr(0, n)), kl::Status::Format) << "length " << n;
}

TEST(Safetensors, MalformedHeadersAreRejectedWithAReason) {
    const std::string data(16, '\0');
    struct Case {
        std::string bytes;
        std::string fragment;
        kl::Status status;
    };
    std::string huge(8, '\0');
    const uint64_t big = uint64_t(1) << 40;
    std::memcpy(&huge[0], &big, 8);
    const std::vector<Case> cases = {
        {huge + "{}", "exceeds the limit", kl::Status::Format},
        {with_header("{\"x\": {\"dtype\": \"F32\", \"shape\": [2", data), "JSON",
         kl::Status::Format},
        {with_header("[1, 2]", data), "not a JSON object", kl::Status::Format},
        {with_header(R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 64]}})", data),
         "outside", kl::Status::Format},
        {with_header(R"({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", data),
         "needs 12", kl::Status::Format},
        {with_header(
             R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "y": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
             data),
         "overlap", kl::Status::Format},
        {with_header(R"({"x": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}})", data),
         "dtype I64", kl::Status::Format},
        {with_header(R"({"x": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", data),
         "non-negative", kl::Status::Format},
        {with_header(R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", data),
         "outside", kl::Status::Format},
        {with_header(
             R"({"x": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})",
             data),
         "overflow", kl::Status::Format},
        {with_header(R"({"x": {"shape": [2], "data_offsets": [0, 8]}})", data), "dtype",
         kl::Status::Format},
    };
    for (const auto& c : cases) {
        std::string message;
        EXPECT_EQ(parse_status(c.bytes, &message), c.status) << c.fragment;
        EXPECT_NE(message.find(c.fragment), std::string::npos) << message;
    }
}

TEST(Safetensors, RandomByteFlipsNeverCrash) {
    const std::string bytes = small_file();
    std::mt19937 rng(1);
    for (int trial = 0; trial < 500; ++trial) {
        std::string bad = bytes;
        const size_t at = rng() % std::min<size_t>(bad.size(), 200);
        bad[at] = static_cast<char>(rng());
        parse_status(bad);  // any status; it must just return
    }
}

// ---- checkpoints ---------------------------------------------------------------------------

std::string copy_model(const std::string& from) {
    const std::string to = kl::test::temp_dir() + "/m";
    fs::copy(from, to, fs::copy_options::recursive);
    return to;
}

TEST(Checkpoint, ShardedTinyModelValidatesAndLoads) {
    const std::string dir = kl::test::tiny_model_dir();
    ASSERT_TRUE(fs::exists(dir + "/model.safetensors.index.json"));
    const kl::ModelConfig config = kl::ModelConfig::load(dir);
    auto checkpoint = kl::Checkpoint::open(dir);
    EXPECT_EQ(checkpoint->tensors().size(), kl::expected_tensors(config).size());
    kl::validate_checkpoint(config, *checkpoint);
    std::vector<float> seen;
    const kl::ModelWeights w = kl::load_weights_f32(config, *checkpoint, [&](float f) {
        seen.push_back(f);
        return true;
    });
    ASSERT_FALSE(seen.empty());
    EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
    EXPECT_FLOAT_EQ(seen.back(), 1.0f);
    EXPECT_EQ(w.layers.size(), 4u);
    EXPECT_EQ(w.layers[1].moe.experts.size(), 8u);
}

TEST(Checkpoint, ProgressCallbackCanCancel) {
    const std::string dir = kl::test::tiny_model_dir();
    const kl::ModelConfig config = kl::ModelConfig::load(dir);
    auto checkpoint = kl::Checkpoint::open(dir);
    expect_error(
        [&] { kl::load_weights_f32(config, *checkpoint, [](float f) { return f < 0.5f; }); },
        kl::Status::Cancelled, {"cancelled"});
}

TEST(Checkpoint, WrongShapeNamesTheTensorAndBothShapes) {
    const std::string dir = copy_model(kl::test::tiny_model_dir());
    json j = json::parse(read_file(dir + "/config.json"));
    j["intermediate_size"] = 96;  // the dense MLP of layer 0 was written with 128
    write_file(dir + "/config.json", j.dump());
    const kl::ModelConfig config = kl::ModelConfig::load(dir);
    auto checkpoint = kl::Checkpoint::open(dir);
    expect_error([&] { kl::validate_checkpoint(config, *checkpoint); }, kl::Status::Format,
                 {"model.layers.0.mlp.gate_proj.weight", "[128,64]", "[96,64]"});
}

TEST(Checkpoint, MissingTensorAndMissingShardAreReported) {
    const std::string dir = copy_model(kl::test::tiny_model_dir());
    json j = json::parse(read_file(dir + "/config.json"));
    j["first_k_dense_replace"] = 0;  // layer 0 becomes MoE: its router was never written
    write_file(dir + "/config.json", j.dump());
    auto checkpoint = kl::Checkpoint::open(dir);
    expect_error([&] { kl::validate_checkpoint(kl::ModelConfig::load(dir), *checkpoint); },
                 kl::Status::Format,
                 {"model.layers.0.block_sparse_moe.gate.weight", "missing", "[8,64]"});

    fs::remove(dir + "/model-00002-of-00002.safetensors");
    expect_error([&] { kl::Checkpoint::open(dir); }, kl::Status::Io, {"model-00002-of-00002"});
    expect_error([] { kl::Checkpoint::open("/nonexistent/model"); }, kl::Status::Io,
                 {"does not exist"});
    const std::string empty = kl::test::temp_dir();
    expect_error([&] { kl::Checkpoint::open(empty); }, kl::Status::Io, {"no *.safetensors"});
}

TEST(Checkpoint, SingleFileCheckpointsLoadToo) {
    const std::string dir = kl::test::tiny_model_dir("--preset tiny --seed 1 --shards 1");
    EXPECT_FALSE(fs::exists(dir + "/model.safetensors.index.json"));
    EXPECT_TRUE(fs::exists(dir + "/model.safetensors"));
    auto checkpoint = kl::Checkpoint::open(dir);
    kl::validate_checkpoint(kl::ModelConfig::load(dir), *checkpoint);
}

TEST(MakeTinyModel, SameSeedSameBytesOtherSeedOtherBytes) {
    const std::string a = kl::test::tiny_model_dir("--preset tiny --seed 1");
    const std::string b = copy_model(a);
    fs::remove_all(b);
    const std::string cmd =
        std::string(KL_MAKE_TINY_MODEL) + " " + b + " --preset tiny --seed 1 > /dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    const std::string c = kl::test::tiny_model_dir("--preset tiny --seed 2");
    for (const char* shard :
         {"/model-00001-of-00002.safetensors", "/model-00002-of-00002.safetensors"}) {
        EXPECT_EQ(read_file(a + shard), read_file(b + shard)) << shard;
        EXPECT_NE(read_file(a + shard), read_file(c + shard)) << shard;
    }
}

}  // namespace
