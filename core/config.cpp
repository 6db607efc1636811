#include "config.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "error.h"
#include "input_file.h"
#include "json_input.h"
#include "limits.h"

namespace kl {
namespace {

using nlohmann::json;

// Reads typed keys from one JSON object, naming "origin: path.key" in every error.
class Reader {
public:
    Reader(const json& object, std::string origin, std::string prefix)
        : object_(object), origin_(std::move(origin)), prefix_(std::move(prefix)) {}

    [[noreturn]] void error(const std::string& key, const std::string& what) const {
        fail(Status::Format, origin_ + ": " + prefix_ + key + ": " + what);
    }

    const json* find(const std::string& key) const {
        auto it = object_.find(key);
        if (it == object_.end() || it->is_null()) return nullptr;
        return &*it;
    }
    const json& need(const std::string& key) const {
        const json* v = find(key);
        if (!v) error(key, "required key is missing");
        return *v;
    }

    int64_t integer(const std::string& key, const json& v) const {
        if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX))
            error(key, "integer " + json_excerpt(v) + " is out of range");
        if (v.is_number_integer()) return v.get<int64_t>();
        // Some exporters write whole numbers as 64.0; anything else fractional is an error.
        if (v.is_number_float()) {
            const double d = v.get<double>();
            if (std::isfinite(d) && std::fabs(d) < 9007199254740992.0 && d == std::floor(d))
                return static_cast<int64_t>(d);
        }
        error(key, "expected an integer, got " + json_excerpt(v));
    }
    int64_t integer(const std::string& key) const { return integer(key, need(key)); }
    int64_t integer_or(const std::string& key, int64_t fallback) const {
        const json* v = find(key);
        return v ? integer(key, *v) : fallback;
    }
    double number(const std::string& key, const json& v) const {
        if (!v.is_number()) error(key, "expected a number, got " + json_excerpt(v));
        const double d = v.get<double>();
        if (!std::isfinite(d)) error(key, "expected a finite number, got " + json_excerpt(v));
        return d;
    }
    // A float config value: finite in float too (1e308 would become inf).
    float float_number(const std::string& key, const json& v) const {
        const double d = number(key, v);
        if (std::fabs(d) > static_cast<double>(FLT_MAX))
            error(key, "the value " + json_excerpt(v) + " is out of the float range");
        return static_cast<float>(d);
    }
    float float_number(const std::string& key) const { return float_number(key, need(key)); }
    float float_number_or(const std::string& key, float fallback) const {
        const json* v = find(key);
        return v ? float_number(key, *v) : fallback;
    }
    bool boolean_or(const std::string& key, bool fallback) const {
        const json* v = find(key);
        if (!v) return fallback;
        if (!v->is_boolean()) error(key, "expected true or false, got " + json_excerpt(*v));
        return v->get<bool>();
    }
    std::vector<int64_t> integer_list(const std::string& key) const {
        const json& v = need(key);
        if (!v.is_array()) error(key, "expected a list of layer numbers, got " + json_excerpt(v));
        std::vector<int64_t> out;
        for (const json& item : v) out.push_back(integer(key, item));
        return out;
    }

private:
    const json& object_;
    std::string origin_;
    std::string prefix_;
};

// The shortest decimal that reads back as `value`, so config.json says 2.446, not
// 2.446000099182129 (the float widened to double).
double shortest_decimal(float value) {
    char text[32];
    for (int digits = 1; digits <= 9; ++digits) {
        std::snprintf(text, sizeof(text), "%.*g", digits, static_cast<double>(value));
        if (std::strtof(text, nullptr) == value) return std::strtod(text, nullptr);
    }
    return static_cast<double>(value);  // NaN: never equal to itself
}

// A float for a message: "1e+308", "nan", "2.446".
std::string shortest_text(double value) {
    char text[32];
    std::snprintf(text, sizeof(text), "%.7g", value);
    return text;
}

}  // namespace

ModelConfig ModelConfig::from_json(const std::string& json_text, const std::string& origin) {
    const json root = parse_json(json_text, origin);
    if (!root.is_object()) fail(Status::Format, origin + ": top level is not a JSON object");
    Reader r(root, origin, "");

    ModelConfig c;
    c.hidden_size = r.integer("hidden_size");
    c.num_hidden_layers = r.integer("num_hidden_layers");
    c.vocab_size = r.integer("vocab_size");
    c.intermediate_size = r.integer("intermediate_size");
    c.rms_norm_eps = r.float_number("rms_norm_eps");
    c.num_attention_heads = r.integer("num_attention_heads");
    c.kv_lora_rank = r.integer("kv_lora_rank");
    c.qk_nope_head_dim = r.integer("qk_nope_head_dim");
    c.qk_rope_head_dim = r.integer("qk_rope_head_dim");
    c.v_head_dim = r.integer("v_head_dim");

    if (r.find("q_lora_rank"))
        fail(Status::Unsupported,
             origin + ": q_lora_rank: only null (a plain q_proj) is supported");
    if (!r.boolean_or("mla_use_nope", true))
        fail(Status::Unsupported,
             origin + ": mla_use_nope: false needs rotary embeddings, which are not implemented");
    if (const json* act = r.find("moe_router_activation_func")) {
        if (!act->is_string() || act->get<std::string>() != "sigmoid")
            fail(Status::Unsupported, origin +
                                          ": moe_router_activation_func: only \"sigmoid\" is "
                                          "supported, got " +
                                          json_excerpt(*act));
    }

    const json& linear = r.need("linear_attn_config");
    if (!linear.is_object()) r.error("linear_attn_config", "expected an object");
    Reader lr(linear, origin, "linear_attn_config.");
    c.kda_num_heads = lr.integer("num_heads");
    c.kda_head_dim = lr.integer("head_dim");
    c.short_conv_kernel_size = lr.integer("short_conv_kernel_size");
    c.kda_layers = lr.integer_list("kda_layers");
    c.full_attn_layers = lr.integer_list("full_attn_layers");

    c.num_experts = r.integer("num_experts");
    c.num_experts_per_token = r.integer("num_experts_per_token");
    c.moe_intermediate_size = r.integer("moe_intermediate_size");
    c.num_shared_experts = r.integer_or("num_shared_experts", 0);
    c.moe_renormalize = r.boolean_or("moe_renormalize", true);
    c.routed_scaling_factor = r.float_number_or("routed_scaling_factor", 1.0f);
    c.use_grouped_topk = r.boolean_or("use_grouped_topk", false);
    c.num_expert_group = r.integer_or("num_expert_group", 1);
    c.topk_group = r.integer_or("topk_group", 1);
    c.first_k_dense_replace = r.integer_or("first_k_dense_replace", 0);
    c.moe_layer_freq = r.integer_or("moe_layer_freq", 1);
    c.tie_word_embeddings = r.boolean_or("tie_word_embeddings", false);
    c.max_context = r.integer_or("model_max_length", r.integer_or("max_position_embeddings", 4096));

    c.validate(origin);
    return c;
}

ModelConfig ModelConfig::load(const std::string& dir) {
    const std::string path = dir + "/config.json";
    return from_json(read_input_file(path, limits::kConfigFileBytes), path);
}

void ModelConfig::validate(const std::string& origin) const {
    auto bad = [&](const std::string& key, const std::string& what) {
        fail(Status::Format, origin + ": " + key + ": " + what);
    };
    // Every size within its limit (core/limits.h, docs/design/model.md "Limits") before
    // anything is computed or allocated from it: products of a few of them then fit int64.
    auto in_range = [&](const char* key, int64_t value, int64_t lowest, int64_t highest) {
        if (value < lowest)
            bad(key,
                (lowest == 1 ? "must be > 0, got " : "must be >= 0, got ") + std::to_string(value));
        if (value > highest)
            bad(key,
                "must be at most " + std::to_string(highest) + ", got " + std::to_string(value));
    };
    auto positive = [&](const char* key, int64_t value, int64_t highest) {
        in_range(key, value, 1, highest);
    };
    positive("hidden_size", hidden_size, limits::kWidth);
    positive("num_hidden_layers", num_hidden_layers, limits::kLayers);
    positive("vocab_size", vocab_size, INT32_MAX);  // token ids are int32
    positive("num_attention_heads", num_attention_heads, limits::kHeads);
    positive("kv_lora_rank", kv_lora_rank, limits::kWidth);
    positive("qk_nope_head_dim", qk_nope_head_dim, limits::kWidth);
    in_range("qk_rope_head_dim", qk_rope_head_dim, 0, limits::kWidth);
    positive("v_head_dim", v_head_dim, limits::kWidth);
    positive("linear_attn_config.num_heads", kda_num_heads, limits::kHeads);
    positive("linear_attn_config.head_dim", kda_head_dim, limits::kWidth);
    positive("linear_attn_config.short_conv_kernel_size", short_conv_kernel_size,
             limits::kConvKernel);
    // Floats: a NaN, infinite or absurd value loads and then gives NaN logits.
    auto in_float_range = [&](const char* key, float value, double highest) {
        if (!std::isfinite(value) || !(value > 0.0f) || value > highest)
            bad(key, "must be > 0 and at most " + shortest_text(highest) + ", got " +
                         shortest_text(value));
    };
    in_float_range("rms_norm_eps", rms_norm_eps, limits::kRmsNormEps);
    in_range("first_k_dense_replace", first_k_dense_replace, 0, INT64_MAX);
    positive("moe_layer_freq", moe_layer_freq, INT64_MAX);
    in_range("num_experts", num_experts, 0, limits::kExperts);
    positive("model_max_length", max_context, limits::kContext);

    // Every layer in exactly one of the two 1-based lists.
    std::vector<int> owner(static_cast<size_t>(num_hidden_layers) + 1, 0);
    auto claim = [&](const std::vector<int64_t>& list, const char* key, int who) {
        for (int64_t layer : list) {
            if (layer < 1 || layer > num_hidden_layers)
                bad(std::string("linear_attn_config.") + key,
                    "layer " + std::to_string(layer) + " is outside 1.." +
                        std::to_string(num_hidden_layers) + " (the lists are 1-based)");
            int& slot = owner[static_cast<size_t>(layer)];
            if (slot == who)
                bad(std::string("linear_attn_config.") + key,
                    "layer " + std::to_string(layer) + " is listed twice");
            if (slot != 0)
                bad(std::string("linear_attn_config.") + key,
                    "layer " + std::to_string(layer) +
                        " is in both kda_layers and full_attn_layers");
            slot = who;
        }
    };
    claim(kda_layers, "kda_layers", 1);
    claim(full_attn_layers, "full_attn_layers", 2);
    for (int64_t layer = 1; layer <= num_hidden_layers; ++layer)
        if (owner[static_cast<size_t>(layer)] == 0)
            bad("linear_attn_config", "layer " + std::to_string(layer) +
                                          " is in neither kda_layers nor full_attn_layers");

    bool any_dense = false, any_moe = false;
    for (int64_t layer = 0; layer < num_hidden_layers; ++layer)
        (is_moe_layer(layer) ? any_moe : any_dense) = true;
    if (any_dense) positive("intermediate_size", intermediate_size, limits::kWidth);
    if (any_moe) {
        positive("num_experts_per_token", num_experts_per_token, limits::kExperts);
        positive("moe_intermediate_size", moe_intermediate_size, limits::kWidth);
        if (num_experts_per_token > num_experts)
            bad("num_experts_per_token", std::to_string(num_experts_per_token) +
                                             " exceeds num_experts " + std::to_string(num_experts));
        in_range("num_shared_experts", num_shared_experts, 0, limits::kExperts);
        in_float_range("routed_scaling_factor", routed_scaling_factor, limits::kRoutedScaling);
        if (use_grouped_topk) {
            positive("num_expert_group", num_expert_group, limits::kExperts);
            if (num_experts % num_expert_group != 0)
                bad("num_expert_group", "num_experts " + std::to_string(num_experts) +
                                            " is not divisible by " +
                                            std::to_string(num_expert_group));
            if (topk_group < 1 || topk_group > num_expert_group)
                bad("topk_group", std::to_string(topk_group) + " is outside 1..num_expert_group " +
                                      std::to_string(num_expert_group));
            if (topk_group * (num_experts / num_expert_group) < num_experts_per_token)
                bad("topk_group",
                    "the kept groups hold " +
                        std::to_string(topk_group * (num_experts / num_expert_group)) +
                        " experts, fewer than num_experts_per_token " +
                        std::to_string(num_experts_per_token));
        }
    }
    // A session's fixed state, computed in 128 bits: each factor is limited above, their
    // product over the layers is not.
    const unsigned __int128 recurrent_bytes =
        static_cast<unsigned __int128>(n_kda_layers()) *
        (static_cast<unsigned __int128>(kda_num_heads) * kda_head_dim * kda_head_dim +
         static_cast<unsigned __int128>(3) * (short_conv_kernel_size - 1) * kda_num_heads *
             kda_head_dim) *
        sizeof(float);
    if (recurrent_bytes > limits::kRecurrentStateBytes)
        bad("linear_attn_config", "the recurrent state of the KDA layers would exceed " +
                                      std::to_string(limits::kRecurrentStateBytes) +
                                      " bytes per session");
}

std::string ModelConfig::to_json() const {
    json j;
    j["architectures"] = {"KimiLinearForCausalLM"};
    j["model_type"] = "kimi_linear";
    j["hidden_size"] = hidden_size;
    j["num_hidden_layers"] = num_hidden_layers;
    j["vocab_size"] = vocab_size;
    j["intermediate_size"] = intermediate_size;
    j["rms_norm_eps"] = shortest_decimal(rms_norm_eps);
    j["num_attention_heads"] = num_attention_heads;
    j["kv_lora_rank"] = kv_lora_rank;
    j["q_lora_rank"] = nullptr;
    j["qk_nope_head_dim"] = qk_nope_head_dim;
    j["qk_rope_head_dim"] = qk_rope_head_dim;
    j["v_head_dim"] = v_head_dim;
    j["mla_use_nope"] = true;
    j["linear_attn_config"] = {{"num_heads", kda_num_heads},
                               {"head_dim", kda_head_dim},
                               {"short_conv_kernel_size", short_conv_kernel_size},
                               {"kda_layers", kda_layers},
                               {"full_attn_layers", full_attn_layers}};
    j["num_experts"] = num_experts;
    j["num_experts_per_token"] = num_experts_per_token;
    j["num_shared_experts"] = num_shared_experts;
    j["moe_intermediate_size"] = moe_intermediate_size;
    j["moe_router_activation_func"] = "sigmoid";
    j["moe_renormalize"] = moe_renormalize;
    j["routed_scaling_factor"] = shortest_decimal(routed_scaling_factor);
    j["use_grouped_topk"] = use_grouped_topk;
    j["num_expert_group"] = num_expert_group;
    j["topk_group"] = topk_group;
    j["first_k_dense_replace"] = first_k_dense_replace;
    j["moe_layer_freq"] = moe_layer_freq;
    j["tie_word_embeddings"] = tie_word_embeddings;
    j["model_max_length"] = max_context;
    return j.dump(2) + "\n";
}

bool ModelConfig::is_kda_layer(int64_t layer) const {
    return std::find(kda_layers.begin(), kda_layers.end(), layer + 1) != kda_layers.end();
}

bool ModelConfig::is_moe_layer(int64_t layer) const {
    return num_experts > 0 && layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
}

int64_t ModelConfig::n_kda_layers() const {
    return static_cast<int64_t>(kda_layers.size());
}
int64_t ModelConfig::n_mla_layers() const {
    return static_cast<int64_t>(full_attn_layers.size());
}

}  // namespace kl
