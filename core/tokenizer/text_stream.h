// Streaming detokenization: token bytes in, whole UTF-8 characters out, and stop strings
// matched on the text across token boundaries.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kl {

// Bytes in, whole characters out. A sequence cut off at the end of what came so far is held
// back until it completes; ill-formed bytes become U+FFFD as soon as they are known to be.
// push(a) + push(b) + finish() gives exactly utf8_sanitize(a + b).
class Utf8Stream {
public:
    // Appends to `out` the whole characters that `bytes` completes.
    void push(std::string_view bytes, std::string& out);
    // Appends U+FFFD for a held incomplete sequence, if any, and empties the stream.
    void finish(std::string& out);
    void clear() { held_.clear(); }

private:
    std::string held_;  // an incomplete, well-formed prefix of one character
};

// Holds back text that may be the start of a stop string; reports the first stop string
// found. Text from the stop string on is never released. Each stop string is matched by a
// Knuth-Morris-Pratt automaton fed every byte once, so a push costs O(bytes x stops) however
// long the stop strings and the text held (a rescan of the held text per push was quadratic
// in a long stop string's length).
class StopStrings {
public:
    explicit StopStrings(std::vector<std::string> stops);
    // Appends the text that is safe to release to `out`; true when a stop string has
    // completed (the text before the earliest-starting one is released, it and anything
    // after are dropped).
    bool push(std::string_view text, std::string& out);
    // Releases whatever is held (generation ended without a stop string).
    void finish(std::string& out);

private:
    struct Stop {
        std::string text;
        std::vector<size_t> fallback;  // KMP: longest proper border of text[0, k + 1)
        size_t matched = 0;            // longest prefix of text that ends the stream so far
    };
    std::vector<Stop> stops_;
    std::string held_;  // not yet released: the longest `matched` bytes of the stream's end
};

}  // namespace kl
