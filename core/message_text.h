// Text from an input (a tensor name, a JSON key or value, a caller's string) quoted in an
// error message, cut to a bounded length: a 15 MB key must not become a 15 MB message
// (core/limits.h; docs/design/capi.md, "Status and messages").
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "limits.h"

namespace kl {

// `text` itself when it has at most max_bytes bytes; otherwise its first max_bytes bytes
// (never half a UTF-8 character) followed by "... (N bytes)".
inline std::string excerpt(std::string_view text, size_t max_bytes = limits::kQuotedTextBytes) {
    if (text.size() <= max_bytes) return std::string(text);
    size_t cut = max_bytes;
    // Back up over UTF-8 continuation bytes (10xxxxxx), at most three (a character's
    // length), so a well-formed character is never split.
    while (cut > 0 && max_bytes - cut < 3 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80)
        --cut;
    return std::string(text.substr(0, cut)) + "... (" + std::to_string(text.size()) + " bytes)";
}

}  // namespace kl
