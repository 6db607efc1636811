#include "bpe_vocabulary.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace kl {
namespace {

uint64_t hash_bytes(const char* p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull * (n + 1);
    while (n >= 8) {
        uint64_t v;
        std::memcpy(&v, p, 8);
        h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        p += 8, n -= 8;
    }
    uint64_t v = 0;
    std::memcpy(&v, p, n);
    h = (h ^ v) * 0x94D049BB133111EBull;
    return h ^ (h >> 29);
}

int base64_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

// Standard base64 with padding; false if malformed.
bool base64_decode(std::string_view in, std::string& out) {
    out.clear();
    if (in.size() % 4 != 0) return false;
    for (size_t i = 0; i < in.size(); i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; ++k) {
            const char c = in[i + k];
            if (c == '=' && i + 4 == in.size() && k >= 2) {
                v[k] = 0, ++pad;
            } else {
                if (pad) return false;  // data after padding
                v[k] = base64_value(c);
                if (v[k] < 0) return false;
            }
        }
        const uint32_t word = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
        out += static_cast<char>(word >> 16);
        if (pad < 2) out += static_cast<char>((word >> 8) & 0xFF);
        if (pad < 1) out += static_cast<char>(word & 0xFF);
    }
    return true;
}

constexpr uint32_t kNoRank = std::numeric_limits<uint32_t>::max();

}  // namespace

std::string tiktoken_model_text(const std::vector<std::string>& tokens) {
    static const char* alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (size_t rank = 0; rank < tokens.size(); ++rank) {
        const std::string& t = tokens[rank];
        for (size_t i = 0; i < t.size(); i += 3) {
            uint32_t word = static_cast<unsigned char>(t[i]) << 16;
            if (i + 1 < t.size()) word |= static_cast<unsigned char>(t[i + 1]) << 8;
            if (i + 2 < t.size()) word |= static_cast<unsigned char>(t[i + 2]);
            out += alphabet[word >> 18];
            out += alphabet[(word >> 12) & 63];
            out += i + 1 < t.size() ? alphabet[(word >> 6) & 63] : '=';
            out += i + 2 < t.size() ? alphabet[word & 63] : '=';
        }
        out += ' ' + std::to_string(rank) + '\n';
    }
    return out;
}

BpeVocabulary BpeVocabulary::parse(std::string_view text, const std::string& source) {
    BpeVocabulary v;
    v.offsets_.push_back(0);
    std::string bytes;
    size_t line_no = 0;
    for (size_t pos = 0; pos < text.size();) {
        size_t eol = text.find('\n', pos);
        if (eol == std::string_view::npos) eol = text.size();
        std::string_view line = text.substr(pos, eol - pos);
        pos = eol + 1;
        ++line_no;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) continue;
        const size_t space = line.find(' ');
        const std::string where = source + " line " + std::to_string(line_no);
        if (space == std::string_view::npos || !base64_decode(line.substr(0, space), bytes) ||
            bytes.empty())
            fail(Status::Format, where + " is not \"base64(token bytes) rank\"");
        const std::string_view rank_text = line.substr(space + 1);
        const std::string expected = std::to_string(v.size());
        if (rank_text != expected)
            fail(Status::Format, where + " has rank \"" + std::string(rank_text) +
                                     "\", expected " + expected +
                                     " (ranks must be dense from 0, in order)");
        v.add(bytes, source, line_no);
    }
    if (v.size() == 0) fail(Status::Format, source + " holds no tokens");
    v.build_index();
    for (int b = 0; b < 256; ++b) {
        const char c = static_cast<char>(b);
        v.byte_rank_[b] = v.rank(&c, 1);
        if (v.byte_rank_[b] < 0)
            fail(Status::Format, source + " has no token for the single byte " +
                                     std::to_string(b) + ": text holding it could not be encoded");
    }
    return v;
}

void BpeVocabulary::add(std::string_view bytes, const std::string& source, size_t line) {
    if (arena_.size() + bytes.size() > std::numeric_limits<uint32_t>::max() ||
        size() >= static_cast<size_t>(std::numeric_limits<int32_t>::max() - 1))
        fail(Status::Format, source + " line " + std::to_string(line) + ": vocabulary too large");
    arena_.append(bytes);
    max_token_bytes_ = std::max(max_token_bytes_, bytes.size());
    offsets_.push_back(static_cast<uint32_t>(arena_.size()));
}

void BpeVocabulary::build_index() {
    size_t capacity = 16;
    while (capacity < 2 * size()) capacity *= 2;
    slots_.assign(capacity, 0);
    for (size_t r = 0; r < size(); ++r) {
        const std::string_view b = bytes(static_cast<int32_t>(r));
        if (rank(b.data(), b.size()) >= 0)
            fail(Status::Format, "tiktoken.model lists the same token twice (rank " +
                                     std::to_string(r) + ")");
        size_t slot = hash_bytes(b.data(), b.size()) & (capacity - 1);
        while (slots_[slot] != 0) slot = (slot + 1) & (capacity - 1);
        slots_[slot] = static_cast<uint32_t>(r + 1);
    }
}

int32_t BpeVocabulary::rank(const char* p, size_t n) const {
    if (n > max_token_bytes_) return -1;  // also keeps the hash off megabyte pieces
    const size_t mask = slots_.size() - 1;
    for (size_t slot = hash_bytes(p, n) & mask;; slot = (slot + 1) & mask) {
        const uint32_t entry = slots_[slot];
        if (entry == 0) return -1;
        const uint32_t begin = offsets_[entry - 1], end = offsets_[entry];
        if (end - begin == n && std::memcmp(arena_.data() + begin, p, n) == 0)
            return static_cast<int32_t>(entry - 1);
    }
}

void BpeVocabulary::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
    const size_t n = piece.size();
    if (n == 0) return;
    if (n == 1) {
        out.push_back(byte_rank_[static_cast<unsigned char>(piece[0])]);
        return;
    }
    const int32_t whole = rank(piece.data(), n);
    if (whole >= 0) {
        out.push_back(whole);
        return;
    }
    if (n >= std::numeric_limits<uint32_t>::max())  // parts are named by uint32_t offsets
        fail(Status::InvalidArgument, "a pre-token of " + std::to_string(n) +
                                          " bytes: 4 GiB is the most one piece may hold");
    // Below this length rescanning a few parts beats keeping a heap (tools/bench/
    // tokenizer_bench.py: most pre-tokens are words of a few bytes).
    constexpr size_t kScanMaxBytes = 24;
    if (n <= kScanMaxBytes)
        merge_by_scan(piece, out);
    else
        merge_by_heap(piece, out);
}

void BpeVocabulary::merge_by_scan(std::string_view piece, std::vector<int32_t>& out) const {
    const size_t n = piece.size();
    const char* p = piece.data();
    // parts[k] = {start byte, rank of merging part k with part k + 1}; the last is a sentinel.
    struct Part {
        uint32_t start;
        uint32_t rank;
    };
    thread_local std::vector<Part> parts;
    parts.clear();
    auto pair_rank = [&](size_t k) -> uint32_t {  // part k merged with part k + 1
        if (k + 2 >= parts.size()) return kNoRank;
        const int32_t r = rank(p + parts[k].start, parts[k + 2].start - parts[k].start);
        return r < 0 ? kNoRank : static_cast<uint32_t>(r);
    };
    for (size_t i = 0; i <= n; ++i) parts.push_back({static_cast<uint32_t>(i), kNoRank});
    for (size_t k = 0; k + 1 < n; ++k) parts[k].rank = pair_rank(k);
    for (;;) {
        uint32_t best = kNoRank;
        size_t at = 0;
        for (size_t k = 0; k + 1 < parts.size(); ++k)
            if (parts[k].rank < best) best = parts[k].rank, at = k;
        if (best == kNoRank) break;
        parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(at) + 1);
        parts[at].rank = pair_rank(at);
        if (at > 0) parts[at - 1].rank = pair_rank(at - 1);
    }
    for (size_t k = 0; k + 1 < parts.size(); ++k)
        out.push_back(rank(p + parts[k].start, parts[k + 1].start - parts[k].start));
}

// The same merges as merge_by_scan in O(n log n). Parts are a doubly linked list over byte
// offsets (a part is named by its first byte); every adjacent pair that is a token sits in a
// min-heap keyed by (rank, start), so the top is the lowest rank, leftmost on ties: exactly
// the pair tiktoken's scan picks. A merge changes only the pairs on either side of the new
// part; their old heap entries are left behind and recognised as stale when popped (their
// left part is gone or its right neighbour no longer ends where the entry says).
void BpeVocabulary::merge_by_heap(std::string_view piece, std::vector<int32_t>& out) const {
    const char* p = piece.data();
    const uint32_t n = static_cast<uint32_t>(piece.size());
    struct Candidate {
        uint64_t key;  // rank << 32 | start: the order of the heap
        uint32_t end;  // where the pair's right part ends
    };
    const auto later = [](const Candidate& a, const Candidate& b) { return a.key > b.key; };
    constexpr uint32_t kGone = 0;  // next_[s] of a part merged into its left neighbour
    thread_local std::vector<uint32_t> next, prev;
    thread_local std::vector<int32_t> part_rank;
    thread_local std::vector<Candidate> heap;
    next.resize(n + 1);
    prev.resize(n + 1);
    part_rank.resize(n);
    heap.clear();
    for (uint32_t i = 0; i < n; ++i) {
        next[i] = i + 1, prev[i + 1] = i;
        part_rank[i] = byte_rank_[static_cast<unsigned char>(p[i])];
    }
    // Puts the pair (part s, its right neighbour) on the heap if it is a token.
    const auto offer = [&](uint32_t s, bool keep_heap_order) {
        const uint32_t mid = next[s];
        if (mid >= n) return;
        const uint32_t end = next[mid];
        const int32_t r = rank(p + s, end - s);
        if (r < 0) return;
        heap.push_back({static_cast<uint64_t>(r) << 32 | s, end});
        if (keep_heap_order) std::push_heap(heap.begin(), heap.end(), later);
    };
    for (uint32_t i = 0; i + 1 < n; ++i) offer(i, false);
    std::make_heap(heap.begin(), heap.end(), later);  // O(n), not n pushes
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), later);
        const Candidate top = heap.back();
        heap.pop_back();
        const uint32_t s = static_cast<uint32_t>(top.key);
        const uint32_t mid = next[s];
        if (mid == kGone || mid >= n || next[mid] != top.end) continue;  // stale
        // Merge part mid into part s.
        next[s] = top.end;
        prev[top.end] = s;
        next[mid] = kGone;
        part_rank[s] = static_cast<int32_t>(top.key >> 32);
        offer(s, true);
        if (s > 0) offer(prev[s], true);
    }
    for (uint32_t s = 0; s < n; s = next[s]) out.push_back(part_rank[s]);
}

}  // namespace kl
