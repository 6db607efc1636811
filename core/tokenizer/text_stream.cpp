#include "text_stream.h"

#include <algorithm>

#include "utf8.h"

namespace kl {

void Utf8Stream::push(std::string_view bytes, std::string& out) {
    held_.append(bytes);
    const auto* s = reinterpret_cast<const unsigned char*>(held_.data());
    const size_t n = held_.size();
    size_t i = 0;
    while (i < n) {
        const Utf8Step step = utf8_read(s, n, i);
        if (step.kind == Utf8Read::Truncated) break;
        if (step.kind == Utf8Read::Char)
            out.append(held_, i, step.length);
        else
            out += kReplacementChar;
        i += step.length;
    }
    held_.erase(0, i);
}

void Utf8Stream::finish(std::string& out) {
    if (!held_.empty()) out += kReplacementChar;
    held_.clear();
}

StopStrings::StopStrings(std::vector<std::string> stops) {
    for (std::string& text : stops) {
        Stop stop;
        stop.text = std::move(text);
        const std::string& t = stop.text;
        stop.fallback.assign(t.size(), 0);
        for (size_t k = 1, border = 0; k < t.size(); ++k) {
            while (border > 0 && t[k] != t[border]) border = stop.fallback[border - 1];
            if (t[k] == t[border]) ++border;
            stop.fallback[k] = border;
        }
        stops_.push_back(std::move(stop));
    }
}

bool StopStrings::push(std::string_view text, std::string& out) {
    const size_t base = held_.size();
    held_.append(text);
    // The earliest start, in held_, of a stop string that ends in `text`. None can end in the
    // held part (that push would have stopped) or start before it (held_ is as long as the
    // longest partial match).
    size_t first = std::string::npos;
    for (Stop& stop : stops_) {
        if (stop.text.empty()) {
            first = 0;
            continue;
        }
        size_t m = stop.matched;
        for (size_t j = 0; j < text.size(); ++j) {
            while (m > 0 && text[j] != stop.text[m]) m = stop.fallback[m - 1];
            if (text[j] == stop.text[m]) ++m;
            if (m == stop.text.size()) {
                first = std::min(first, base + j + 1 - m);
                break;  // a later match of the same stop starts later
            }
        }
        stop.matched = m;
    }
    if (first != std::string::npos) {
        out.append(held_, 0, first);
        held_.clear();
        for (Stop& stop : stops_) stop.matched = 0;
        return true;
    }
    size_t keep = 0;
    for (const Stop& stop : stops_) keep = std::max(keep, stop.matched);
    out.append(held_, 0, held_.size() - keep);
    held_.erase(0, held_.size() - keep);
    return false;
}

void StopStrings::finish(std::string& out) {
    out += held_;
    held_.clear();
    for (Stop& stop : stops_) stop.matched = 0;
}

}  // namespace kl
