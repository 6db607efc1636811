#include "generator.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "error.h"
#include "limits.h"
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

void check_logit_bias(const std::vector<LogitBias>& bias, int64_t vocab) {
    for (size_t j = 0; j < bias.size(); ++j) {
        const std::string which = "logit_bias[" + std::to_string(j) + "]";
        if (bias[j].token < 0 || bias[j].token >= vocab)
            fail(Status::InvalidArgument, which + " names token " + std::to_string(bias[j].token) +
                                              ", outside [0, " + std::to_string(vocab) + ")");
        if (std::isnan(bias[j].bias) || bias[j].bias == INFINITY)
            fail(Status::InvalidArgument,
                 which + " is " + std::to_string(bias[j].bias) + ": a bias is finite or -inf");
    }
}

// What sampling needs of changed logits: no NaN or +inf, and some token not banned (-inf).
void check_changed_logits(const std::vector<float>& logits) {
    bool any = false;
    for (size_t i = 0; i < logits.size(); ++i) {
        if (std::isnan(logits[i]) || logits[i] == INFINITY)
            fail(Status::InvalidArgument,
                 "after the logit bias and the logits processor, token " + std::to_string(i) +
                     "'s logit is " + std::to_string(logits[i]) + ": it must be finite or -inf");
        any = any || logits[i] != -INFINITY;
    }
    if (!any)
        fail(Status::InvalidArgument,
             "every token's logit is -inf after the logit bias and the logits processor");
}

}  // namespace

Generator::Generator(Session& session, GenerateOptions options)
    : session_(session),
      tokenizer_(session.model().tokenizer()),
      options_(std::move(options)),
      stops_(checked_stop_strings(options_.stop_strings, tokenizer_)) {
    validate_sampling(options_.sampling);
    check_logit_bias(options_.logit_bias, session.model().config().vocab_size);
    if (options_.n_top_logprobs > limits::kTopLogprobs)
        fail(Status::InvalidArgument, "n_top_logprobs is " +
                                          std::to_string(options_.n_top_logprobs) + ", at most " +
                                          std::to_string(limits::kTopLogprobs));
}

bool Generator::on_host() const {
    return !options_.logit_bias.empty() || options_.processor || options_.logprobs ||
           options_.n_top_logprobs > 0;
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
    int32_t token;
    if (on_host()) {
        std::vector<float> logits = session_.last_logits();
        for (const LogitBias& b : options_.logit_bias) logits[b.token] += b.bias;
        const std::vector<int32_t>& history = session_.history();
        if (options_.processor &&
            options_.processor(logits.data(), logits.size(), history.data(), history.size()) != 0) {
            step.piece = flush();
            step.end = end_ = EndReason::Callback;
            return step;
        }
        check_changed_logits(logits);
        token = session_.sample_from(logits.data(), options_.sampling);
        if (options_.logprobs || options_.n_top_logprobs > 0) {
            const TokenLogprobs logprobs(logits.data(), logits.size());
            step.logprob = logprobs.of(token);
            step.top = logprobs.top(options_.n_top_logprobs);
        }
    } else {
        token = session_.sample(options_.sampling);
    }
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
