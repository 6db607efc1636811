/*
 * kimi_linear.h - the C API of the Kimi Linear inference runtime.
 *
 * Read top to bottom as the lifecycle: version -> errors -> model -> session ->
 * run -> sample/generate -> state -> tokenizer.
 *
 * Conventions
 *  - Every fallible function returns kl_status (KL_OK == 0). On failure kl_last_error()
 *    returns a thread-local message naming what was wrong; it stays valid until the next
 *    kl_* call on the same thread.
 *  - Handles are created by *_create / *_load and released by *_free (NULL is a no-op).
 *  - Parameter structs start with struct_size and are initialised by *_default().
 *  - A failed call changes nothing: position, state and last logits are as before.
 *  - A model may be shared by any number of sessions on any threads; a session is used by
 *    one thread at a time, except kl_session_cancel and kl_session_clear_cancel, which any
 *    thread may call. A second call on a session while one runs (another thread, or a
 *    kl_session_generate callback calling into its own session) is refused with KL_ERR_BUSY
 *    and changes nothing; a generator's step counts as a call on its session.
 *  - Cancel: see kl_session_cancel (one rule for append, next, generate, generator_next).
 */
#ifndef KIMI_LINEAR_H
#define KIMI_LINEAR_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#if defined(KL_BUILDING_LIBRARY)
#define KL_API __declspec(dllexport)
#else
#define KL_API __declspec(dllimport)
#endif
#else
#define KL_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ABI major: bumps only on a breaking change; it is the SONAME suffix. */
#define KL_ABI_VERSION 1

typedef struct kl_model kl_model;     /* weights + tokenizer, immutable after load */
typedef struct kl_session kl_session; /* per-conversation state: KDA + conv states, MLA cache */

typedef enum {
    KL_OK = 0,               /* success */
    KL_ERR_INVALID_ARGUMENT, /* a NULL or out-of-range argument, a struct_size too small, a
                                buffer too small (the size needed is reported; a NULL buffer
                                asks for the size: KL_OK, see "Output buffers"), a token id
                                outside the vocabulary, a snapshot of another model */
    KL_ERR_IO,               /* a file could not be opened or read */
    KL_ERR_FORMAT,           /* a file's content is wrong: config.json, safetensors headers,
                                a tensor's name, dtype or shape, tokenizer files, a corrupt or
                                truncated snapshot */
    KL_ERR_UNSUPPORTED,      /* valid, but not in this build or model: CUDA in a CPU-only
                                build, text functions on a model without a tokenizer, a
                                context beyond the backend's limit */
    KL_ERR_OUT_OF_MEMORY,    /* host or device memory could not be allocated */
    KL_ERR_CONTEXT_FULL,     /* the session's MLA cache cannot hold the tokens (max_context) */
    KL_ERR_CANCELLED,        /* stopped by kl_session_cancel or a progress callback; the
                                session is as it was before the call (or step), a stopped
                                checkpoint write left none of its files */
    KL_ERR_DEVICE,           /* the GPU failed or the requested device is not there (for
                                KL_DEVICE_CUDA also: the CUDA backend's plugin, or the CUDA
                                runtime it needs, could not be loaded; the message says which) */
    KL_ERR_INTERNAL,         /* a bug in the library: please report kl_last_error() */
    KL_ERR_BUSY              /* the session is in use by another call (a session is used by
                                one thread at a time); nothing was done: retry when that call
                                has returned. Appended after KL_ERR_INTERNAL (ABI rule). */
} kl_status;

typedef enum { KL_DEVICE_AUTO = 0, KL_DEVICE_CPU, KL_DEVICE_CUDA } kl_device;
typedef enum { KL_LOGITS_NONE = 0, KL_LOGITS_LAST, KL_LOGITS_ALL } kl_logits;

/* ---- version and errors ------------------------------------------------------------ */

/* Library version "MAJOR.MINOR.PATCH" (static string). */
KL_API const char* kl_version(void);
/* ABI major of the loaded library (compare with KL_ABI_VERSION). */
KL_API uint32_t kl_abi_version(void);
/* Message of the last failure on this thread, "" if none. Valid until the next call. */
KL_API const char* kl_last_error(void);
/* Stable name of a status, e.g. "KL_ERR_FORMAT"; "KL_ERR_UNKNOWN" for other values. */
KL_API const char* kl_status_string(kl_status status);

/* Log levels passed to the log callback. */
enum { KL_LOG_ERROR = 0, KL_LOG_WARN = 1, KL_LOG_INFO = 2, KL_LOG_DEBUG = 3 };
typedef void (*kl_log_callback)(int level, const char* msg, void* user);
/* Route library logs to cb (process-wide). NULL restores the default: stderr, warnings and
 * errors only. The callback runs on the thread that logs, outside any lock of the library:
 * it may call any kl_* function, kl_set_log_callback included, and may run on several
 * threads at once. A call that began before kl_set_log_callback returned may still be
 * running (with its old user pointer) after it returns: keep user valid until such calls
 * are over. */
KL_API void kl_set_log_callback(kl_log_callback cb, void* user);

/* ---- model -------------------------------------------------------------------------- */

/* Progress of a load or a checkpoint write: fraction in [0, 1]; return non-zero to abort
 * (KL_ERR_CANCELLED). */
typedef int (*kl_progress_callback)(float fraction, void* user);

/* The form a model's linear weights take once loaded (docs/design/model.md "Quantized
 * weights"): AUTO as the checkpoint stores them (bf16, or the FP8 / INT4 of its
 * quantization_config); BF16 every weight plain (a quantized checkpoint dequantized); FP8
 * block-scaled (128x128) or INT4 group-scaled (128) weight-only: a bf16 checkpoint quantized
 * on load (round to nearest), a checkpoint already in that format kept as it is. The CPU
 * backend computes with the dequantized values; the CUDA backend keeps FP8 and INT4 weights
 * in that form on the device (about half and a quarter of bf16's memory). */
typedef enum {
    KL_WEIGHTS_AUTO = 0,
    KL_WEIGHTS_BF16 = 1,
    KL_WEIGHTS_FP8 = 2,
    KL_WEIGHTS_INT4 = 3
} kl_weight_format;

/* The most devices kl_model_params lists: the GPUs of one 8-GPU host. */
#define KL_MAX_DEVICES 8

typedef struct {
    uint32_t struct_size;
    kl_device device;                 /* AUTO: CUDA when built with it and a GPU, its driver
                                         and the CUDA runtime are present; else the CPU */
    int32_t device_index;             /* GPU ordinal for KL_DEVICE_CUDA (n_devices 0) */
    int32_t n_threads;                /* CPU worker threads; 0 = all hardware threads; at most
                                         1024 (more is KL_ERR_INVALID_ARGUMENT); threads the
                                         system refuses to start: KL_ERR_OUT_OF_MEMORY */
    kl_progress_callback progress_cb; /* may be NULL */
    void* progress_user;
    /* Added later (an older caller's struct ends before them: their defaults). Decode
     * batching across threads (docs/design/capi.md "Batched decode"): with max_batch > 1,
     * concurrent one-token steps on sessions of this model (kl_session_next,
     * kl_session_generate, kl_generator_next, kl_session_append of one token without
     * logits) run together in one forward pass of up to max_batch sessions, each keeping its
     * own state and results. 0 or 1 = off (the default): each step runs alone. */
    uint32_t max_batch;
    /* How long (microseconds) a batch waits for the sessions of the previous batch to step
     * again, so that batches stay whole when threads arrive a little apart; 0 = never wait
     * (a batch is whatever arrived while the one before ran). Latency cost: at most this,
     * once, when a session of the previous batch does not step again (its conversation
     * ended) or its thread is slower than that. At most 1000000. */
    uint32_t batch_wait_us;
    /* Added later (an older caller's struct ends before it: KL_WEIGHTS_AUTO). The weights'
     * form once loaded (kl_weight_format above); another value is KL_ERR_INVALID_ARGUMENT. */
    kl_weight_format weight_format;
    /* Added later (an older caller's struct ends before them: n_devices 0). The devices the
     * model is split over, one shard each (docs/design/sharding.md): 0 = one device
     * (device_index, as before); n >= 1 = devices[0..n-1], which replace device_index. AUTO
     * picks CUDA or the CPU first, as always. KL_DEVICE_CUDA: GPU ordinals, the weights split
     * over them and every session running on all of them; one ordinal is the whole model on
     * that GPU, more than one is KL_ERR_UNSUPPORTED for now (CUDA shards are not built yet).
     * KL_DEVICE_CPU: n shards on threads of this process (a check of the split, no faster),
     * the entries their numbers 0, 1, ..., n-1 in that order. KL_ERR_INVALID_ARGUMENT for
     * n_devices above KL_MAX_DEVICES, a negative or repeated ordinal, CPU entries other than
     * 0..n-1; KL_ERR_DEVICE for a GPU ordinal the machine lacks; KL_ERR_UNSUPPORTED for a
     * count that does not divide the model's heads, MLP widths or routed experts (the
     * message names which). kl_model_info's n_devices reports the split. */
    uint32_t n_devices;
    int32_t devices[KL_MAX_DEVICES];
} kl_model_params;

/* Defaults for a struct of struct_size bytes (sizeof what the caller compiled against): the
 * fields it holds are set, struct_size included; nothing past it is written (every field
 * appended after the first release defaults to zero). KL_ERR_INVALID_ARGUMENT for NULL or a
 * size below the first release's. */
KL_API kl_status kl_model_params_init(kl_model_params* params, size_t struct_size);
/* The library's kl_model_params_default writes the first release's fields only, so an older
 * caller's smaller struct is never overrun; compiled against this header the name is
 * kl_model_params_init with the caller's sizeof, which defaults every field. A binding that
 * declares the struct itself calls kl_model_params_init with its struct's size. */
KL_API void kl_model_params_default(kl_model_params* params);
#define kl_model_params_default(params) ((void)kl_model_params_init((params), sizeof *(params)))

/* Writes the checkpoint folder in_dir to out_dir with its linear weights in `format`
 * (KL_WEIGHTS_FP8: Hugging Face fine-grained FP8; KL_WEIGHTS_INT4: compressed-tensors
 * pack-quantized; as a load with that weight_format would hold them), sharded
 * (model-0000N-of-0000M.safetensors + model.safetensors.index.json, shards up to
 * shard_bytes; 0 = 4 GiB), config.json with its quantization_config, the other files copied.
 * Tensors already in their written form are copied byte for byte. in_dir is checked as
 * kl_model_load checks it; out_dir is created, or must be empty (else
 * KL_ERR_INVALID_ARGUMENT). A failed call removes every file it wrote (and out_dir when it
 * created it); config.json is written last, so an interrupted call never leaves a folder that
 * loads. */
KL_API kl_status kl_checkpoint_quantize(const char* in_dir, const char* out_dir,
                                        kl_weight_format format, uint64_t shard_bytes);
/* kl_checkpoint_quantize reporting progress (progress_cb may be NULL: then it is that call).
 * Added later. progress_cb runs on the calling thread with the fraction of the tensors' bytes
 * read and written, rising after each tensor, and exactly 1.0 once out_dir is complete; a
 * non-zero return stops the write with KL_ERR_CANCELLED and the clean-up of any failure
 * (every file it wrote removed, out_dir too when it created it), a non-zero return at 1.0
 * included. */
KL_API kl_status kl_checkpoint_quantize_with_progress(const char* in_dir, const char* out_dir,
                                                      kl_weight_format format, uint64_t shard_bytes,
                                                      kl_progress_callback progress_cb,
                                                      void* progress_user);

/* Load a Hugging Face style checkpoint folder: config.json, *.safetensors (sharded through
 * model.safetensors.index.json), tokenizer files if present. Every tensor is checked by
 * name, dtype and shape before any compute. params may be NULL (defaults). On success the
 * caller owns *out and frees it with kl_model_free. */
KL_API kl_status kl_model_load(const char* dir, const kl_model_params* params, kl_model** out);
/* A model with deterministic random weights for the config.json text `config_json`
 * (NUL-terminated), built directly in the backend's memory, no files: benchmarks of any
 * shape, the released one included (configs/kimi-linear-48b-a3b.json). The values are
 * those make_tiny_model writes for the same seed. */
KL_API kl_status kl_model_create_random(const char* config_json, uint64_t seed,
                                        const kl_model_params* params, kl_model** out);
/* Free a model. NULL is a no-op. Sessions still alive keep working: they hold the weights
 * and tokenizer until the last of them is freed. */
KL_API void kl_model_free(kl_model* model);

/* A struct tag without a typedef: the contract names both this struct and the function
 * kl_model_info, which C allows only because tags live in their own namespace. */
struct kl_model_info {
    uint32_t struct_size;
    uint32_t vocab_size;
    uint32_t hidden_size;
    uint32_t n_layers;
    uint32_t n_kda_layers;
    uint32_t n_mla_layers;
    uint32_t n_experts;
    uint32_t n_experts_active;
    uint64_t max_context;         /* default session capacity in tokens */
    kl_device device;             /* the device the model runs on (never AUTO) */
    uint64_t weight_bytes;        /* bytes of weights held by the backend */
    uint64_t session_fixed_bytes; /* KDA recurrent + conv state per session */
    uint64_t kv_bytes_per_token;  /* MLA latent cache bytes per token (all MLA layers) */
    int32_t bos_token;            /* tokenizer_config.json's bos_token id, -1 if none */
    int32_t eos_token;            /* tokenizer_config.json's eos_token id, -1 if none */
    /* Added later (older callers' structs end before them): parameter counts. */
    uint64_t n_params;            /* weights in the checkpoint (a tied lm_head once) */
    uint64_t n_active_params;     /* weights one decode step reads: all but the routed experts
                                     it does not choose and the embedding table (one row), which
                                     it reads whole when it is the tied lm_head */
    /* Added later: the chat format's end-of-turn token (<|im_end|> in the Kimi format), where
     * an assistant's reply ends; -1 when the model has no tokenizer or no chat format. Chat
     * apps stop generation at it (kl_generate_params stop_tokens). */
    int32_t eot_token;
    /* Added later: the routed experts' weights, all experts of all layers (n_params counts
     * them; a decode step reads n_experts_active / n_experts of them per token, a batch of B
     * tokens about 1 - (1 - n_experts_active / n_experts)^B of them). */
    uint64_t n_routed_params;
    /* Added later: weight bytes in the form the backend holds them (quantized weights as they
     * load). decode_weight_bytes: what one decode step reads at least, its n_active_params
     * (the CPU backend holds every weight as fp32, 4 bytes, quantized ones dequantized; the
     * CUDA backend plain weights as bf16, 2 bytes, and FP8 or INT4 ones as loaded, codes plus
     * their fp32 scales). routed_weight_bytes: its n_routed_params, held the same way. */
    uint64_t decode_weight_bytes;
    uint64_t routed_weight_bytes;
    /* Added later: the devices the model is split over (kl_model_params n_devices), 1 for a
     * model on one device. */
    uint32_t n_devices;
};

/* Fill *out. Set out->struct_size = sizeof(struct kl_model_info) first; fields past an older
 * caller's struct_size are not written. */
KL_API kl_status kl_model_info(const kl_model* model, struct kl_model_info* out);

/* ---- session ------------------------------------------------------------------------ */

typedef struct {
    uint32_t struct_size;
    uint64_t max_context; /* MLA cache capacity in tokens; 0 = the model's default */
} kl_session_params;

KL_API void kl_session_params_default(kl_session_params* params);
/* Create a session at position 0 with all state zero. params may be NULL. */
KL_API kl_status kl_session_create(kl_model* model, const kl_session_params* params,
                                   kl_session** out);
KL_API void kl_session_free(kl_session* session);
/* Back to position 0, all state zero, no last logits. */
KL_API kl_status kl_session_reset(kl_session* session);

/* Run n tokens through the model at the current position (prefill when n > 1, a decode step
 * when n == 1). logits receives vocab_size floats (LAST) or n * vocab_size floats (ALL); it
 * may be NULL with KL_LOGITS_NONE. The last token's logits are always kept in the session
 * for kl_session_sample. KL_ERR_CONTEXT_FULL if the MLA cache cannot hold n more tokens. */
KL_API kl_status kl_session_append(kl_session* session, const int32_t* tokens, size_t n,
                                   kl_logits which, float* logits);
/* Benchmark aid: puts the session at position n_tokens with deterministic random KDA/conv
 * state, MLA cache rows, history and logits, as if a prompt of that length had been read,
 * without running the model: the content is meaningless, the cost of the steps that follow
 * is real (decode at a long context without a long prefill). KL_ERR_CONTEXT_FULL if
 * n_tokens exceeds the session's max_context. */
KL_API kl_status kl_session_fill_synthetic(kl_session* session, uint64_t n_tokens, uint64_t seed);

/* Tokens consumed so far. */
KL_API kl_status kl_session_position(const kl_session* session, uint64_t* out);
/* The token ids consumed so far, in order (position of them): the prompt, what was appended
 * and what was generated. Fork, kl_session_state_save/load keep them; reset clears them;
 * kl_session_fill_synthetic makes up random ones. The size protocol of "Output buffers"
 * (below): out NULL and cap 0 asks for the count (*n), KL_OK. */
KL_API kl_status kl_session_tokens(const kl_session* session, int32_t* out, size_t cap, size_t* n);
/* Independent deep copy of the whole state (cheap prefix reuse). */
KL_API kl_status kl_session_fork(const kl_session* session, kl_session** out);

/* Bytes kl_session_state_save will write now. */
KL_API kl_status kl_session_state_size(const kl_session* session, size_t* out);
/* Versioned, checksummed snapshot: magic, format version, model fingerprint, position,
 * token history, per-layer state, last logits, checksum. buf NULL and cap 0: *written (may
 * not then be NULL) receives the size, KL_OK; a buf smaller than the snapshot:
 * KL_ERR_INVALID_ARGUMENT with the size in *written. */
KL_API kl_status kl_session_state_save(const kl_session* session, void* buf, size_t cap,
                                       size_t* written);
/* Restore a snapshot; rejects another model's, a corrupt or a truncated one and then leaves
 * the session untouched. */
KL_API kl_status kl_session_state_load(kl_session* session, const void* buf, size_t n);

/* Cancel, one rule for the cancellable calls: kl_session_append, kl_session_next,
 * kl_session_generate and kl_generator_next. kl_session_cancel (any thread, never blocks)
 * makes a cancel pending on the session. A cancellable call that runs while one is pending,
 * whether it was requested before the call started or while it runs, returns
 * KL_ERR_CANCELLED (checked when it starts and at each layer boundary) and consumes it. So a
 * cancel is never lost between two calls of a streaming loop: it stops the call running, or
 * else the next cancellable call. A cancelled call changed nothing (kl_session_generate keeps
 * the tokens it had already streamed). Requests do not queue: several before one is consumed
 * count as one. Other calls (position, sample, fork, snapshots) neither see nor consume it.
 * A pending cancel is dropped, unseen, by kl_session_clear_cancel, kl_session_reset and
 * kl_generator_create: they start something new, and a cancel from before was aimed at what
 * ran before. An app whose requests each start with a prompt append drops a stale cancel
 * (one that arrived after the previous request ended) with kl_session_clear_cancel when a
 * request starts; to make a cancel count from the moment a generation is set up, create the
 * generator first and then append the prompt (allowed between steps). NULL is a no-op. */
KL_API void kl_session_cancel(kl_session* session);
/* Drops a pending cancel (see kl_session_cancel); any thread, never blocks. NULL: a no-op. */
KL_API void kl_session_clear_cancel(kl_session* session);

/* ---- sampling and generation ----------------------------------------------------- */

typedef struct {
    uint32_t struct_size;
    float temperature;         /* 0 = greedy (argmax) */
    int32_t top_k;             /* 0 = off */
    float top_p;               /* 1 = off */
    float min_p;               /* 0 = off; keep tokens with p >= min_p * p_max */
    float repetition_penalty;  /* 1 = off; CTRL-style: logit / p if > 0 else logit * p */
    int32_t repetition_window; /* how many recent tokens the penalty looks at; 0 = all;
                                  default 64 */
    uint64_t seed;             /* a draw is a function of (seed, position) only, so the same
                                  seed gives the same tokens, across forks and reloads too */
} kl_sampling_params;

KL_API void kl_sampling_params_default(kl_sampling_params* params);
/* Sample one token from the session's last logits (does not append it). */
KL_API kl_status kl_session_sample(kl_session* session, const kl_sampling_params* params,
                                   int32_t* token);

/* The token argument of a callback that carries no token: see kl_session_generate. */
#define KL_NO_TOKEN (-1)

/* Called for each generated token; piece is the text it releases (whole UTF-8 characters,
 * may be empty; NULL/0 when the model has no tokenizer), NUL-terminated. Non-zero return
 * stops cleanly. */
typedef int (*kl_token_callback)(void* user, int32_t token, const char* piece, size_t piece_len);

/* The most alternatives a generation step reports (kl_generate_params n_top_logprobs). */
#define KL_MAX_TOP_LOGPROBS 20

/* A hook over each generation step's logits: logits holds vocab_size floats on the host,
 * after the logit bias; change them in place (a ban is -INFINITY; NaN and +INFINITY fail the
 * step with KL_ERR_INVALID_ARGUMENT, as do logits all -INFINITY). history holds the
 * session's n_history tokens (kl_session_tokens); both are valid during the call only.
 * Return 0 to sample from the logits, non-zero to end the generation there: nothing is
 * appended and the step ends with KL_END_CALLBACK. It runs while the generation holds the
 * session: from it only kl_session_cancel and kl_session_clear_cancel may be called on that
 * session. A step that fails after it (cancel, a full context) calls it again when retried. */
typedef int (*kl_logits_processor)(void* user, float* logits, size_t vocab_size,
                                   const int32_t* history, size_t n_history);

typedef struct {
    uint32_t struct_size;
    uint32_t max_new_tokens;
    kl_sampling_params sampling;
    const int32_t* stop_tokens; /* generation ends when one is sampled (appended, not passed on) */
    size_t n_stop_tokens;
    const char* const* stop_strings; /* UTF-8, non-empty; need a tokenizer */
    size_t n_stop_strings;
    /* Added later: a struct_size that ends before them (an older caller's) reads as their
     * defaults, which leave generation as it was. With any of them set, each step samples
     * from a host copy of the last logits (on a GPU: one device-to-host copy of vocab_size
     * floats per token), changed by the bias and then the processor, with the same sampler:
     * with a zero bias and a processor that changes nothing, the same tokens. */
    int32_t logprobs;        /* non-zero: each kl_generation_step reports its token's logprob */
    uint32_t n_top_logprobs; /* and the most likely tokens with theirs, at most
                                KL_MAX_TOP_LOGPROBS (implies logprobs). The distribution is the
                                log-softmax of the logits after bias and processor, before the
                                repetition penalty, temperature, top-k/top-p/min-p */
    const int32_t* logit_bias_tokens; /* n_logit_bias token ids (in the vocabulary; an id given
                                         twice gets both) */
    const float* logit_bias_values;   /* added to their logits: finite, or -INFINITY to ban */
    size_t n_logit_bias;
    kl_logits_processor logits_processor; /* may be NULL */
    void* logits_processor_user;
} kl_generate_params;

/* Defaults for a struct of struct_size bytes (sizeof what the caller compiled against): the
 * fields it holds are set, struct_size included; nothing past it is written.
 * KL_ERR_INVALID_ARGUMENT for NULL or a size below the first release's. */
KL_API kl_status kl_generate_params_init(kl_generate_params* params, size_t struct_size);
/* The library's kl_generate_params_default writes the first release's fields only, so an
 * older caller's smaller struct is never overrun; compiled against this header the name is
 * kl_generate_params_init with the caller's sizeof, which defaults every field. A binding
 * that declares the struct itself calls kl_generate_params_init with its struct's size. */
KL_API void kl_generate_params_default(kl_generate_params* params);
#define kl_generate_params_default(params) \
    ((void)kl_generate_params_init((params), sizeof *(params)))
/* Sample, append, stream until max_new_tokens, a stop token, a stop string or the callback
 * returning non-zero. A sampled stop token is appended (so a chat can continue after it)
 * and counted, but not passed to the callback. Stop strings are matched on the generated
 * text across token boundaries: text that may start one is held back until it cannot, and
 * the stop string and anything after it are never passed on (the tokens that made them are
 * appended and counted). Text still held when generation ends another way (an unfinished
 * character becomes U+FFFD) comes in one last callback with token == KL_NO_TOKEN.
 * Needs last logits (append a prompt first). *n_generated (may be NULL) receives the number
 * of tokens appended. On failure or cancel the tokens already streamed stay appended (their
 * count is in *n_generated); the step that failed is undone (a sampled token the tokenizer
 * has no text for fails its step, KL_ERR_INVALID_ARGUMENT, before it is appended). A cancel
 * pending when it starts stops it before the first token (see kl_session_cancel). The
 * callback runs while the call holds the session: from it, only kl_session_cancel and
 * kl_session_clear_cancel may be called on this session (anything else: KL_ERR_BUSY). */
KL_API kl_status kl_session_generate(kl_session* session, const kl_generate_params* params,
                                     kl_token_callback cb, void* user, size_t* n_generated);
/* Pull-style streaming: sample the next token from the last logits, append it, return it
 * and the text it completes in piece, NUL-terminated (whole UTF-8 characters only, may be
 * empty: an unfinished character is held in the session until a later token completes it;
 * kl_session_append, reset and state_load drop it). piece may be NULL (cap 0) when the text
 * is not wanted; *piece_len (may be NULL) receives the text's length. If piece is too small
 * for the text and its NUL: KL_ERR_INVALID_ARGUMENT, nothing appended. */
KL_API kl_status kl_session_next(kl_session* session, const kl_sampling_params* params,
                                 int32_t* token, char* piece, size_t cap, size_t* piece_len);

/* Pull-style generation with everything kl_session_generate does: a generator runs one
 * generation on a session, a step per kl_generator_next. */
typedef struct kl_generator kl_generator;

/* Why a generation ended. */
typedef enum {
    KL_END_NONE = 0,        /* not ended: call kl_generator_next again */
    KL_END_LENGTH,          /* max_new_tokens tokens were generated */
    KL_END_STOP_TOKEN,      /* a stop token was sampled (it is appended, its text is not passed on) */
    KL_END_STOP_STRING,     /* the text completed a stop string (it and what follows are dropped) */
    KL_END_CALLBACK,        /* kl_session_generate's callback or the logits processor returned
                               non-zero */
    /* Added later: a generation that ended by a failed step. */
    KL_END_CANCELLED,       /* kl_session_cancel stopped it (the call returned KL_ERR_CANCELLED) */
    KL_END_ERROR            /* another failure (the status and kl_last_error say which) */
} kl_end_reason;

/* What one kl_generator_next released. Set struct_size = sizeof(kl_generation_step) first. */
typedef struct {
    uint32_t struct_size;
    int32_t token;         /* the token appended by this step; KL_NO_TOKEN if none */
    const char* piece;     /* the text this step releases, UTF-8 (whole characters),
                              NUL-terminated, never NULL (empty when the model has no
                              tokenizer); owned by the generator, valid until its next call */
    size_t piece_len;      /* bytes of piece, NUL excluded */
    kl_end_reason end;     /* KL_END_NONE while generation goes on */
    uint32_t n_generated;  /* tokens this generator has appended so far */
    /* Added later: written only when struct_size covers them (an older caller's struct ends
     * before them). Log-probabilities, when kl_generate_params asks (else 0, 0, NULL, NULL),
     * and for a step that appended a token (else the same zeros). */
    float logprob;               /* the token's natural-log probability (see n_top_logprobs) */
    uint32_t n_top;              /* entries in top_tokens and top_logprobs */
    const int32_t* top_tokens;   /* the most likely tokens, most likely first (ties: lower id
                                    first); owned by the generator, valid until its next call */
    const float* top_logprobs;   /* their log-probabilities, same order and lifetime */
} kl_generation_step;

/* Start a generation on session from its last logits (append a prompt first, or between
 * this call and the first step). params are checked and copied (stop tokens, strings and the
 * logit bias need not outlive the call; the processor's user pointer must outlive the
 * generator); NULL = defaults. The session must outlive the generator; between
 * steps it may be used as usual (e.g. a token appended by hand). A cancel pending when this
 * is called is dropped: it was aimed at what ran before (see kl_session_cancel). */
KL_API kl_status kl_generator_create(kl_session* session, const kl_generate_params* params,
                                     kl_generator** out);
/* One step. Until the end: samples a token, appends it and returns it with the text it
 * completes (end KL_END_NONE, or KL_END_STOP_STRING when that text completed a stop string:
 * piece is the text before it). A sampled stop token is appended and ends the generation
 * (KL_END_STOP_TOKEN); after max_new_tokens tokens the next call appends nothing and ends it
 * (KL_END_LENGTH, token KL_NO_TOKEN). A step that ends the generation other than by a stop
 * string also releases any text still held back (an unfinished character as U+FFFD). After
 * the end each call returns KL_OK with token KL_NO_TOKEN, an empty piece and the same end.
 * On failure (KL_ERR_CANCELLED included) the step changed nothing and may be called again; a
 * kl_session_cancel stops the step running or the next one to run, and is consumed by it:
 * then (only then) *out is written too, as token KL_NO_TOKEN, an empty piece and end
 * KL_END_CANCELLED, so a loop can report why it stopped (the generator itself has not ended).
 * A logits processor returning non-zero ends the generation (KL_END_CALLBACK, token
 * KL_NO_TOKEN, held text released). A step is a call on the generator's session
 * (KL_ERR_BUSY while another call uses it). */
KL_API kl_status kl_generator_next(kl_generator* generator, kl_generation_step* out);
/* Free a generator (NULL is a no-op); the session keeps what was appended. */
KL_API void kl_generator_free(kl_generator* generator);

/* How a kl_session_generate_with_result call ended. Set struct_size first. */
typedef struct {
    uint32_t struct_size;
    kl_end_reason end;    /* why it ended: KL_END_LENGTH, STOP_TOKEN, STOP_STRING or CALLBACK
                             with KL_OK; KL_END_CANCELLED with KL_ERR_CANCELLED; KL_END_ERROR
                             with any other failure */
    uint64_t n_generated; /* tokens appended */
} kl_generate_result;

/* kl_session_generate that also says why the generation ended (kl_session_generate's
 * n_generated, and the kl_generation_step fields, cannot): the same loop, callback and
 * rules; *result is written on success and on failure. result may be NULL (then it is
 * kl_session_generate); a struct_size too small is KL_ERR_INVALID_ARGUMENT, nothing run. */
KL_API kl_status kl_session_generate_with_result(kl_session* session,
                                                 const kl_generate_params* params,
                                                 kl_token_callback cb, void* user,
                                                 kl_generate_result* result);

/* ---- batched decode ------------------------------------------------------------------ */

/* kl_session_next for n sessions of one model at once: samples each session's next token
 * from its last logits with params[i] (all n on the device for a GPU model, one round trip),
 * appends them in ONE forward pass (the weights are read once for all n sessions, not n
 * times) and returns them in tokens[i]. Each session keeps its own state, position, sampling
 * parameters and seed: the tokens and the sessions afterwards are those of n kl_session_next
 * calls (on the CPU to float rounding, on a GPU within bf16 rounding). sessions: n distinct
 * sessions of one model; params: n structs. Text: pieces NULL (piece_stride 0) when not
 * wanted; else session i's text (as kl_session_next's piece, NUL-terminated) is written at
 * pieces + i * piece_stride, and piece_lens (may be NULL) receives the n lengths; a text that
 * does not fit piece_stride bytes with its NUL is KL_ERR_INVALID_ARGUMENT naming the session,
 * nothing appended. All or nothing: on any failure (a session busy,
 * without logits or with a full context, a device error) no session changed and
 * kl_last_error names the session (sessions[i]). A cancel pending on any of them fails the
 * call with KL_ERR_CANCELLED and consumes the pending cancels of those sessions (it was their
 * next cancellable call); the others are unchanged and can be retried without them. */
KL_API kl_status kl_batch_next(kl_session* const* sessions, size_t n,
                               const kl_sampling_params* params, int32_t* tokens, char* pieces,
                               size_t piece_stride, size_t* piece_lens);
/* Appends tokens[i] to sessions[i] (one token each) in one forward pass: a batched
 * kl_session_append of one token without logits (for callers that pick tokens themselves).
 * The same rules as kl_batch_next: distinct sessions of one model, all or nothing, cancel. */
KL_API kl_status kl_batch_append(kl_session* const* sessions, size_t n, const int32_t* tokens);

/* ---- tokenizer and chat format -------------------------------------------------------- */

/* The model folder's tiktoken.model + tokenizer_config.json. Without them these functions
 * answer KL_ERR_UNSUPPORTED.
 * Output buffers (these functions and kl_session_tokens): the size needed is always written
 * to *n / *len. out NULL with cap 0 asks for it: KL_OK, no error set. A non-NULL out too
 * small for the result: KL_ERR_INVALID_ARGUMENT, nothing else written. out NULL with cap > 0
 * is KL_ERR_INVALID_ARGUMENT. Text outputs are NUL-terminated when cap leaves room. */

/* Token ids of len bytes of text (no BOS is added). Ill-formed UTF-8 is read as U+FFFD.
 * parse_special != 0: the text of an added token (e.g. "<|im_end|>") becomes its id;
 * 0: such text is plain text (use 0 for text you do not control; chats: kl_chat_tokenize).
 * There are never more ids than 3 * len (len for well-formed UTF-8), so a buffer that size
 * needs one call; a size query (out NULL) tokenizes the text once more. Time is O(len log len)
 * for any text. */
KL_API kl_status kl_tokenize(const kl_model* model, const char* text, size_t len, int parse_special,
                             int32_t* out, size_t cap, size_t* n);
/* The text of tokens (added tokens as their text; ill-formed UTF-8 as U+FFFD).
 * KL_ERR_INVALID_ARGUMENT names a token the tokenizer does not have. */
KL_API kl_status kl_detokenize(const kl_model* model, const int32_t* tokens, size_t n, char* out,
                               size_t cap, size_t* len);

typedef struct {
    const char* role;    /* "system", "user", "assistant" or "tool" */
    const char* content; /* UTF-8 */
} kl_chat_message;

/* The conversation in the model's chat format, as text to tokenize with parse_special = 1;
 * add_generation_prompt != 0 appends the assistant's opening. A conversation that does not
 * start with a system message gets the model's default one, if its chat template has one.
 * Untrusted content: do not tokenize this text with parse_special = 1 when any message holds
 * text you do not control (a user's): a user who writes "<|im_end|><|im_system|>..." would
 * close their turn and open a system turn. Use kl_chat_tokenize, which never lets content
 * become a control token; this text is for display and logs. */
KL_API kl_status kl_chat_template_apply(const kl_model* model, const kl_chat_message* msgs,
                                        size_t n, int add_generation_prompt, char* out, size_t cap,
                                        size_t* len);

/* The conversation's token ids in the model's chat format, ready for kl_session_append: the
 * format's own markup becomes its special tokens, every message's content is plain text (as
 * kl_tokenize with parse_special = 0), so no message can forge a control token. For messages
 * that hold no added-token text the ids equal kl_tokenize(kl_chat_template_apply(...),
 * parse_special = 1). Roles, default system message and add_generation_prompt as in
 * kl_chat_template_apply; the size protocol as in kl_tokenize (*n_out is the count needed). */
KL_API kl_status kl_chat_tokenize(const kl_model* model, const kl_chat_message* msgs, size_t n,
                                  int add_generation_prompt, int32_t* out, size_t cap,
                                  size_t* n_out);

#ifdef __cplusplus
}
#endif

#endif /* KIMI_LINEAR_H */
