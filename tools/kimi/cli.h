// What kimi's commands share (defined in main.cpp): errors that end a command, the model
// load every command starts with, tokenizing and streaming a generation.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kimi_linear.h"
#include "options.h"
#include "signal_stop.h"

namespace kimi {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

// "1.5 MiB": a size in bytes for people.
std::string human_bytes(uint64_t bytes);

// A library call that failed: main prints its message and exits 1 (128 + the signal for
// KL_ERR_CANCELLED after a signal). The message is taken when the failure is seen:
// kl_last_error() describes only the thread's latest call.
struct Failure {
    kl_status status;
    std::string message;
};

inline void check(kl_status status) {
    if (status != KL_OK) throw Failure{status, kl_last_error()};
}
// A failure seen earlier, after other calls: with the message taken then.
inline void check(kl_status status, const std::string& message) {
    if (status != KL_OK) throw Failure{status, message};
}

// Once SIGINT or SIGTERM came during the last SignalStop (signal_stop.h): main reports
// "cancelled" and exits 128 + the signal.
inline void check_signal() {
    if (kimi::stop_signal()) throw Failure{KL_ERR_CANCELLED, "cancelled"};
}

// Holds until a signal comes (a minute at most), for the test hooks (KIMI_TEST_HOLD_*, used
// by tests/check_cli.sh) that make a test's real signal land mid-work; never sends one.
void hold_for_signal(const char* hook, const std::string& where);

// Before each measured call of bench and accuracy, which run in a SignalStop with a
// CancelOnSignal on the session measured: ends the command once SIGINT or SIGTERM came (main:
// "cancelled", 128 + the signal), a signal during a call cancelling that call.
// KIMI_TEST_HOLD_MEASURE=N, a test hook: the Nth call is held before it runs until a signal
// comes, then long enough for the watcher's kl_session_cancel, so that the call is cancelled.
void before_measurement();

// Handles freed on every path, errors included.
using ModelHandle = std::unique_ptr<kl_model, decltype(&kl_model_free)>;
using SessionHandle = std::unique_ptr<kl_session, decltype(&kl_session_free)>;

// The model the options name (a folder or --random CONFIG), on the device they name; SIGINT
// or SIGTERM during the load cancel it.
ModelHandle load(const Options& o);
SessionHandle new_session(kl_model* model);
struct kl_model_info model_info(const kl_model* model);

// Token ids of text (parse_special: added-token text becomes its id).
std::vector<int32_t> tokenize(const kl_model* model, const std::string& text,
                              int parse_special = 1);
// The conversation's ids: the chat format's markup as special tokens, each message's content
// as plain text (kl_chat_tokenize), so a typed "<|im_end|>" stays text.
std::vector<int32_t> chat_ids(const kl_model* model, const std::vector<kl_chat_message>& messages,
                              bool add_generation_prompt);
// The id of an added token, or -1 when the model's tokenizer lacks it.
int32_t special_token(const kl_model* model, const char* text);

// --max-new and the sampling options.
kl_generate_params generate_params(const Options& o);
// A generation being printed: how, and how many tokens reached the callback (a chat tells a
// reply cut off from one ended by a stop token, which is appended but not passed on).
struct Stream {
    bool text_mode = true;  // print pieces (else token ids)
    size_t tokens = 0;
};

// A kl_token_callback, user a Stream: prints what a generation streams; stops it (between
// tokens) once SIGINT or SIGTERM came.
int print_piece(void* user, int32_t token, const char* piece, size_t piece_len);

int cmd_chat(const Options& o);
int cmd_bench(const Options& o);
int cmd_accuracy(const Options& o);

}  // namespace kimi
