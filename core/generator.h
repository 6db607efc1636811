// One generation on a session, a step at a time: sample from the last logits, append, turn
// the token into text (whole UTF-8 characters), hold back text that may start a stop string,
// and say when and why generation ended. The one home of the generation loop: the C API's
// kl_generator_* wraps it, kl_session_generate is a loop over it, and every binding's
// generate is an iterator over kl_generator_next.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "sampler.h"
#include "session.h"
#include "token_logprobs.h"
#include "tokenizer/text_stream.h"

namespace kl {

// Values match kl_end_reason. The generator itself ends with the first four and Callback
// (the logits processor asked to stop); Cancelled and Error name a generation the C API saw
// end by a failed step (kl_session_generate_with_result).
enum class EndReason {
    None = 0,
    Length = 1,
    StopToken = 2,
    StopString = 3,
    Callback = 4,
    Cancelled = 5,
    Error = 6
};

// A hook over the host logits of each step: may change logits [vocab] in place; history is
// the session's tokens. Returns non-zero to end the generation (EndReason::Callback).
using LogitsProcessor =
    std::function<int(float* logits, size_t vocab, const int32_t* history, size_t n_history)>;

struct LogitBias {
    int32_t token;
    float bias;  // added to the token's logit; -inf bans it
};

struct GenerateOptions {
    uint32_t max_new_tokens = 128;
    SamplingParams sampling;
    std::vector<int32_t> stop_tokens;
    std::vector<std::string> stop_strings;  // non-empty, valid UTF-8; need a tokenizer
    std::vector<LogitBias> logit_bias;      // ids in the vocabulary, no NaN or +inf
    LogitsProcessor processor;              // may be empty
    bool logprobs = false;                  // report each token's log-probability
    uint32_t n_top_logprobs = 0;            // and this many alternatives (<= kTopLogprobs)
};

struct GeneratedStep {
    int32_t token = -1;        // the token appended; -1 when the step appended none
    std::string piece;         // the text this step releases (may be empty)
    EndReason end = EndReason::None;
    float logprob = 0.0f;      // the token's log-probability (token_logprobs.h), if asked
    std::vector<TokenLogprob> top;  // the most likely tokens, if asked
};

class Generator {
public:
    // Validates the options (InvalidArgument, or Unsupported for stop strings without a
    // tokenizer). The session must outlive the generator.
    Generator(Session& session, GenerateOptions options);

    // One step. Before the end: samples a token and appends it (end None, or StopString when
    // its text completed a stop string: piece is the text before it). A sampled stop token
    // is appended and ends the generation (StopToken); reaching max_new_tokens ends it on
    // the next call, which appends nothing (Length). The step that ends it without a stop
    // string also releases the text still held (an unfinished character as U+FFFD). After
    // the end every call returns {-1, "", end}. A step before the end starts by consuming a
    // pending cancel (Session::throw_if_cancelled). On a throw (cancel, device error, a
    // sampled token the tokenizer has no text for) nothing changed: the step can be retried.
    // With a logit bias, a processor or log-probabilities the step samples from a host copy
    // of the last logits, changed by the bias and then the processor, with the same sampler
    // (one device-to-host copy of the logits per step on a GPU). A processor returning
    // non-zero ends the generation (Callback) without appending; a retried step calls the
    // processor again.
    GeneratedStep next();

    size_t generated() const { return generated_; }  // tokens appended so far
    EndReason end() const { return end_; }

private:
    std::string flush();  // the text still held, released
    bool on_host() const;  // whether steps sample from a host copy of the logits

    Session& session_;
    const Tokenizer* tokenizer_;
    GenerateOptions options_;
    Utf8Stream utf8_;
    StopStrings stops_;
    size_t generated_ = 0;
    EndReason end_ = EndReason::None;
};

}  // namespace kl
