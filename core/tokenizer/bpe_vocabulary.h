// The byte-level BPE vocabulary of a tiktoken file (token bytes -> rank) and tiktoken's
// merge rule: over a piece's bytes, repeatedly merge the adjacent pair whose concatenation
// has the lowest rank (the leftmost on ties) until no adjacent pair is in the vocabulary.
// A piece is merged in O(n log n) (a heap of candidate merges over a linked list of parts,
// docs/design/architecture.md "Tokenizer"): a pre-token can be megabytes of one letter.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kl {

// The tiktoken.model text of token byte strings in rank order: "base64(bytes) rank" per line.
std::string tiktoken_model_text(const std::vector<std::string>& tokens);

class BpeVocabulary {
public:
    // Parses tiktoken.model text: one "base64(bytes) rank" per line, ranks dense from 0, every
    // single byte present (else some text could not be encoded). `source` names the file in
    // error messages.
    static BpeVocabulary parse(std::string_view text, const std::string& source);

    size_t size() const { return offsets_.size() - 1; }
    // The rank of these bytes, or -1.
    int32_t rank(const char* bytes, size_t n) const;
    // The length of the longest token; no longer span can have a rank.
    size_t max_token_bytes() const { return max_token_bytes_; }
    std::string_view bytes(int32_t rank) const {
        return std::string_view(arena_).substr(offsets_[rank], offsets_[rank + 1] - offsets_[rank]);
    }
    // Appends the ranks of one pre-token (tiktoken's byte_pair_encode, including its rule
    // that a piece which is itself in the vocabulary is one token).
    void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;

private:
    void add(std::string_view bytes, const std::string& source, size_t line);
    void build_index();
    // encode_piece for short pieces: rescan for the best pair after each merge, O(n^2) but
    // with no heap; for long ones, the heap. Both give tiktoken's ranks.
    void merge_by_scan(std::string_view piece, std::vector<int32_t>& out) const;
    void merge_by_heap(std::string_view piece, std::vector<int32_t>& out) const;

    std::string arena_;              // all token bytes, rank after rank
    std::vector<uint32_t> offsets_;  // rank r is arena_[offsets_[r], offsets_[r + 1])
    std::vector<uint32_t> slots_;    // open addressing: rank + 1, 0 = empty
    int32_t byte_rank_[256];
    size_t max_token_bytes_ = 0;
};

}  // namespace kl
