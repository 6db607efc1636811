// kimi's command line once parsed: the command, its folders and each --option's text, read as
// the type the option needs; a malformed value is a UsageError naming the option (exit 2).
#pragma once

#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace kimi {

struct UsageError {
    std::string message;
};

// strtod and strtol skip leading white space and take a '+': a value given as " 5" or "+5"
// is malformed all the same (a stray quote or sign in a script), so it must not get that far.
inline bool starts_as_number(const std::string& text) {
    return !text.empty() && !std::isspace(static_cast<unsigned char>(text[0])) && text[0] != '+';
}

struct Options {
    std::string command, dir, out_dir;
    std::map<std::string, std::string> values;

    bool has(const std::string& key) const { return values.count(key) != 0; }
    std::string get(const std::string& key, const std::string& fallback) const {
        auto it = values.find(key);
        return it == values.end() ? fallback : it->second;
    }
    // A real number in decimal ("0.5", "-1", "2e3"): strtod's nan, inf and hexadecimal
    // forms are malformed here, as its leading space and '+'.
    double number(const std::string& key, double fallback) const {
        if (!has(key)) return fallback;
        const std::string& text = values.at(key);
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (!starts_as_number(text) || end == text.c_str() || *end != '\0' ||
            text.find_first_of("xXnNiI") != std::string::npos)
            throw UsageError{"--" + key + " needs a number, got \"" + text + "\""};
        return v;
    }
    // A whole number in [lo, hi], in decimal digits (a '-' first only where lo < 0): a count
    // given as -1 or 1.5 is an error, not a huge or truncated count.
    int64_t integer(const std::string& key, int64_t fallback, int64_t lo, int64_t hi) const {
        if (!has(key)) return fallback;
        const std::string& text = values.at(key);
        char* end = nullptr;
        errno = 0;
        const long long v = std::strtoll(text.c_str(), &end, 10);
        if (!starts_as_number(text) || end == text.c_str() || *end != '\0' || errno == ERANGE ||
            v < lo || v > hi)
            throw UsageError{"--" + key + " needs a whole number from " + std::to_string(lo) +
                             " to " + std::to_string(hi) + ", got \"" + text + "\""};
        return v;
    }
    // A seed: any 64-bit unsigned value, in decimal digits.
    uint64_t seed(const std::string& key) const {
        if (!has(key)) return 0;
        const std::string& text = values.at(key);
        char* end = nullptr;
        errno = 0;
        const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
        if (!starts_as_number(text) || text[0] == '-' || end == text.c_str() || *end != '\0' ||
            errno == ERANGE)
            throw UsageError{"--" + key + " needs a whole number from 0 to 2^64-1, got \"" + text +
                             "\""};
        return v;
    }
    // A list given or defaulted: its comma-separated entries, each an integer (an empty one
    // too is an error: "0,1," or "1,,2", and a given "" has one); not given and no default: {}.
    std::vector<int32_t> ints(const std::string& key, const std::string& fallback) const {
        std::vector<int32_t> out;
        if (!has(key) && fallback.empty()) return out;
        const std::string text = get(key, fallback);
        for (size_t pos = 0;;) {
            size_t comma = text.find(',', pos);
            if (comma == std::string::npos) comma = text.size();
            const std::string item = text.substr(pos, comma - pos);
            char* end = nullptr;
            errno = 0;
            const long v = std::strtol(item.c_str(), &end, 10);
            if (item.empty() || !starts_as_number(item) || *end != '\0' || errno == ERANGE ||
                v < INT32_MIN || v > INT32_MAX)
                throw UsageError{"--" + key + " needs comma-separated integers, got \"" + text +
                                 "\"" + (item.empty() ? " (an empty entry)" : "")};
            out.push_back(static_cast<int32_t>(v));
            if (comma == text.size()) return out;
            pos = comma + 1;
        }
    }
};

}  // namespace kimi
