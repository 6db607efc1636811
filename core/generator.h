// One generation on a session, a step at a time: sample from the last logits, append, turn
// the token into text (whole UTF-8 characters), hold back text that may start a stop string,
// and say when and why generation ended. The one home of the generation loop: the C API's
// kl_generator_* wraps it, kl_session_generate is a loop over it, and every binding's
// generate is an iterator over kl_generator_next.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "sampler.h"
#include "session.h"
#include "tokenizer/text_stream.h"

namespace kl {

// Values match kl_end_reason.
enum class EndReason { None = 0, Length = 1, StopToken = 2, StopString = 3, Callback = 4 };

struct GenerateOptions {
    uint32_t max_new_tokens = 128;
    SamplingParams sampling;
    std::vector<int32_t> stop_tokens;
    std::vector<std::string> stop_strings;  // non-empty, valid UTF-8; need a tokenizer
};

struct GeneratedStep {
    int32_t token = -1;        // the token appended; -1 when the step appended none
    std::string piece;         // the text this step releases (may be empty)
    EndReason end = EndReason::None;
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
    GeneratedStep next();

    size_t generated() const { return generated_; }  // tokens appended so far
    EndReason end() const { return end_; }

private:
    std::string flush();  // the text still held, released

    Session& session_;
    const Tokenizer* tokenizer_;
    GenerateOptions options_;
    Utf8Stream utf8_;
    StopStrings stops_;
    size_t generated_ = 0;
    EndReason end_ = EndReason::None;
};

}  // namespace kl
