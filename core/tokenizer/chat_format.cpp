#include "chat_format.h"

#include "core/error.h"
#include "tokenizer.h"

namespace kl {

ChatFormat ChatFormat::from(bool has_tokens, std::string_view chat_template) {
    ChatFormat f;
    f.available = has_tokens;
    f.system = "<|im_system|>", f.user = "<|im_user|>", f.assistant = "<|im_assistant|>";
    f.middle = "<|im_middle|>", f.end = "<|im_end|>";
    // The released templates say: {%- if loop.first and messages[0]['role'] != 'system' -%}
    // <|im_system|>system<|im_middle|>TEXT<|im_end|>. Take TEXT when it is a literal.
    const bool injects = chat_template.find("messages[0]['role'] != 'system'") != std::string_view::npos ||
                         chat_template.find("messages[0][\"role\"] != \"system\"") != std::string_view::npos;
    const std::string head = f.system + "system" + f.middle;
    const size_t at = chat_template.find(head);
    if (injects && at != std::string_view::npos) {
        const size_t begin = at + head.size();
        const size_t end = chat_template.find(f.end, begin);
        if (end != std::string_view::npos) {
            const std::string_view text = chat_template.substr(begin, end - begin);
            if (text.find("{{") == std::string_view::npos && text.find("{%") == std::string_view::npos &&
                text.find("{#") == std::string_view::npos) {
                f.has_default_system = true;
                f.default_system = std::string(text);
            }
        }
    }
    return f;
}

std::string ChatFormat::render(const std::vector<ChatMessage>& messages,
                               bool add_generation_prompt) const {
    std::string out;
    render_segments(messages, add_generation_prompt,
                    [&](std::string_view text, bool) { out.append(text); });
    return out;
}

void ChatFormat::render_segments(
    const std::vector<ChatMessage>& messages, bool add_generation_prompt,
    const std::function<void(std::string_view text, bool is_content)>& emit) const {
    if (!available)
        fail(Status::Unsupported,
             "this model's tokenizer has no Kimi chat tokens (<|im_system|>, <|im_user|>, "
             "<|im_assistant|>, <|im_middle|>, <|im_end|>)");
    // Roles are checked before anything is emitted, so a failure emits nothing.
    std::vector<const std::string*> openers(messages.size());
    for (size_t i = 0; i < messages.size(); ++i) {
        const ChatMessage& m = messages[i];
        if (m.role == "system" || m.role == "tool")
            openers[i] = &system;
        else if (m.role == "user")
            openers[i] = &user;
        else if (m.role == "assistant")
            openers[i] = &assistant;
        else
            fail(Status::InvalidArgument, "message " + std::to_string(i) + " has role \"" +
                                              std::string(m.role) +
                                              "\": the Kimi chat format knows system, user, "
                                              "assistant and tool");
    }
    std::string markup;
    for (size_t i = 0; i < messages.size(); ++i) {
        const ChatMessage& m = messages[i];
        if (i == 0 && has_default_system && m.role != "system")
            markup.append(system).append("system").append(middle).append(default_system).append(end);
        markup.append(*openers[i]).append(m.role).append(middle);
        emit(markup, false);
        markup.clear();
        emit(m.content, true);
        markup.append(end);
    }
    if (add_generation_prompt) markup.append(assistant).append("assistant").append(middle);
    if (!markup.empty()) emit(markup, false);
}

std::vector<int32_t> encode_chat(const Tokenizer& tokenizer,
                                 const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt) {
    std::vector<int32_t> ids;
    tokenizer.chat_format().render_segments(
        messages, add_generation_prompt, [&](std::string_view text, bool is_content) {
            const std::vector<int32_t> part = tokenizer.encode(text, !is_content);
            ids.insert(ids.end(), part.begin(), part.end());
        });
    return ids;
}

}  // namespace kl
