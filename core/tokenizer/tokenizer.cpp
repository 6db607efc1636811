#include "tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "core/error.h"
#include "core/input_file.h"
#include "core/json_input.h"
#include "core/limits.h"
#include "core/message_text.h"
#include "pretokenizer.h"
#include "utf8.h"

namespace kl {
namespace {

// bos_token / eos_token: a string, or an AddedToken object {"content": ...}, or null.
std::string token_content(const nlohmann::json& value) {
    if (value.is_string()) return value.get<std::string>();
    if (value.is_object() && value.contains("content") && value["content"].is_string())
        return value["content"].get<std::string>();
    return "";
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& dir, int64_t vocab_size) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path model_file = fs::path(dir) / "tiktoken.model";
    if (!fs::exists(model_file, ec)) return nullptr;
    const fs::path config_file = fs::path(dir) / "tokenizer_config.json";
    const std::string config =
        fs::exists(config_file, ec)
            ? read_input_file(config_file.string(), limits::kTokenizerConfigFileBytes)
            : std::string();
    return from_text(read_input_file(model_file.string(), limits::kTiktokenFileBytes), config,
                     vocab_size, dir);
}

std::unique_ptr<Tokenizer> Tokenizer::from_text(std::string_view tiktoken_model,
                                                std::string_view config_json, int64_t vocab_size,
                                                const std::string& source) {
    auto t = std::unique_ptr<Tokenizer>(new Tokenizer());
    t->bpe_ = BpeVocabulary::parse(tiktoken_model, source + "/tiktoken.model");
    const int64_t n_bpe = static_cast<int64_t>(t->bpe_.size());
    if (n_bpe > vocab_size)
        fail(Status::Format, source + "/tiktoken.model has " + std::to_string(n_bpe) +
                                 " tokens, more than the model's vocab_size " +
                                 std::to_string(vocab_size));
    std::string chat_template;
    if (!config_json.empty()) {
        const std::string where = source + "/tokenizer_config.json";
        const nlohmann::json config = parse_json(config_json, where);
        if (!config.is_object()) fail(Status::Format, where + " is not a JSON object");
        const auto added = config.find("added_tokens_decoder");
        if (added != config.end()) {
            if (!added->is_object())
                fail(Status::Format, where + ": added_tokens_decoder is not an object");
            for (const auto& [key, value] : added->items()) {
                const std::string entry = where + ": added_tokens_decoder[\"" + key + "\"]";
                char* end = nullptr;
                const long long id = std::strtoll(key.c_str(), &end, 10);
                if (key.empty() || *end != '\0' || id < n_bpe || id >= vocab_size)
                    fail(Status::Format, entry + ": the id must be a whole number in " +
                                             std::to_string(n_bpe) + ".." +
                                             std::to_string(vocab_size - 1) +
                                             " (above the BPE ranks, below vocab_size)");
                const std::string content = token_content(value);
                if (content.empty())
                    fail(Status::Format, entry + " has no content text");
                t->specials_.push_back({content, static_cast<int32_t>(id)});
            }
        }
        const auto template_it = config.find("chat_template");
        if (template_it != config.end() && template_it->is_string())
            chat_template = template_it->get<std::string>();
        for (const char* key : {"bos_token", "eos_token"}) {
            const auto it = config.find(key);
            if (it == config.end() || it->is_null()) continue;
            const std::string content = token_content(*it);
            int32_t id = -1;
            for (const Special& s : t->specials_)
                if (s.content == content) id = s.id;
            if (id < 0)
                fail(Status::Format, where + ": " + key + " \"" + content +
                                         "\" is not one of the added tokens");
            (std::string(key) == "bos_token" ? t->bos_ : t->eos_) = id;
        }
    }
    // Longest first, so that the leftmost match is also the longest one there.
    std::sort(t->specials_.begin(), t->specials_.end(), [](const Special& a, const Special& b) {
        return a.content.size() != b.content.size() ? a.content.size() > b.content.size()
                                                    : a.id < b.id;
    });
    int32_t max_id = static_cast<int32_t>(n_bpe) - 1;
    for (const Special& s : t->specials_) max_id = std::max(max_id, s.id);
    t->special_index_.assign(static_cast<size_t>(max_id + 1 - n_bpe), -1);
    for (size_t i = 0; i < t->specials_.size(); ++i) {
        const Special& s = t->specials_[i];
        int32_t& slot = t->special_index_[static_cast<size_t>(s.id - n_bpe)];
        if (slot >= 0)
            fail(Status::Format, source + "/tokenizer_config.json names id " +
                                     std::to_string(s.id) + " twice");
        if (!t->special_by_content_.emplace(s.content, static_cast<int32_t>(i)).second)
            fail(Status::Format, source + "/tokenizer_config.json: \"" + excerpt(s.content) +
                                     "\" is the text of two added tokens");
        slot = static_cast<int32_t>(i);
        t->special_first_byte_[static_cast<unsigned char>(s.content[0])] = true;
        if (t->special_lengths_.empty() || t->special_lengths_.back() != s.content.size())
            t->special_lengths_.push_back(s.content.size());  // specials_ is longest first
    }
    const bool has_chat_tokens = t->special_id("<|im_system|>") >= 0 &&
                                 t->special_id("<|im_user|>") >= 0 &&
                                 t->special_id("<|im_assistant|>") >= 0 &&
                                 t->special_id("<|im_middle|>") >= 0 &&
                                 t->special_id("<|im_end|>") >= 0;
    t->chat_ = ChatFormat::from(has_chat_tokens, chat_template);
    return t;
}

int32_t Tokenizer::special_id(std::string_view content) const {
    const auto it = special_by_content_.find(content);
    return it == special_by_content_.end() ? -1 : specials_[static_cast<size_t>(it->second)].id;
}

const Tokenizer::Special* Tokenizer::find_special(std::string_view text, size_t pos,
                                                  size_t* at) const {
    if (specials_.empty()) return nullptr;
    // One hash lookup per distinct length (longest first) where an added token may start:
    // the cost of a position does not grow with the number of added tokens (Kimi has 256
    // reserved ones, a model may name one for every id of its vocabulary).
    for (size_t i = pos; i < text.size(); ++i) {
        if (!special_first_byte_[static_cast<unsigned char>(text[i])]) continue;
        for (const size_t length : special_lengths_) {
            if (length > text.size() - i) continue;
            const auto it = special_by_content_.find(text.substr(i, length));
            if (it != special_by_content_.end()) {
                *at = i;
                return &specials_[static_cast<size_t>(it->second)];
            }
        }
    }
    return nullptr;
}

void Tokenizer::encode_ordinary(std::string_view text, std::vector<int32_t>& out) const {
    // Pieces that needed merging, by their text: where their ids first went in `out`.
    std::unordered_map<std::string_view, std::pair<size_t, size_t>> merged;
    for (size_t pos = 0; pos < text.size();) {
        const size_t end = pretoken_end(text, pos);
        const std::string_view piece = text.substr(pos, end - pos);
        pos = end;
        if (piece.size() == 1) {
            bpe_.encode_piece(piece, out);  // the single-byte table
            continue;
        }
        const int32_t whole = bpe_.rank(piece.data(), piece.size());
        if (whole >= 0) {  // tiktoken's rule: a piece that is a token is that token
            out.push_back(whole);
            continue;
        }
        const auto hit = merged.find(piece);
        if (hit != merged.end()) {
            const auto [begin, count] = hit->second;
            for (size_t k = 0; k < count; ++k) {
                const int32_t id = out[begin + k];
                out.push_back(id);
            }
            continue;
        }
        const size_t begin = out.size();
        bpe_.encode_piece(piece, out);
        merged.emplace(piece, std::make_pair(begin, out.size() - begin));
    }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool parse_special) const {
    std::string sanitized;
    if (!utf8_valid(text)) {
        sanitized = utf8_sanitize(text);
        text = sanitized;
    }
    std::vector<int32_t> out;
    out.reserve(text.size() / 3 + 4);
    size_t pos = 0;
    while (parse_special) {
        size_t at = 0;
        const Special* s = find_special(text, pos, &at);
        if (!s) break;
        encode_ordinary(text.substr(pos, at - pos), out);
        out.push_back(s->id);
        pos = at + s->content.size();
    }
    encode_ordinary(text.substr(pos), out);
    return out;
}

std::string_view Tokenizer::token_bytes(int32_t id) const {
    const int64_t n_bpe = static_cast<int64_t>(bpe_.size());
    if (id >= 0 && id < n_bpe) return bpe_.bytes(id);
    if (id >= n_bpe && id - n_bpe < static_cast<int64_t>(special_index_.size())) {
        const int32_t index = special_index_[static_cast<size_t>(id - n_bpe)];
        if (index >= 0) return specials_[static_cast<size_t>(index)].content;
    }
    fail(Status::InvalidArgument, "token " + std::to_string(id) + " is not in the tokenizer (" +
                                      std::to_string(n_bpe) + " BPE ranks, " +
                                      std::to_string(specials_.size()) + " added tokens)");
}

std::string Tokenizer::decode(const int32_t* ids, size_t n) const {
    std::string bytes;
    for (size_t i = 0; i < n; ++i) bytes.append(token_bytes(ids[i]));
    return utf8_valid(bytes) ? bytes : utf8_sanitize(bytes);
}

}  // namespace kl
