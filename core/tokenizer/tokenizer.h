// The model's tokenizer: tiktoken BPE (tiktoken.model) plus the added tokens and chat format
// of tokenizer_config.json, read from the model folder. Immutable after load; thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "bpe_vocabulary.h"
#include "chat_format.h"

namespace kl {

class Tokenizer {
public:
    Tokenizer(const Tokenizer&) = delete;  // special_by_content_ points into specials_
    Tokenizer& operator=(const Tokenizer&) = delete;

    // The tokenizer of model folder `dir`, or null when it has no tiktoken.model. Every id
    // must be below vocab_size (the model's embedding rows). The files are read like
    // config.json (core/input_file.h: regular files only, each within its cap) and
    // tokenizer_config.json is parsed with the nesting limit (core/json_input.h).
    static std::unique_ptr<Tokenizer> load(const std::string& dir, int64_t vocab_size);
    // From file contents (tests, make_tiny_model); config_json may be empty.
    static std::unique_ptr<Tokenizer> from_text(std::string_view tiktoken_model,
                                                std::string_view config_json,
                                                int64_t vocab_size, const std::string& source);

    // Token ids of text (any bytes: ill-formed UTF-8 is read as U+FFFD). With parse_special
    // the text of an added token becomes its id; without, it is plain text.
    std::vector<int32_t> encode(std::string_view text, bool parse_special) const;
    // The bytes of a token (an added token's content text). InvalidArgument for unknown ids.
    std::string_view token_bytes(int32_t id) const;
    // The text of tokens: their bytes with ill-formed UTF-8 replaced by U+FFFD.
    std::string decode(const int32_t* ids, size_t n) const;

    int32_t bos_token() const { return bos_; }  // -1 when tokenizer_config.json names none
    int32_t eos_token() const { return eos_; }
    // The id of an added token by its content, or -1.
    int32_t special_id(std::string_view content) const;
    const ChatFormat& chat_format() const { return chat_; }
    size_t bpe_size() const { return bpe_.size(); }

private:
    Tokenizer() = default;
    struct Special {
        std::string content;
        int32_t id;
    };
    void encode_ordinary(std::string_view text, std::vector<int32_t>& out) const;
    // The leftmost added-token text in text at or after pos (the longest one there).
    const Special* find_special(std::string_view text, size_t pos, size_t* at) const;

    BpeVocabulary bpe_;
    std::vector<Special> specials_;       // longest content first; never changed after load
    std::vector<int32_t> special_index_;  // id - bpe_.size() -> index in specials_, or -1
    // content -> index in specials_ (the views point into specials_), and the distinct
    // content lengths, longest first.
    std::unordered_map<std::string_view, int32_t> special_by_content_;
    std::vector<size_t> special_lengths_;
    bool special_first_byte_[256] = {};
    int32_t bos_ = -1, eos_ = -1;
    ChatFormat chat_;
};

}  // namespace kl
