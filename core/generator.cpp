#include "generator.h"

#include <algorithm>
#include <utility>

#include "error.h"
#include "tokenizer/utf8.h"

namespace kl {
namespace {

std::vector<std::string> checked_stop_strings(const std::vector<std::string>& stops,
                                              const Tokenizer* tokenizer) {
    for (size_t j = 0; j < stops.size(); ++j) {
        const std::string which = "stop_strings[" + std::to_string(j) + "]";
        if (stops[j].empty()) fail(Status::InvalidArgument, which + " is empty");
        if (!utf8_valid(stops[j])) fail(Status::InvalidArgument, which + " is not valid UTF-8");
    }
    if (!stops.empty() && !tokenizer)
        fail(Status::Unsupported,
             "stop_strings need a tokenizer, and this model folder has no tiktoken.model");
    return stops;
}

}  // namespace

Generator::Generator(Session& session, GenerateOptions options)
    : session_(session),
      tokenizer_(session.model().tokenizer()),
      options_(std::move(options)),
      stops_(checked_stop_strings(options_.stop_strings, tokenizer_)) {
    validate_sampling(options_.sampling);
}

std::string Generator::flush() {
    std::string text, piece;
    if (!tokenizer_) return piece;
    utf8_.finish(text);
    if (!stops_.push(text, piece)) stops_.finish(piece);
    return piece;
}

GeneratedStep Generator::next() {
    GeneratedStep step;
    if (end_ != EndReason::None) {
        step.end = end_;
        return step;
    }
    // A pending cancel stops this step even when it runs no layer (docs/design/capi.md).
    session_.throw_if_cancelled();
    if (generated_ >= options_.max_new_tokens) {
        step.piece = flush();
        step.end = end_ = EndReason::Length;
        return step;
    }
    const int32_t token = session_.sample(options_.sampling);
    const auto& stop_tokens = options_.stop_tokens;
    const bool stop_token =
        std::find(stop_tokens.begin(), stop_tokens.end(), token) != stop_tokens.end();
    // The token's text first, on a copy of the stream: a token the tokenizer has no text for
    // fails the step before anything is appended (a failed step changes nothing).
    Utf8Stream utf8 = utf8_;
    std::string text;
    if (tokenizer_ && !stop_token) utf8.push(tokenizer_->token_bytes(token), text);
    session_.append(&token, 1, nullptr);  // throws leaving the session as it was
    ++generated_;
    step.token = token;
    if (stop_token) {
        step.piece = flush();
        step.end = end_ = EndReason::StopToken;
        return step;
    }
    if (tokenizer_) {
        utf8_ = std::move(utf8);
        if (stops_.push(text, step.piece)) step.end = end_ = EndReason::StopString;
    }
    return step;
}

}  // namespace kl
