// config.json parsing: the Hugging Face keys and their defaults, the round trip through
// to_json, the layer queries, and an error naming the key for every inconsistency.
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/error.h"
#include "core/json_input.h"
#include "core/limits.h"
#include "expect_error.h"
#include "tiny_model.h"

namespace {

using kl::Status;
using kl::test::expect_error;
using nlohmann::json;

// The tiny preset as a released config.json spells it.
json base_config() {
    return json::parse(R"({
      "architectures": ["KimiLinearForCausalLM"], "model_type": "kimi_linear",
      "hidden_size": 64, "num_hidden_layers": 4, "vocab_size": 256, "intermediate_size": 128,
      "rms_norm_eps": 1e-5, "num_attention_heads": 2, "kv_lora_rank": 32, "q_lora_rank": null,
      "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16, "mla_use_nope": true,
      "head_dim": 72,
      "linear_attn_config": {"num_heads": 2, "head_dim": 16, "short_conv_kernel_size": 4,
                             "kda_layers": [1, 2, 3], "full_attn_layers": [4]},
      "num_experts": 8, "num_experts_per_token": 2, "num_shared_experts": 1,
      "moe_intermediate_size": 32, "moe_router_activation_func": "sigmoid",
      "moe_renormalize": true, "routed_scaling_factor": 2.446, "use_grouped_topk": false,
      "num_expert_group": 1, "topk_group": 1, "first_k_dense_replace": 1, "moe_layer_freq": 1,
      "tie_word_embeddings": false, "model_max_length": 4096
    })");
}

kl::ModelConfig parse(const json& j) {
    return kl::ModelConfig::from_json(j.dump(), "config.json");
}

TEST(Config, ParsesEveryKey) {
    json j = base_config();
    j["moe_renormalize"] = false;
    j["use_grouped_topk"] = true;
    j["num_expert_group"] = 4;
    j["topk_group"] = 2;
    j["moe_layer_freq"] = 2;
    j["tie_word_embeddings"] = true;
    j["model_max_length"] = 1000;
    const kl::ModelConfig c = parse(j);
    EXPECT_EQ(c.hidden_size, 64);
    EXPECT_EQ(c.num_hidden_layers, 4);
    EXPECT_EQ(c.vocab_size, 256);
    EXPECT_EQ(c.intermediate_size, 128);
    EXPECT_EQ(c.rms_norm_eps, 1e-5f);
    EXPECT_EQ(c.num_attention_heads, 2);
    EXPECT_EQ(c.kv_lora_rank, 32);
    EXPECT_EQ(c.qk_nope_head_dim, 16);
    EXPECT_EQ(c.qk_rope_head_dim, 8);
    EXPECT_EQ(c.v_head_dim, 16);
    EXPECT_EQ(c.kda_num_heads, 2);
    EXPECT_EQ(c.kda_head_dim, 16);
    EXPECT_EQ(c.short_conv_kernel_size, 4);
    EXPECT_EQ(c.kda_layers, (std::vector<int64_t>{1, 2, 3}));
    EXPECT_EQ(c.full_attn_layers, (std::vector<int64_t>{4}));
    EXPECT_EQ(c.num_experts, 8);
    EXPECT_EQ(c.num_experts_per_token, 2);
    EXPECT_EQ(c.num_shared_experts, 1);
    EXPECT_EQ(c.moe_intermediate_size, 32);
    EXPECT_FALSE(c.moe_renormalize);
    EXPECT_EQ(c.routed_scaling_factor, 2.446f);
    EXPECT_TRUE(c.use_grouped_topk);
    EXPECT_EQ(c.num_expert_group, 4);
    EXPECT_EQ(c.topk_group, 2);
    EXPECT_EQ(c.first_k_dense_replace, 1);
    EXPECT_EQ(c.moe_layer_freq, 2);
    EXPECT_TRUE(c.tie_word_embeddings);
    EXPECT_EQ(c.max_context, 1000);
    EXPECT_EQ(c.kda_dim(), 32);
    EXPECT_EQ(c.mla_qk_head_dim(), 24);
    EXPECT_EQ(c.mla_cache_width(), 40);
}

TEST(Config, OptionalKeysTakeTheirDefaults) {
    json j = base_config();
    for (const char* key :
         {"num_shared_experts", "moe_renormalize", "routed_scaling_factor", "use_grouped_topk",
          "num_expert_group", "topk_group", "first_k_dense_replace", "moe_layer_freq",
          "tie_word_embeddings", "model_max_length", "q_lora_rank", "mla_use_nope",
          "moe_router_activation_func", "architectures", "model_type", "head_dim"})
        j.erase(key);
    const kl::ModelConfig c = parse(j);
    EXPECT_EQ(c.num_shared_experts, 0);
    EXPECT_TRUE(c.moe_renormalize);
    EXPECT_EQ(c.routed_scaling_factor, 1.0f);
    EXPECT_FALSE(c.use_grouped_topk);
    EXPECT_EQ(c.num_expert_group, 1);
    EXPECT_EQ(c.topk_group, 1);
    EXPECT_EQ(c.first_k_dense_replace, 0);
    EXPECT_EQ(c.moe_layer_freq, 1);
    EXPECT_FALSE(c.tie_word_embeddings);
    EXPECT_EQ(c.max_context, 4096);

    j["max_position_embeddings"] = 777;
    EXPECT_EQ(parse(j).max_context, 777);
    j["model_max_length"] = 555;  // the tokenizer-side limit wins when both are present
    EXPECT_EQ(parse(j).max_context, 555);
}

TEST(Config, RoundTripsThroughToJsonInTheHuggingFaceLayout) {
    json j = base_config();
    j["use_grouped_topk"] = true;
    j["num_expert_group"] = 2;
    j["topk_group"] = 2;
    j["tie_word_embeddings"] = true;
    j["rms_norm_eps"] = 3e-6;
    const kl::ModelConfig a = parse(j);
    const std::string text = a.to_json();
    const kl::ModelConfig b = kl::ModelConfig::from_json(text, "round trip");
    EXPECT_EQ(b.to_json(), text);
    EXPECT_EQ(b.rms_norm_eps, a.rms_norm_eps);
    EXPECT_EQ(b.routed_scaling_factor, a.routed_scaling_factor);
    EXPECT_EQ(b.kda_layers, a.kda_layers);
    EXPECT_EQ(b.full_attn_layers, a.full_attn_layers);
    EXPECT_EQ(b.num_expert_group, 2);
    EXPECT_TRUE(b.tie_word_embeddings);

    const json out = json::parse(text);
    EXPECT_EQ(out["model_type"], "kimi_linear");
    EXPECT_EQ(out["architectures"], json::array({"KimiLinearForCausalLM"}));
    EXPECT_TRUE(out["q_lora_rank"].is_null());
    EXPECT_EQ(out["mla_use_nope"], true);
    EXPECT_EQ(out["moe_router_activation_func"], "sigmoid");
    EXPECT_EQ(out["linear_attn_config"]["kda_layers"], json::array({1, 2, 3}));
    EXPECT_EQ(out["linear_attn_config"]["short_conv_kernel_size"], 4);
    EXPECT_EQ(out["model_max_length"], 4096);
    // Floats are written as the shortest decimal that reads back, as a person would write them.
    EXPECT_NE(text.find("\"routed_scaling_factor\": 2.446,"), std::string::npos) << text;
    EXPECT_NE(text.find("\"rms_norm_eps\": 3e-06,"), std::string::npos) << text;
}

TEST(Config, LayerQueriesAreZeroBased) {
    json j = base_config();
    j["num_hidden_layers"] = 6;
    j["linear_attn_config"]["kda_layers"] = {2, 3, 5, 6};
    j["linear_attn_config"]["full_attn_layers"] = {4, 1};
    j["first_k_dense_replace"] = 1;
    j["moe_layer_freq"] = 2;
    const kl::ModelConfig c = parse(j);
    const std::vector<bool> kda = {false, true, true, false, true, true};
    const std::vector<bool> moe = {false, false, true, false, true, false};
    for (int64_t layer = 0; layer < 6; ++layer) {
        EXPECT_EQ(c.is_kda_layer(layer), kda[static_cast<size_t>(layer)]) << layer;
        EXPECT_EQ(c.is_moe_layer(layer), moe[static_cast<size_t>(layer)]) << layer;
    }
    EXPECT_EQ(c.n_kda_layers(), 4);
    EXPECT_EQ(c.n_mla_layers(), 2);

    j["num_experts"] = 0;  // no experts: every layer is dense
    const kl::ModelConfig dense = parse(j);
    for (int64_t layer = 0; layer < 6; ++layer) EXPECT_FALSE(dense.is_moe_layer(layer));
}

TEST(Config, ReleasedLayerPatternParses) {
    json j = base_config();
    j["num_hidden_layers"] = 27;
    j["linear_attn_config"]["kda_layers"] = {1,  2,  3,  5,  6,  7,  9,  10, 11, 13,
                                             14, 15, 17, 18, 19, 21, 22, 23, 25, 26};
    j["linear_attn_config"]["full_attn_layers"] = {4, 8, 12, 16, 20, 24, 27};
    j["use_grouped_topk"] = true;  // with one group: plain top-k
    const kl::ModelConfig c = parse(j);
    EXPECT_EQ(c.n_kda_layers(), 20);
    EXPECT_EQ(c.n_mla_layers(), 7);
    EXPECT_FALSE(c.is_kda_layer(3));
    EXPECT_FALSE(c.is_kda_layer(26));
    EXPECT_TRUE(c.is_kda_layer(25));
}

TEST(Config, EveryMissingRequiredKeyIsNamed) {
    for (const char* key :
         {"hidden_size", "num_hidden_layers", "vocab_size", "intermediate_size", "rms_norm_eps",
          "num_attention_heads", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
          "v_head_dim", "linear_attn_config", "num_experts", "num_experts_per_token",
          "moe_intermediate_size"}) {
        json j = base_config();
        j.erase(key);
        expect_error([&] { parse(j); }, Status::Format, {"config.json: ", key, "missing"});
        j = base_config();
        j[key] = nullptr;  // null is as good as absent for a required key
        expect_error([&] { parse(j); }, Status::Format, {key, "missing"});
    }
    for (const char* key :
         {"num_heads", "head_dim", "short_conv_kernel_size", "kda_layers", "full_attn_layers"}) {
        json j = base_config();
        j["linear_attn_config"].erase(key);
        expect_error([&] { parse(j); }, Status::Format,
                     {"config.json: linear_attn_config." + std::string(key), "missing"});
    }
}

TEST(Config, WrongJsonTypesNameTheKey) {
    struct Case {
        const char* key;
        json value;
    };
    const std::vector<Case> cases = {
        {"hidden_size", "64"},          {"vocab_size", 256.5},
        {"num_hidden_layers", true},    {"rms_norm_eps", "1e-5"},
        {"num_experts", json::array()}, {"moe_renormalize", 1},
        {"tie_word_embeddings", "no"},  {"routed_scaling_factor", "2.4"},
        {"first_k_dense_replace", 1.5}, {"linear_attn_config", 5},
        {"model_max_length", "4k"},     {"num_shared_experts", json::object()},
        {"hidden_size", 1e300},         {"vocab_size", 18446744073709551615ull},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(std::string(c.key) + " = " + c.value.dump());
        json j = base_config();
        j[c.key] = c.value;
        expect_error([&] { parse(j); }, Status::Format, {"config.json: ", c.key});
    }
    json j = base_config();
    j["linear_attn_config"]["kda_layers"] = {1, "2", 3};
    expect_error([&] { parse(j); }, Status::Format, {"linear_attn_config.kda_layers", "\"2\""});
    j = base_config();
    j["linear_attn_config"]["full_attn_layers"] = 4;
    expect_error([&] { parse(j); }, Status::Format, {"linear_attn_config.full_attn_layers"});
    j = base_config();
    j["linear_attn_config"]["head_dim"] = "16";
    expect_error([&] { parse(j); }, Status::Format, {"linear_attn_config.head_dim"});
    // A whole number written as a float is still an integer.
    j = base_config();
    j["hidden_size"] = 64.0;
    EXPECT_EQ(parse(j).hidden_size, 64);
}

struct BadConfig {
    const char* name;
    std::function<void(json&)> edit;
    std::vector<std::string> fragments;
};

TEST(Config, EveryInconsistencyIsAFormatErrorNamingTheKey) {
    std::vector<BadConfig> cases;
    for (const char* key :
         {"hidden_size", "num_hidden_layers", "vocab_size", "num_attention_heads", "kv_lora_rank",
          "qk_nope_head_dim", "v_head_dim", "num_experts_per_token", "moe_intermediate_size",
          "intermediate_size", "moe_layer_freq", "model_max_length"}) {
        cases.push_back({key, [key](json& j) { j[key] = 0; }, {key, "> 0"}});
    }
    for (const char* key : {"num_heads", "head_dim", "short_conv_kernel_size"})
        cases.push_back({key,
                         [key](json& j) { j["linear_attn_config"][key] = -1; },
                         {std::string("linear_attn_config.") + key, "> 0"}});
    const std::vector<BadConfig> more = {
        {"negative rope", [](json& j) { j["qk_rope_head_dim"] = -8; }, {"qk_rope_head_dim"}},
        {"zero eps", [](json& j) { j["rms_norm_eps"] = 0; }, {"rms_norm_eps"}},
        {"negative experts", [](json& j) { j["num_experts"] = -8; }, {"num_experts", "-8"}},
        {"negative shared", [](json& j) { j["num_shared_experts"] = -1; }, {"num_shared_experts"}},
        {"negative dense count",
         [](json& j) { j["first_k_dense_replace"] = -1; },
         {"first_k_dense_replace"}},
        {"zero scaling",
         [](json& j) { j["routed_scaling_factor"] = 0; },
         {"routed_scaling_factor"}},
        {"layer in both lists",
         [](json& j) {
             j["linear_attn_config"]["kda_layers"] = {1, 2, 3, 4};
         },
         {"linear_attn_config.full_attn_layers", "layer 4", "both"}},
        {"layer in neither list",
         [](json& j) {
             j["linear_attn_config"]["kda_layers"] = {1, 3};
         },
         {"linear_attn_config", "layer 2", "neither"}},
        {"0-based list",
         [](json& j) { j["linear_attn_config"]["full_attn_layers"] = {0}; },
         {"linear_attn_config.full_attn_layers", "layer 0", "1-based"}},
        {"layer past the end",
         [](json& j) {
             j["linear_attn_config"]["full_attn_layers"] = {4, 5};
         },
         {"linear_attn_config.full_attn_layers", "layer 5", "1..4"}},
        {"duplicate",
         [](json& j) {
             j["linear_attn_config"]["kda_layers"] = {1, 2, 3, 2};
         },
         {"linear_attn_config.kda_layers", "layer 2", "twice"}},
        {"top-k above experts",
         [](json& j) { j["num_experts_per_token"] = 9; },
         {"num_experts_per_token", "9", "num_experts 8"}},
        {"experts not divisible into groups",
         [](json& j) {
             j["use_grouped_topk"] = true;
             j["num_expert_group"] = 3;
         },
         {"num_expert_group", "divisible"}},
        {"zero groups",
         [](json& j) {
             j["use_grouped_topk"] = true;
             j["num_expert_group"] = 0;
         },
         {"num_expert_group"}},
        {"topk_group above groups",
         [](json& j) {
             j["use_grouped_topk"] = true;
             j["num_expert_group"] = 4;
             j["topk_group"] = 5;
         },
         {"topk_group", "5"}},
        {"kept groups hold too few experts",
         [](json& j) {
             j["use_grouped_topk"] = true;
             j["num_expert_group"] = 8;
             j["topk_group"] = 1;
         },
         {"topk_group", "fewer than num_experts_per_token 2"}},
    };
    cases.insert(cases.end(), more.begin(), more.end());
    for (const auto& c : cases) {
        SCOPED_TRACE(c.name);
        json j = base_config();
        c.edit(j);
        auto fragments = c.fragments;
        fragments.push_back("origin/config.json: ");
        expect_error([&] { kl::ModelConfig::from_json(j.dump(), "origin/config.json"); },
                     Status::Format, fragments);
    }
}

TEST(Config, EverySizeHasALimitCheckedBeforeUse) {
    // docs/design/model.md, "Limits" (core/limits.h): one past each limit is Format naming
    // the key; nothing is allocated or multiplied from the value first.
    struct Case {
        const char* key;  // a top-level key, or one of linear_attn_config's
        int64_t limit;
        bool linear;
    };
    const std::vector<Case> cases = {
        {"hidden_size", kl::limits::kWidth, false},
        {"num_hidden_layers", kl::limits::kLayers, false},
        {"vocab_size", INT32_MAX, false},
        {"intermediate_size", kl::limits::kWidth, false},
        {"num_attention_heads", kl::limits::kHeads, false},
        {"kv_lora_rank", kl::limits::kWidth, false},
        {"qk_nope_head_dim", kl::limits::kWidth, false},
        {"qk_rope_head_dim", kl::limits::kWidth, false},
        {"v_head_dim", kl::limits::kWidth, false},
        {"num_experts", kl::limits::kExperts, false},
        {"num_shared_experts", kl::limits::kExperts, false},
        {"moe_intermediate_size", kl::limits::kWidth, false},
        {"model_max_length", kl::limits::kContext, false},
        {"num_heads", kl::limits::kHeads, true},
        {"head_dim", kl::limits::kWidth, true},
        {"short_conv_kernel_size", kl::limits::kConvKernel, true},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.key);
        json j = base_config();
        (c.linear ? j["linear_attn_config"][c.key] : j[c.key]) = c.limit + 1;
        expect_error(
            [&] { parse(j); }, Status::Format,
            {c.key, "must be at most " + std::to_string(c.limit), std::to_string(c.limit + 1)});
    }
    // num_hidden_layers past the limit fails before its layer table exists, however large.
    json j = base_config();
    j["num_hidden_layers"] = int64_t(1) << 40;
    expect_error([&] { parse(j); }, Status::Format, {"num_hidden_layers", "at most 1024"});
    // Each value within its limit, but the KDA state 2^16 heads x 2^20 x 2^20 per layer is
    // not: the product is checked in 128 bits.
    j = base_config();
    j["linear_attn_config"]["num_heads"] = kl::limits::kHeads;
    j["linear_attn_config"]["head_dim"] = kl::limits::kWidth;
    expect_error([&] { parse(j); }, Status::Format, {"linear_attn_config", "recurrent state"});
}

TEST(Config, FloatsMustBeFiniteAndWithinTheirRange) {
    // These loaded and gave NaN logits.
    const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
        {R"("rms_norm_eps": 1e308)", {"rms_norm_eps", "float range"}},
        {R"("rms_norm_eps": 1e400)", {"number overflow", "1e400"}},
        {R"("rms_norm_eps": 1e-50)", {"rms_norm_eps", "> 0"}},
        {R"("rms_norm_eps": -1e-5)", {"rms_norm_eps", "> 0"}},
        {R"("rms_norm_eps": 2)", {"rms_norm_eps", "at most 1"}},
        {R"("routed_scaling_factor": 1e300)", {"routed_scaling_factor", "float range"}},
        {R"("routed_scaling_factor": -2.5)", {"routed_scaling_factor", "> 0", "-2.5"}},
        {R"("routed_scaling_factor": 5000)", {"routed_scaling_factor", "at most 1000"}},
    };
    std::string text = base_config().dump();
    for (const auto& [replacement, fragments] : cases) {
        SCOPED_TRACE(replacement);
        const std::string key = replacement.substr(0, replacement.find(':'));
        std::string edited = text;
        const size_t at = edited.find(key);
        ASSERT_NE(at, std::string::npos);
        edited.replace(at, edited.find_first_of(",}", at) - at, replacement);
        expect_error([&] { kl::ModelConfig::from_json(edited, "config.json"); }, Status::Format,
                     fragments);
    }
    json j = base_config();
    j["rms_norm_eps"] = 1.0;
    j["routed_scaling_factor"] = 1000.0;
    EXPECT_EQ(parse(j).rms_norm_eps, 1.0f);
}

TEST(Config, JsonNestingIsLimitedWhileParsing) {
    auto nested = [](int depth) {
        return std::string(static_cast<size_t>(depth), '[') +
               std::string(static_cast<size_t>(depth), ']');
    };
    EXPECT_NO_THROW(kl::parse_json(nested(kl::limits::kJsonDepth), "x.json"));
    expect_error([&] { kl::parse_json(nested(kl::limits::kJsonDepth + 1), "x.json"); },
                 Status::Format, {"x.json", "nested deeper than 64"});
    // Brackets inside strings, escaped quotes included, are text, not nesting.
    const std::string brackets(200, '[');
    EXPECT_EQ(kl::parse_json("{\"a\": \"" + brackets + "\"}", "s.json")["a"], brackets);
    EXPECT_EQ(kl::parse_json("[\"\\\"" + brackets + "\\\\\", 1]", "s.json")[1], 1);
    // 100,000 levels: the parse stops at level 65, and no message dumps the value.
    expect_error([&] { kl::parse_json("{\"a\": " + nested(100000) + "}", "deep.json"); },
                 Status::Format, {"deep.json", "nested"});
    json j = base_config();
    const std::string text = j.dump();
    expect_error(
        [&] {
            kl::ModelConfig::from_json(
                text.substr(0, text.size() - 1) + ", \"x\": " + nested(100000) + "}",
                "config.json");
        },
        Status::Format, {"config.json", "nested"});
}

TEST(Config, ValuesQuotedInMessagesAreCutShort) {
    json j = base_config();
    j["moe_router_activation_func"] = std::string(1u << 20, 's');
    try {
        parse(j);
        ADD_FAILURE() << "no error";
    } catch (const kl::Error& e) {
        EXPECT_EQ(e.status(), Status::Unsupported);
        EXPECT_LT(std::string(e.what()).size(), 300u);
        EXPECT_NE(std::string(e.what()).find("ssss... (1048576 bytes)"), std::string::npos);
    }
    json big = json::array();
    for (int i = 0; i < 100000; ++i) big.push_back({{"k", i}});
    const std::string excerpt = kl::json_excerpt(big);
    EXPECT_LT(excerpt.size(), 200u);
    EXPECT_EQ(excerpt.substr(0, 10), "[{\"k\":0},{");
    EXPECT_EQ(kl::json_excerpt(json(2.5)), "2.5");
    EXPECT_EQ(kl::json_excerpt(json::parse("[[[[1]]]]")), "[[[...]]]");
}

TEST(Config, GroupSettingsAreFreeWhenGroupedTopKIsOff) {
    json j = base_config();
    j["num_expert_group"] = 3;  // 8 experts do not split into 3 groups, but nothing groups them
    EXPECT_EQ(parse(j).num_expert_group, 3);
    j["use_grouped_topk"] = true;
    EXPECT_THROW(parse(j), kl::Error);
}

TEST(Config, UnimplementedVariantsAreUnsupportedNamingTheKey) {
    const std::vector<std::pair<const char*, json>> cases = {
        {"q_lora_rank", 1536},
        {"mla_use_nope", false},
        {"moe_router_activation_func", "softmax"},
    };
    for (const auto& [key, value] : cases) {
        json j = base_config();
        j[key] = value;
        expect_error([&] { parse(j); }, Status::Unsupported, {"config.json: ", key});
    }
    json j = base_config();
    j["mla_use_nope"] = false;
    expect_error([&] { parse(j); }, Status::Unsupported, {"rotary"});
}

TEST(Config, MalformedJsonIsAFormatErrorWithThePosition) {
    expect_error([] { kl::ModelConfig::from_json("{\"hidden_size\": 64,\n  \"x\" 1}", "a.json"); },
                 Status::Format, {"a.json", "line 2, column"});
    expect_error([] { kl::ModelConfig::from_json("", "empty.json"); }, Status::Format,
                 {"empty.json", "JSON"});
    expect_error([] { kl::ModelConfig::from_json("[1, 2]", "list.json"); }, Status::Format,
                 {"list.json", "object"});
}

TEST(Config, LoadReadsDirConfigJson) {
    const std::string dir = kl::test::temp_dir();
    expect_error([&] { kl::ModelConfig::load(dir); }, Status::Io, {dir + "/config.json"});
    kl::test::write_file(dir + "/config.json", base_config().dump());
    EXPECT_EQ(kl::ModelConfig::load(dir).hidden_size, 64);
    kl::test::write_file(dir + "/config.json", "{\"hidden_size\": 0}");
    expect_error([&] { kl::ModelConfig::load(dir); }, Status::Format, {dir + "/config.json: "});
}

}  // namespace
