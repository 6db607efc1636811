// libFuzzer target: the tokenizer on arbitrary text (docs/design/architecture.md "Fuzzing").
// A model folder with a trained tokenizer (make_tiny_model --preset small) is made once at
// startup. Input: one flags byte, then text. Checked on every input:
//  - kl_tokenize with and without special parsing never fails, and detokenize gives back the
//    text (ill-formed UTF-8 read as U+FFFD, as the header says);
//  - the streaming decoder (Utf8Stream) over the token bytes one by one equals the whole
//    decoding, and StopStrings with a stop string cut from the text releases exactly the
//    text before its first occurrence;
//  - kl_chat_tokenize over the text split into messages: its ids read back as
//    kl_chat_template_apply's text, and they hold exactly the special tokens of the same
//    conversation with empty contents (content never becomes a control token).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

#include "core/tokenizer/text_stream.h"
#include "core/tokenizer/tokenizer.h"
#include "core/tokenizer/utf8.h"
#include "kimi_linear.h"

namespace {

kl_model* g_model = nullptr;
std::unique_ptr<kl::Tokenizer> g_tokenizer;  // the same files, for token bytes and streaming
int32_t g_first_special = 0;                 // ids at or above this are added tokens

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "fuzz_tokenize: %s (%s)\n", what, kl_last_error());
        std::abort();
    }
}

std::vector<int32_t> tokenize(const std::string& text, int parse_special) {
    size_t n = 0;
    std::vector<int32_t> ids(text.size() * 3 + 1);  // the header's bound: one call
    require(kl_tokenize(g_model, text.data(), text.size(), parse_special, ids.data(), ids.size(),
                        &n) == KL_OK,
            "kl_tokenize failed");
    ids.resize(n);
    return ids;
}

std::string detokenize(const std::vector<int32_t>& ids) {
    size_t len = 0;
    kl_detokenize(g_model, ids.data(), ids.size(), nullptr, 0, &len);
    std::string text(len + 1, '\0');
    require(kl_detokenize(g_model, ids.data(), ids.size(), text.data(), text.size(), &len) == KL_OK,
            "kl_detokenize failed");
    text.resize(len);
    return text;
}

size_t count_specials(const std::vector<int32_t>& ids) {
    size_t n = 0;
    for (int32_t id : ids) n += id >= g_first_special;
    return n;
}

void check_chat(const std::string& text, uint8_t flags) {
    static const char* roles[] = {"user", "assistant", "system", "tool"};
    // Messages: the text split at NUL and 0x01 bytes; each one's role from the flags.
    std::vector<std::string> contents(1);
    for (char c : text) {
        if (c == '\0' || c == '\x01')
            contents.emplace_back();
        else
            contents.back() += c;
    }
    std::vector<kl_chat_message> msgs, empty;
    for (size_t i = 0; i < contents.size(); ++i) {
        const char* role = roles[(flags >> (2 * (i % 3))) & 3];
        msgs.push_back({role, contents[i].c_str()});
        empty.push_back({role, ""});
    }
    const int agp = flags & 0x40 ? 1 : 0;
    auto chat_ids = [&](const std::vector<kl_chat_message>& m) {
        size_t n = 0;
        kl_chat_tokenize(g_model, m.data(), m.size(), agp, nullptr, 0, &n);
        std::vector<int32_t> ids(n);
        require(kl_chat_tokenize(g_model, m.data(), m.size(), agp, ids.data(), n, &n) == KL_OK,
                "kl_chat_tokenize failed");
        return ids;
    };
    const std::vector<int32_t> ids = chat_ids(msgs);
    size_t len = 0;
    kl_chat_template_apply(g_model, msgs.data(), msgs.size(), agp, nullptr, 0, &len);
    std::string rendered(len + 1, '\0');
    require(kl_chat_template_apply(g_model, msgs.data(), msgs.size(), agp, rendered.data(),
                                   rendered.size(), &len) == KL_OK,
            "kl_chat_template_apply failed");
    rendered.resize(len);
    require(detokenize(ids) == kl::utf8_sanitize(rendered), "chat ids do not read back as the template text");
    require(count_specials(ids) == count_specials(chat_ids(empty)),
            "message content became a special token");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const std::string dir = (std::filesystem::temp_directory_path() /
                             ("kl_fuzz_tokenize_" + std::to_string(getpid())))
                                .string();
    const std::string command =
        std::string(KL_MAKE_TINY_MODEL) + " " + dir + " --preset small --seed 7 > /dev/null";
    if (std::system(command.c_str()) != 0) {
        std::fprintf(stderr, "fuzz_tokenize: %s failed\n", command.c_str());
        std::abort();
    }
    require(kl_model_load(dir.c_str(), nullptr, &g_model) == KL_OK, "kl_model_load failed");
    g_tokenizer = kl::Tokenizer::load(dir, 1 << 20);
    g_first_special = static_cast<int32_t>(g_tokenizer->bpe_size());
    std::filesystem::remove_all(dir);  // everything is in memory now
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const uint8_t flags = data[0];
    const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
    const std::string sanitized = kl::utf8_sanitize(text);

    for (int parse_special : {0, 1}) {
        const std::vector<int32_t> ids = tokenize(text, parse_special);
        require(ids.size() <= 3 * text.size(), "more ids than the header's bound");
        require(detokenize(ids) == sanitized, "detokenize(tokenize(text)) != text");
        if (!parse_special) require(count_specials(ids) == 0, "a special id without parse_special");
        if (parse_special != (flags & 1)) continue;

        // Streaming: the token bytes one by one through Utf8Stream and StopStrings.
        const size_t cut = flags >> 1;  // a stop string cut from the text
        const std::string stop = sanitized.substr(sanitized.size() / 2, cut % 7 + 1);
        kl::Utf8Stream stream;
        kl::StopStrings stops(stop.empty() ? std::vector<std::string>{} : std::vector<std::string>{stop});
        std::string decoded, released, piece;
        bool stopped = false;
        for (int32_t id : ids) {
            piece.clear();
            stream.push(g_tokenizer->token_bytes(id), piece);
            decoded += piece;
            if (!stopped) stopped = stops.push(piece, released);
        }
        piece.clear();
        stream.finish(piece);
        decoded += piece;
        if (!stopped) stopped = stops.push(piece, released);
        if (!stopped) stops.finish(released);
        require(decoded == sanitized, "Utf8Stream over the tokens != the whole decoding");
        const size_t first = stop.empty() ? std::string::npos : sanitized.find(stop);
        require(released == sanitized.substr(0, first), "StopStrings released the wrong text");
        require(stopped == (first != std::string::npos), "StopStrings missed or invented a stop");
    }
    check_chat(text, flags);
    return 0;
}
