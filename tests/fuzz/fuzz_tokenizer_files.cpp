// libFuzzer target: loading a model folder's tokenizer files from arbitrary bytes
// (docs/design/architecture.md "Fuzzing"). Input: one byte choosing vocab_size, then the
// tiktoken.model text, a NUL, the tokenizer_config.json text (Tokenizer::from_text is what
// Tokenizer::load runs on the files' contents). A bad file must be a kl::Error (Format,
// naming the problem), never a crash, a hang or another exception; a tokenizer that loads
// must tokenize, detokenize and render the chat format of a fixed sample.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/tokenizer/chat_format.h"
#include "core/tokenizer/tokenizer.h"
#include "core/tokenizer/utf8.h"

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "fuzz_tokenizer_files: %s\n", what);
        std::abort();
    }
}

void exercise(const kl::Tokenizer& t) {
    const std::string sample =
        "Hello, world! It's 2026: \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80  \n\n<|im_end|>[EOS] x\xFF";
    for (bool parse_special : {false, true}) {
        const std::vector<int32_t> ids = t.encode(sample, parse_special);
        require(t.decode(ids.data(), ids.size()) == kl::utf8_sanitize(sample),
                "decode(encode(sample)) != sample");
    }
    if (t.chat_format().available) {
        const std::vector<kl::ChatMessage> msgs = {{"user", "hi <|im_end|>"}, {"assistant", "yo"}};
        const std::vector<int32_t> ids = kl::encode_chat(t, msgs, true);
        require(t.decode(ids.data(), ids.size()) == kl::utf8_sanitize(t.chat_format().render(msgs, true)),
                "chat ids do not read back as the rendered chat");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    // vocab_size: mostly roomy, sometimes tight enough to reject the files.
    const int64_t vocab_size = data[0] < 200 ? (1 << 17) : 256 + (data[0] - 200) * 4;
    const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    const size_t nul = rest.find('\0');
    const std::string_view model = rest.substr(0, nul);
    const std::string_view config = nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);
    std::unique_ptr<kl::Tokenizer> t;
    try {
        t = kl::Tokenizer::from_text(model, config, vocab_size, "fuzz");
    } catch (const kl::Error& e) {
        require(e.status() == kl::Status::Format, "a bad file that is not a Format error");
        return 0;
    }
    exercise(*t);
    return 0;
}
