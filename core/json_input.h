// The one way the library parses JSON from a file or a caller (config.json, a safetensors
// header, model.safetensors.index.json, tokenizer_config.json, kl_model_create_random's
// text) and quotes a JSON value in an error message. Nesting is checked before parsing
// (core/limits.h): nlohmann::json's dump() and copies recurse once per level, so a value
// nested 100,000 deep in a 200 KB file would otherwise overflow the stack.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace kl {

// Parses `text` as one JSON value. Format naming `origin` when it is not valid JSON or
// nests deeper than limits::kJsonDepth.
nlohmann::json parse_json(std::string_view text, const std::string& origin);

// `value` as JSON text for a message, at most about limits::kQuotedTextBytes long (long
// strings and containers are cut with "..."); never throws.
std::string json_excerpt(const nlohmann::json& value);

}  // namespace kl
