// kimi chat: the interactive conversation.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "cancel_on_signal.h"
#include "cli.h"

namespace kimi {

// Interactive chat: a line of stdin is a user message; the answer streams until the model
// ends its turn. The session keeps the conversation: each turn appends only its new text.
// SIGINT during a turn ends it (the handler is installed per turn: SA_RESETHAND took it away):
// stopped in the message's prefill, the message is dropped (a cancelled append appended
// nothing); in the reply, the reply keeps the tokens streamed (kl_session_generate's contract),
// closed as a cut-off one is. SIGTERM ends kimi as it does elsewhere; SIGINT at the prompt
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
        {
            const CancelOnSignal cancel(session.get());
            sent = kl_session_append(session.get(), whole.data() + before, whole.size() - before,
                                     KL_LOGITS_NONE, nullptr);
            if (sent == KL_OK)
                replied =
                    kl_session_generate(session.get(), &gen, print_piece, &stream, &generated);
        }
        kl_session_clear_cancel(session.get());  // one made after the call it aimed at ended
        const int sig = kimi::stop_signal();
        if (sent == KL_ERR_CANCELLED && sig) {  // nothing appended: the message is not said
            roles.pop_back(), contents.pop_back();
        } else {
            check(sent);
            said = whole.size();
            std::printf("\n");
            std::fflush(stdout);
            if (replied != KL_ERR_CANCELLED || !sig) check(replied);
            if (generated == stream.tokens && im_end >= 0)  // cut off: close the turn ourselves
                check(kl_session_append(session.get(), &im_end, 1, KL_LOGITS_NONE, nullptr));
            roles.push_back("assistant"), contents.push_back(stream.text);
        }
        if (sig == SIGTERM) check_signal();
        if (sig) std::fprintf(stderr, "kimi: reply stopped by SIGINT\n");
    }
    return 0;
}

}  // namespace kimi
