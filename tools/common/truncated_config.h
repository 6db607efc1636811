// The 48B-A3B shapes at a smaller depth, for benchmarks on one GPU: a config's first `layers`
// layers with the 1-based kda_layers / full_attn_layers lists cut to match. Shared by the
// kimi CLI (bench --layers) and tools/bench/cancel_latency.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace kl_tools {

// std::invalid_argument when layers is outside 1..num_hidden_layers.
inline std::string truncate_layers(const std::string& config_text, int64_t layers) {
    nlohmann::json config = nlohmann::json::parse(config_text);
    if (layers <= 0 || layers > config.at("num_hidden_layers").get<int64_t>())
        throw std::invalid_argument("--layers must be in 1..num_hidden_layers");
    config["num_hidden_layers"] = layers;
    for (const char* list : {"kda_layers", "full_attn_layers"}) {
        nlohmann::json kept = nlohmann::json::array();
        for (const auto& layer : config["linear_attn_config"][list])
            if (layer.get<int64_t>() <= layers) kept.push_back(layer);
        config["linear_attn_config"][list] = kept;
    }
    return config.dump();
}

}  // namespace kl_tools
