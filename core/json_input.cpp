#include "json_input.h"

#include "error.h"
#include "limits.h"
#include "message_text.h"

namespace kl {

using nlohmann::json;

namespace {

// Format when `text` nests deeper than limits::kJsonDepth. One pass, before parsing: over any
// prefix the parser accepts, this depth is the parser's (strings and their escapes are
// skipped the same way), so nothing deeper is ever built. (nlohmann's callback parser
// reports depths too, but its end_object walks the parent's members each time: quadratic
// in an object's size, minutes for a 30 MB tokenizer_config.json.)
void check_depth(std::string_view text, const std::string& origin) {
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (c == '\\') ++i;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > limits::kJsonDepth)
                fail(Status::Format, origin + ": JSON nested deeper than " +
                                         std::to_string(limits::kJsonDepth) + " levels");
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
}

}  // namespace

json parse_json(std::string_view text, const std::string& origin) {
    check_depth(text, origin);
    try {
        return json::parse(text.begin(), text.end());
    } catch (const json::exception& e) {
        // nlohmann's message quotes the token it stopped at, which may be the whole input.
        fail(Status::Format, origin + ": not valid JSON: " + excerpt(e.what(), 240));
    }
}

namespace {

// Appends value's JSON text to out until out holds about `budget` bytes; shallow (nested
// containers past two levels are "[...]" / "{...}").
void append_excerpt(const json& value, std::string& out, size_t budget, int depth) {
    if (out.size() >= budget) return;
    if (value.is_string()) {
        const std::string& text = value.get_ref<const std::string&>();
        const std::string quoted = excerpt(text, budget - out.size());
        out += json(quoted).dump(-1, ' ', false, json::error_handler_t::replace);
        return;
    }
    if (!value.is_structured()) {  // numbers, booleans, null: short
        out += value.dump(-1, ' ', false, json::error_handler_t::replace);
        return;
    }
    const bool array = value.is_array();
    if (depth >= 2 && !value.empty()) {
        out += array ? "[...]" : "{...}";
        return;
    }
    out += array ? '[' : '{';
    bool first = true;
    for (auto it = value.begin(); it != value.end(); ++it) {
        if (out.size() >= budget) {
            out += ",...";
            break;
        }
        if (!first) out += ',';
        first = false;
        if (!array)
            out +=
                json(excerpt(it.key(), 32)).dump(-1, ' ', false, json::error_handler_t::replace) +
                ":";
        append_excerpt(it.value(), out, budget, depth + 1);
    }
    out += array ? ']' : '}';
}

}  // namespace

std::string json_excerpt(const json& value) {
    std::string out;
    append_excerpt(value, out, limits::kQuotedTextBytes, 0);
    return out;
}

}  // namespace kl
