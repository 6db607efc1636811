// Every limit the library puts on what it reads: file sizes, JSON nesting, config values,
// the size of the model a config may describe, and the length of text quoted in an error
// message. Sizes read from an input are checked against these before anything is allocated
// from them, so no input costs time or memory out of proportion to its size
// (docs/design/model.md, "Limits"; docs/design/capi.md, "Status and messages").
#pragma once

#include <cstddef>
#include <cstdint>

namespace kl::limits {

// ---- files of a model folder (core/input_file.h) ----
// A released config.json is 2 KB; the index of a 1T-parameter checkpoint is about 12 MB;
// Kimi's tokenizer_config.json about 50 KB and tiktoken.model about 2.5 MB; a
// tokenizer_config.json naming an added token for every id of a 160K vocabulary is about
// 30 MB (make_tiny_model's 100m preset writes 5 MB).
constexpr uint64_t kConfigFileBytes = 1u << 20;           // config.json: 1 MiB
constexpr uint64_t kIndexFileBytes = 64u << 20;           // model.safetensors.index.json
constexpr uint64_t kTokenizerConfigFileBytes = 64u << 20;  // tokenizer_config.json: 64 MiB
constexpr uint64_t kTiktokenFileBytes = 64u << 20;        // tiktoken.model: 64 MiB
// A safetensors header (the JSON before the data), as in the reference implementation.
constexpr uint64_t kSafetensorsHeaderBytes = 100u << 20;

// ---- JSON (core/json_input.h) ----
// Deeper nesting is rejected before parsing: nothing the library reads nests more than four
// levels, and nlohmann::json's dump() and copies recurse once per level.
constexpr int kJsonDepth = 64;

// ---- config.json values (ModelConfig::validate) ----
constexpr int64_t kLayers = 1024;               // num_hidden_layers (the released model: 27)
constexpr int64_t kWidth = 1 << 20;             // any hidden, intermediate, rank or head size
constexpr int64_t kHeads = 1 << 16;             // num_attention_heads, linear_attn_config.num_heads
constexpr int64_t kConvKernel = 256;            // linear_attn_config.short_conv_kernel_size
constexpr int64_t kExperts = 1 << 14;           // num_experts, num_shared_experts
constexpr int64_t kContext = int64_t(1) << 40;  // model_max_length (tokens)
constexpr double kRmsNormEps = 1.0;             // rms_norm_eps in (0, 1]
constexpr double kRoutedScaling = 1000.0;       // routed_scaling_factor in (0, 1000]

// ---- the model a config describes (ModelLayout, core/weights.h) ----
// The released 48B model has about 20,000 tensors.
constexpr uint64_t kTensors = 1u << 20;
constexpr uint64_t kParameters = uint64_t(1) << 46;  // 70 trillion
// A session's fixed (recurrent) state, all KDA layers, in bytes.
constexpr uint64_t kRecurrentStateBytes = uint64_t(1) << 46;

// ---- generation (core/generator.h) ----
// The alternatives a step may report with its token's log-probability (kl_generate_params
// n_top_logprobs; KL_MAX_TOP_LOGPROBS in kimi_linear.h): OpenAI's API caps it at 20 too.
constexpr uint32_t kTopLogprobs = 20;

// ---- decode batching (core/decode_batcher.h, kl_model_params) ----
// The most steps one batched pass may gather, and how long a pass may wait for them: a pass
// holds every gathered session's step, so a typo must not make each step wait seconds.
constexpr uint32_t kMaxBatch = 4096;
constexpr uint32_t kBatchWaitMicroseconds = 1000000;

// ---- error messages (core/message_text.h) ----
constexpr size_t kQuotedTextBytes = 96;  // a name, key or value quoted from an input
constexpr size_t kMessageBytes = 4096;   // a whole kl_last_error() message

}  // namespace kl::limits
