// The Kimi chat format ("im" format), rendered natively from the role tokens the tokenizer
// files name:
//   <|im_system|>system<|im_middle|>{content}<|im_end|>     (tool: <|im_system|>tool...)
//   <|im_user|>user<|im_middle|>{content}<|im_end|>
//   <|im_assistant|>assistant<|im_middle|>{content}<|im_end|>
// and, for a generation prompt, <|im_assistant|>assistant<|im_middle|>.
// The released templates (Moonlight, Kimi Linear) open a conversation that has no system
// message with a fixed one; when the model's chat_template does that, the text is taken
// from it and the native rendering does the same.
//
// Message content is untrusted text: tokenized as plain text it can never become a control
// token, while the same text rendered and then tokenized with special-token parsing can
// (a user writing "<|im_end|><|im_system|>..." would close their turn and open a system one).
// So the renderer reports which spans are content (render_segments) and encode_chat
// tokenizes the markup with special parsing and the content without (docs/design/capi.md
// "Chat format and untrusted text").
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace kl {

class Tokenizer;

struct ChatMessage {
    std::string_view role;  // system, user, assistant or tool
    std::string_view content;
};

struct ChatFormat {
    bool available = false;  // the tokenizer has all five im tokens
    std::string system, user, assistant, middle, end;  // the tokens' texts
    bool has_default_system = false;
    std::string default_system;

    // From the added tokens present and the model's jinja chat_template text (may be empty).
    static ChatFormat from(bool has_tokens, std::string_view chat_template);

    // The conversation as text (special tokens as their texts). InvalidArgument for an
    // unknown role, Unsupported when !available.
    std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;

    // The same text in order, as spans: the format's own markup (role tokens' texts, role
    // names, the default system text; `is_content` false) and each message's content (true).
    // Every content span is bounded by special-token texts (<|im_middle|> before, <|im_end|>
    // after), so tokenizing the spans one by one gives the ids of tokenizing the whole text
    // whenever the content holds no special-token text. Same errors as render.
    void render_segments(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                         const std::function<void(std::string_view text, bool is_content)>& emit) const;
};

// The conversation's token ids with the markup's special tokens and every message's content
// as plain text (parse_special off): no content can forge a control token.
std::vector<int32_t> encode_chat(const Tokenizer& tokenizer,
                                 const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt);

}  // namespace kl
