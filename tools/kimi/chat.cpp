// kimi chat: the interactive conversation.
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "cancel_on_signal.h"
#include "cli.h"

namespace kimi {

// The library's refusal of what one turn asked for, which ends that turn but not the chat: a
// message longer than the context the session has left, a reply that fills it, ids the model
// does not take. The failed call changed nothing (kl_session_append checks the capacity and the
// ids before it runs a layer; kl_session_generate keeps the tokens streamed before its failed
// step), so the conversation goes on as if the refused message had not been typed. Any other
// failure (I/O, the device, memory) ends kimi.
bool refused(kl_status status) {
    return status == KL_ERR_CONTEXT_FULL || status == KL_ERR_INVALID_ARGUMENT;
}

void report_refusal(const char* what, kl_status status, const std::string& why) {
    std::fprintf(stderr, "kimi: %s (%s: %s)\n", what, kl_status_string(status), why.c_str());
    if (status == KL_ERR_CONTEXT_FULL)
        std::fputs("kimi: the context is full: /reset starts a new conversation\n", stderr);
}

// The chat's one command: a line of exactly this starts the conversation over.
constexpr const char* kResetCommand = "/reset";

// The ids a user message appends to the session: the markup opening the user's turn, the
// message, its end and the assistant's opening, as kl_chat_tokenize gives them within the
// whole conversation, but tokenizing this turn only (the conversation again each turn is
// quadratic over a long chat). Exact because every message in the Kimi format is opened by a
// role token and closed by <|im_end|>, added tokens at which kl_tokenize cuts the text, each
// piece tokenized on its own (no merge reaches across one), and kl_chat_tokenize tokenizes
// each content alone: a message's ids do not depend on the messages around it. What does is
// the format's default system message, put before a first message that is not a system one,
// so a first message comes after `system` (the --system message, or none: the default comes
// in), all ids the turn's; a later one after an empty system message, which keeps the default
// out and whose ids are cut off.
std::vector<int32_t> user_turn_ids(const kl_model* model,
                                   const std::vector<kl_chat_message>& system, bool first,
                                   const std::string& message) {
    std::vector<kl_chat_message> messages =
        first ? system : std::vector<kl_chat_message>{{"system", ""}};
    const size_t before = first ? 0 : chat_ids(model, messages, false).size();
    messages.push_back({"user", message.c_str()});
    std::vector<int32_t> ids = chat_ids(model, messages, true);
    ids.erase(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(before));
    return ids;
}

// KIMI_TEST_CHAT_TOKENS=FILE, a test hook: the session's token ids when the chat ends, written
// to FILE for tests/check_cli.sh to compare with the whole conversation tokenized at once.
void write_test_tokens(const kl_session* session) {
    const char* path = std::getenv("KIMI_TEST_CHAT_TOKENS");
    if (!path) return;
    size_t n = 0;
    check(kl_session_tokens(session, nullptr, 0, &n));
    std::vector<int32_t> ids(n);
    check(kl_session_tokens(session, ids.data(), ids.size(), &n));
    std::ofstream out(path);
    for (size_t i = 0; i < n; ++i) out << (i ? " " : "") << ids[i];
    out << "\n";
}

// Interactive chat: a line of stdin is a user message; the answer streams until the model
// ends its turn. The session keeps the conversation: each turn appends only its new text.
// SIGINT during a turn ends it (the handler is installed per turn: SA_RESETHAND took it away):
// stopped in the message's prefill, the message is dropped (a cancelled append appended
// nothing); in the reply, the reply keeps the tokens streamed (kl_session_generate's contract),
// closed as a cut-off one is. A message or reply the library refuses (refused()) is reported
// and the prompt comes back. SIGTERM ends kimi as it does elsewhere; SIGINT at the prompt
// too, by its default action. A line "/reset" starts a new conversation in the same session
// (kl_session_reset): the way on once a conversation has filled the context.
int cmd_chat(const Options& o) {
    const ModelHandle model = load(o);
    const int32_t im_end = special_token(model.get(), "<|im_end|>");
    std::vector<int32_t> stops = {im_end};
    const int32_t eos = model_info(model.get()).eos_token;
    if (eos >= 0) stops.push_back(eos);
    const SessionHandle session = new_session(model.get());
    kl_generate_params gen = generate_params(o);
    if (!o.has("max-new")) gen.max_new_tokens = 256;
    gen.stop_tokens = stops.data();
    gen.n_stop_tokens = stops.size();

    const std::string system_text = o.get("system", "");
    std::vector<kl_chat_message> system;  // the conversation's opening, the format's default
    if (o.has("system")) system.push_back({"system", system_text.c_str()});  // without one
    const bool interactive = isatty(STDIN_FILENO);
    bool opened = false;  // the conversation's first message is in the session
    for (;;) {
        if (interactive) std::fputs("> ", stdout), std::fflush(stdout);
        std::string line;
        if (!std::getline(std::cin, line)) break;
        if (line.empty()) continue;
        if (line == kResetCommand) {
            check(kl_session_reset(session.get()));
            opened = false;
            std::fputs("kimi: new conversation\n", stderr);
            continue;
        }
        const std::vector<int32_t> turn = user_turn_ids(model.get(), system, !opened, line);
        const kimi::SignalStop stop;  // this turn's
        Stream stream;
        size_t generated = 0;
        kl_status sent = KL_OK, replied = KL_OK;
        std::string why;  // the failed call's message
        {
            const CancelOnSignal cancel(session.get());
            sent =
                kl_session_append(session.get(), turn.data(), turn.size(), KL_LOGITS_NONE, nullptr);
            if (sent == KL_OK)
                replied =
                    kl_session_generate(session.get(), &gen, print_piece, &stream, &generated);
            why = kl_last_error();  // valid until the next call
        }
        kl_session_clear_cancel(session.get());  // one made after the call it aimed at ended
        const int sig = kimi::stop_signal();
        if ((sent == KL_ERR_CANCELLED && sig) || refused(sent)) {  // the message is not said
            if (refused(sent)) report_refusal("message dropped", sent, why);
        } else {
            check(sent, why);
            opened = true;
            std::printf("\n");
            std::fflush(stdout);
            if (refused(replied))
                report_refusal("reply stopped", replied, why);
            else if (replied != KL_ERR_CANCELLED || !sig)
                check(replied, why);
            if (generated == stream.tokens && im_end >= 0) {  // cut off: close the turn ourselves
                // Unless the reply filled the context: the next message is refused as too long.
                const kl_status closed =
                    kl_session_append(session.get(), &im_end, 1, KL_LOGITS_NONE, nullptr);
                if (closed != KL_ERR_CONTEXT_FULL) check(closed);
            }
        }
        if (sig == SIGTERM) check_signal();
        if (sig) std::fprintf(stderr, "kimi: reply stopped by SIGINT\n");
    }
    write_test_tokens(session.get());
    return 0;
}

}  // namespace kimi
