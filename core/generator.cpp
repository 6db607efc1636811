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
    if (generated_ >= options_.max_new_tokens) {
        step.piece = flush();
        step.end = end_ = EndReason::Length;
        return step;
    }
    const int32_t token = session_.sample(options_.sampling);
    try {
        session_.append(&token, 1, nullptr);  // throws leaving the session as it was
    } catch (const Error& e) {
        // A cancel is consumed by the step it stops; the next step runs.
        if (e.status() == Status::Cancelled) session_.clear_cancel();
        throw;
    }
    ++generated_;
    step.token = token;
    const auto& stop_tokens = options_.stop_tokens;
    if (std::find(stop_tokens.begin(), stop_tokens.end(), token) != stop_tokens.end()) {
        step.piece = flush();
        step.end = end_ = EndReason::StopToken;
        return step;
    }
    if (tokenizer_) {
        std::string text;
        utf8_.push(tokenizer_->token_bytes(token), text);
        if (stops_.push(text, step.piece)) step.end = end_ = EndReason::StopString;
    }
    return step;
}

}  // namespace kl
