#include "quant_config.h"

#include "error.h"
#include "input_file.h"
#include "json_input.h"
#include "limits.h"

namespace kl {

using nlohmann::json;

namespace {

// Reads keys of one object of quantization_config, naming the full key in messages.
class QuantReader {
public:
    QuantReader(const json& object, std::string origin, std::string prefix)
        : object_(object), origin_(std::move(origin)), prefix_(std::move(prefix)) {}

    [[noreturn]] void error(Status status, const std::string& key, const std::string& what) const {
        fail(status, origin_ + ": " + prefix_ + key + ": " + what);
    }
    const json* find(const std::string& key) const {
        auto it = object_.find(key);
        return it == object_.end() || it->is_null() ? nullptr : &*it;
    }
    const json& need(const std::string& key) const {
        const json* v = find(key);
        if (!v) error(Status::Format, key, "required key is missing");
        return *v;
    }
    const json& object(const std::string& key) const {
        const json& v = need(key);
        if (!v.is_object()) error(Status::Format, key, "expected an object");
        return v;
    }
    // A string key that must be one of the values this runtime reads (Unsupported otherwise).
    void expect_string(const std::string& key, const std::string& wanted, bool required) const {
        const json* v = required ? &need(key) : find(key);
        if (!v) return;
        if (!v->is_string()) error(Status::Format, key, "expected a string");
        if (v->get<std::string>() != wanted)
            error(Status::Unsupported, key,
                  json_excerpt(*v) + " is not supported (only \"" + wanted + "\")");
    }
    void expect_value(const std::string& key, const json& wanted) const {
        const json& v = need(key);
        if (v != wanted)
            error(Status::Unsupported, key,
                  json_excerpt(v) + " is not supported (only " + wanted.dump() + ")");
    }
    std::vector<std::string> names(const std::string& key) const {
        std::vector<std::string> out;
        const json* v = find(key);
        if (!v) return out;
        if (!v->is_array()) error(Status::Format, key, "expected a list of module names");
        for (const json& name : *v) {
            if (!name.is_string()) error(Status::Format, key, "expected a list of module names");
            out.push_back(name.get<std::string>());
        }
        return out;
    }

private:
    const json& object_;
    std::string origin_, prefix_;
};

QuantizationConfig fp8_config(const QuantReader& r) {
    r.expect_string("fmt", "e4m3", false);  // transformers' FineGrainedFP8Config default
    r.expect_string("activation_scheme", "dynamic", false);
    r.expect_value("weight_block_size", json::array({kFp8BlockSize, kFp8BlockSize}));
    return {WeightFormat::Fp8, r.names("modules_to_not_convert")};
}

QuantizationConfig int4_config(const QuantReader& r, const std::string& origin) {
    r.expect_string("format", "pack-quantized", true);
    const json& groups = r.object("config_groups");
    if (groups.size() != 1)
        r.error(Status::Unsupported, "config_groups",
                "exactly one group is supported, got " + std::to_string(groups.size()));
    const std::string group_prefix = "quantization_config.config_groups." + groups.begin().key();
    if (!groups.begin()->is_object())
        fail(Status::Format, origin + ": " + group_prefix + ": expected an object");
    const QuantReader group(*groups.begin(), origin, group_prefix + ".");
    group.expect_value("targets", json::array({"Linear"}));
    group.expect_string("format", "pack-quantized", false);
    if (group.find("input_activations"))
        group.error(Status::Unsupported, "input_activations",
                    "activation quantization is not supported (weight-only W4A16)");
    const QuantReader weights(group.object("weights"), origin, group_prefix + ".weights.");
    weights.expect_value("num_bits", 4);
    weights.expect_string("type", "int", true);
    weights.expect_value("symmetric", true);
    weights.expect_string("strategy", "group", true);
    weights.expect_value("group_size", kInt4GroupSize);
    if (const json* order = weights.find("actorder"))
        if (*order != false)
            weights.error(Status::Unsupported, "actorder",
                          json_excerpt(*order) + " is not supported (no g_idx reordering)");
    return {WeightFormat::Int4, r.names("ignore")};
}

}  // namespace

const char* weight_format_name(WeightFormat format) {
    switch (format) {
        case WeightFormat::Plain:
            return "bf16";
        case WeightFormat::Fp8:
            return "fp8";
        case WeightFormat::Int4:
            return "int4";
    }
    return "?";
}

QuantizationConfig quantization_config_from_json(const json& config, const std::string& origin) {
    if (!config.is_object()) return {};
    auto it = config.find("quantization_config");
    if (it == config.end() || it->is_null()) return {};
    if (!it->is_object())
        fail(Status::Format, origin + ": quantization_config: expected an object");
    const QuantReader r(*it, origin, "quantization_config.");
    const json& method = r.need("quant_method");
    if (!method.is_string()) r.error(Status::Format, "quant_method", "expected a string");
    if (method == "fp8") return fp8_config(r);
    if (method == "compressed-tensors") return int4_config(r, origin);
    r.error(Status::Unsupported, "quant_method",
            json_excerpt(method) + " is not supported (\"fp8\" or \"compressed-tensors\")");
}

QuantizationConfig load_quantization_config(const std::string& dir) {
    const std::string path = dir + "/config.json";
    return quantization_config_from_json(
        parse_json(read_input_file(path, limits::kConfigFileBytes), path), path);
}

json quantization_config_json(WeightFormat format, const std::vector<std::string>& not_converted) {
    if (format == WeightFormat::Fp8)
        return {{"quant_method", "fp8"},
                {"fmt", "e4m3"},
                {"activation_scheme", "dynamic"},
                {"weight_block_size", {kFp8BlockSize, kFp8BlockSize}},
                {"modules_to_not_convert", not_converted}};
    if (format != WeightFormat::Int4)
        fail(Status::InvalidArgument, "a plain checkpoint has no quantization_config");
    const json weights = {{"num_bits", 4},
                          {"type", "int"},
                          {"symmetric", true},
                          {"strategy", "group"},
                          {"group_size", kInt4GroupSize},
                          {"dynamic", false},
                          {"actorder", nullptr},
                          {"observer", "minmax"}};
    return {{"quant_method", "compressed-tensors"},
            {"format", "pack-quantized"},
            {"quantization_status", "compressed"},
            {"config_groups",
             {{"group_0",
               {{"targets", {"Linear"}},
                {"weights", weights},
                {"input_activations", nullptr},
                {"output_activations", nullptr},
                {"format", "pack-quantized"}}}}},
            {"ignore", not_converted}};
}

}  // namespace kl
