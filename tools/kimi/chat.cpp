// kimi chat: the interactive conversation.
#include <unistd.h>

#include <cstdio>
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
}

// Interactive chat: a line of stdin is a user message; the answer streams until the model
// ends its turn. The session keeps the conversation: each turn appends only its new text.
// SIGINT during a turn ends it (the handler is installed per turn: SA_RESETHAND took it away):
// stopped in the message's prefill, the message is dropped (a cancelled append appended
// nothing); in the reply, the reply keeps the tokens streamed (kl_session_generate's contract),
// closed as a cut-off one is. A message or reply the library refuses (refused()) is reported
// and the prompt comes back. SIGTERM ends kimi as it does elsewhere; SIGINT at the prompt
// too, by its default action.
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

    std::vector<std::string> roles, contents;  // the conversation so far
    if (o.has("system")) roles.push_back("system"), contents.push_back(o.get("system", ""));
    const bool interactive = isatty(STDIN_FILENO);
    size_t said = 0;  // ids of the conversation appended so far
    for (;;) {
        if (interactive) std::fputs("> ", stdout), std::fflush(stdout);
        std::string line;
        if (!std::getline(std::cin, line)) break;
        if (line.empty()) continue;
        roles.push_back("user"), contents.push_back(line);
        std::vector<kl_chat_message> messages;
        for (size_t i = 0; i < roles.size(); ++i)
            messages.push_back({roles[i].c_str(), contents[i].c_str()});
        // The conversation's ids grow at their end (each message's ids do not depend on what
        // follows it), so the new ids are those after the previous turns'.
        const std::vector<int32_t> whole = chat_ids(model.get(), messages, true);
        const size_t before =
            said == 0 ? 0
                      : chat_ids(model.get(), {messages.begin(), messages.end() - 1}, false).size();
        const kimi::SignalStop stop;  // this turn's
        Stream stream;
        size_t generated = 0;
        kl_status sent = KL_OK, replied = KL_OK;
        std::string why;  // the failed call's message
        {
            const CancelOnSignal cancel(session.get());
            sent = kl_session_append(session.get(), whole.data() + before, whole.size() - before,
                                     KL_LOGITS_NONE, nullptr);
            if (sent == KL_OK)
                replied =
                    kl_session_generate(session.get(), &gen, print_piece, &stream, &generated);
            why = kl_last_error();  // valid until the next call
        }
        kl_session_clear_cancel(session.get());  // one made after the call it aimed at ended
        const int sig = kimi::stop_signal();
        if ((sent == KL_ERR_CANCELLED && sig) || refused(sent)) {  // the message is not said
            roles.pop_back(), contents.pop_back();
            if (refused(sent)) report_refusal("message dropped", sent, why);
        } else {
            check(sent);
            said = whole.size();
            std::printf("\n");
            std::fflush(stdout);
            if (refused(replied))
                report_refusal("reply stopped", replied, why);
            else if (replied != KL_ERR_CANCELLED || !sig)
                check(replied);
            if (generated == stream.tokens && im_end >= 0) {  // cut off: close the turn ourselves
                // Unless the reply filled the context: the next message is refused as too long.
                const kl_status closed =
                    kl_session_append(session.get(), &im_end, 1, KL_LOGITS_NONE, nullptr);
                if (closed != KL_ERR_CONTEXT_FULL) check(closed);
            }
            roles.push_back("assistant"), contents.push_back(stream.text);
        }
        if (sig == SIGTERM) check_signal();
        if (sig) std::fprintf(stderr, "kimi: reply stopped by SIGINT\n");
    }
    return 0;
}

}  // namespace kimi
