#include "json_input.h"

#include "error.h"
#include "limits.h"
#include "message_text.h"

namespace kl {

using nlohmann::json;

json parse_json(std::string_view text, const std::string& origin) {
    // The parser itself keeps its own stack, but reports the depth of each event: stop at
    // the first one past the limit, before the deep value exists.
    const json::parser_callback_t limit_depth = [&origin](int depth, json::parse_event_t, json&) {
        if (depth > limits::kJsonDepth)
            fail(Status::Format, origin + ": JSON nested deeper than " +
                                     std::to_string(limits::kJsonDepth) + " levels");
        return true;
    };
    try {
        return json::parse(text.begin(), text.end(), limit_depth);
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
