// The C API: an exception firewall around the core. Every entry point validates its
// arguments, runs the core inside guarded(), and turns any C++ exception into a kl_status
// plus a thread-local message. Nothing thrown ever crosses this boundary.
#include "kimi_linear.h"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/checkpoint_writer.h"
#include "core/error.h"
#include "core/generator.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/message_text.h"
#include "core/model.h"
#include "core/session.h"
#include "core/tokenizer/text_stream.h"
#include "core/tokenizer/utf8.h"
#include "core/weights.h"
#include "session_in_use.h"

struct kl_model {
    // Shared with the model's sessions, so freeing a model under a live session cannot
    // pull the weights out from under it.
    std::shared_ptr<const kl::Model> model;
};

struct kl_session {
    std::shared_ptr<const kl::Model> model;
    std::unique_ptr<kl::Session> session;
    // kl_session_next's text: an incomplete UTF-8 character waiting for the next token.
    kl::Utf8Stream next_text;
    // Held by each call that reads or writes the session (kl::SessionInUse); mutable because
    // the const calls (position, fork, snapshots) take it too.
    mutable std::atomic<bool> in_use{false};
};

struct kl_generator {
    kl_session* session;
    kl::Generator generator;
    std::string piece;  // the last step's text, owned here for kl_generation_step::piece
    // The last step's alternatives, owned here for kl_generation_step::top_tokens/top_logprobs.
    std::vector<int32_t> top_tokens;
    std::vector<float> top_logprobs;
};

// The core's Status mirrors kl_status value by value; the firewall casts between them.
static_assert(static_cast<int>(kl::Status::InvalidArgument) == KL_ERR_INVALID_ARGUMENT &&
                  static_cast<int>(kl::Status::Format) == KL_ERR_FORMAT &&
                  static_cast<int>(kl::Status::ContextFull) == KL_ERR_CONTEXT_FULL &&
                  static_cast<int>(kl::Status::Cancelled) == KL_ERR_CANCELLED &&
                  static_cast<int>(kl::Status::Internal) == KL_ERR_INTERNAL &&
                  static_cast<int>(kl::Status::Busy) == KL_ERR_BUSY,
              "kl::Status and kl_status disagree");
static_assert(static_cast<int>(kl::EndReason::Length) == KL_END_LENGTH &&
                  static_cast<int>(kl::EndReason::StopToken) == KL_END_STOP_TOKEN &&
                  static_cast<int>(kl::EndReason::StopString) == KL_END_STOP_STRING &&
                  static_cast<int>(kl::EndReason::Callback) == KL_END_CALLBACK &&
                  static_cast<int>(kl::EndReason::Cancelled) == KL_END_CANCELLED &&
                  static_cast<int>(kl::EndReason::Error) == KL_END_ERROR,
              "kl::EndReason and kl_end_reason disagree");
static_assert(KL_MAX_TOP_LOGPROBS == kl::limits::kTopLogprobs, "two limits on top logprobs");
// The structs as the first release laid them out end where their appended fields start: a
// caller's struct_size from then is accepted, the rest read as defaults or left unwritten.
constexpr size_t kGenerateParamsFirstSize = offsetof(kl_generate_params, logprobs);
constexpr size_t kModelParamsFirstSize = offsetof(kl_model_params, max_batch);
// The device list counts only when the caller's struct holds all of it: the struct before
// it ended in tail padding (on LP64 its sizeof was 48) where n_devices now lies (offset 44),
// bytes an older caller never set.
constexpr size_t kModelParamsDevicesEnd =
    offsetof(kl_model_params, devices) + sizeof(kl_model_params::devices);
static_assert(static_cast<int>(kl::WeightRequest::AsStored) == KL_WEIGHTS_AUTO &&
                  static_cast<int>(kl::WeightRequest::Bf16) == KL_WEIGHTS_BF16 &&
                  static_cast<int>(kl::WeightRequest::Fp8) == KL_WEIGHTS_FP8 &&
                  static_cast<int>(kl::WeightRequest::Int4) == KL_WEIGHTS_INT4,
              "kl::WeightRequest and kl_weight_format disagree");
constexpr size_t kGenerationStepFirstSize = offsetof(kl_generation_step, logprob);
static_assert(static_cast<int>(kl::DeviceKind::Cpu) == KL_DEVICE_CPU &&
                  static_cast<int>(kl::DeviceKind::Cuda) == KL_DEVICE_CUDA,
              "kl::DeviceKind and kl_device disagree");

namespace {

thread_local std::string t_last_error;

kl_status set_error(kl_status status, const std::string& message) {
    // Bounded: a message may quote an input (core/message_text.h, docs/design/capi.md).
    t_last_error = kl::excerpt(message, kl::limits::kMessageBytes);
    return status;
}

// Runs body (which returns nothing and reports failure by throwing) behind the firewall.
template <typename Body>
kl_status guarded(Body&& body) noexcept {
    t_last_error.clear();
    try {
        body();
        return KL_OK;
    } catch (const kl::Error& e) {
        return set_error(static_cast<kl_status>(e.status()), e.what());
    } catch (const std::bad_alloc&) {  // std::bad_array_new_length too
        return set_error(KL_ERR_OUT_OF_MEMORY, "out of memory");
    } catch (const std::length_error& e) {  // a container asked for more than max_size()
        return set_error(KL_ERR_OUT_OF_MEMORY, std::string("out of memory: ") + e.what());
    } catch (const std::exception& e) {
        return set_error(KL_ERR_INTERNAL, std::string("internal error: ") + e.what());
    } catch (...) {
        return set_error(KL_ERR_INTERNAL, "internal error: unknown exception");
    }
}

// A C caller may pass any int where the API says enum; in C++ an out-of-range value of an
// unfixed enum is undefined, so the firewall reads enum arguments as their bits.
template <typename Enum>
int enum_bits(const Enum& value) {
    static_assert(sizeof(Enum) == sizeof(int), "C enums are int-sized here");
    int bits;
    std::memcpy(&bits, &value, sizeof(bits));
    return bits;
}

void require(bool ok, const char* message) {
    if (!ok) kl::fail(kl::Status::InvalidArgument, message);
}

// A grown struct's *_init: the defaults (`fill` sets those that are not zero) written up to
// the caller's struct_size, which is at least the first release's (`first`).
template <typename Params, typename Fill>
kl_status init_params(Params* params, size_t struct_size, size_t first, const char* name,
                      Fill&& fill) {
    return guarded([&] {
        require(params != nullptr, "params is NULL");
        if (struct_size < first)
            kl::fail(kl::Status::InvalidArgument, "struct_size is " + std::to_string(struct_size) +
                                                      ", below the first release's " + name + " (" +
                                                      std::to_string(first) + ")");
        Params p;
        std::memset(&p, 0, sizeof(p));
        const size_t size = std::min(struct_size, sizeof(p));
        p.struct_size = static_cast<uint32_t>(size);
        fill(p);
        std::memcpy(params, &p, size);  // the appended fields' defaults are all zero
    });
}

// The size protocol of output buffers (docs/design/capi.md "Buffers: the size protocol"):
// reports `needed` in *n, and says whether to write: false for a size query (out NULL, cap
// 0); InvalidArgument for a NULL out with cap > 0 or a buffer too small.
bool output_fits(size_t needed, const void* out, size_t cap, size_t* n, const char* out_name,
                 const char* unit) {
    *n = needed;
    require(out != nullptr || cap == 0, (std::string(out_name) + " is NULL but cap > 0").c_str());
    if (out == nullptr) return false;
    if (needed > cap)
        kl::fail(kl::Status::InvalidArgument, std::string(out_name) + " has room for " +
                                                  std::to_string(cap) + " " + unit +
                                                  ", the result needs " + std::to_string(needed));
    return true;
}

// Token ids out by the size protocol.
void copy_ids(const std::vector<int32_t>& ids, int32_t* out, size_t cap, size_t* n) {
    if (output_fits(ids.size(), out, cap, n, "out", "tokens") && !ids.empty())
        std::memcpy(out, ids.data(), ids.size() * sizeof(int32_t));
}

void check_struct_size(uint32_t given, size_t minimum, const char* name) {
    if (given < minimum)
        kl::fail(kl::Status::InvalidArgument,
                 std::string(name) + ".struct_size is " + std::to_string(given) +
                     ": initialise it with the matching *_default() function");
}

kl::SamplingParams to_core(const kl_sampling_params& p) {
    check_struct_size(p.struct_size, sizeof(kl_sampling_params), "kl_sampling_params");
    kl::SamplingParams s;
    s.temperature = p.temperature;
    s.top_k = p.top_k;
    s.top_p = p.top_p;
    s.min_p = p.min_p;
    s.repetition_penalty = p.repetition_penalty;
    s.repetition_window = p.repetition_window;
    s.seed = p.seed;
    kl::validate_sampling(s);
    return s;
}

}  // namespace

extern "C" {

const char* kl_version(void) {
    return KL_VERSION_STRING;
}

uint32_t kl_abi_version(void) {
    return KL_ABI_VERSION;
}

const char* kl_last_error(void) {
    return t_last_error.c_str();
}

const char* kl_status_string(kl_status status_value) {
    switch (enum_bits(status_value)) {
        case KL_OK:
            return "KL_OK";
        case KL_ERR_INVALID_ARGUMENT:
            return "KL_ERR_INVALID_ARGUMENT";
        case KL_ERR_IO:
            return "KL_ERR_IO";
        case KL_ERR_FORMAT:
            return "KL_ERR_FORMAT";
        case KL_ERR_UNSUPPORTED:
            return "KL_ERR_UNSUPPORTED";
        case KL_ERR_OUT_OF_MEMORY:
            return "KL_ERR_OUT_OF_MEMORY";
        case KL_ERR_CONTEXT_FULL:
            return "KL_ERR_CONTEXT_FULL";
        case KL_ERR_CANCELLED:
            return "KL_ERR_CANCELLED";
        case KL_ERR_DEVICE:
            return "KL_ERR_DEVICE";
        case KL_ERR_INTERNAL:
            return "KL_ERR_INTERNAL";
        case KL_ERR_BUSY:
            return "KL_ERR_BUSY";
    }
    return "KL_ERR_UNKNOWN";
}

void kl_set_log_callback(kl_log_callback cb, void* user) {
    kl::set_log_sink(cb, user);
}

// ---- model --------------------------------------------------------------------------------

kl_status kl_model_params_init(kl_model_params* params, size_t struct_size) {
    return init_params(params, struct_size, kModelParamsFirstSize, "kl_model_params",
                       [](kl_model_params& p) { p.device = KL_DEVICE_AUTO; });
}

// Parenthesised: the header makes the name a macro for callers compiled against it.
void(kl_model_params_default)(kl_model_params* params) {
    if (params) kl_model_params_init(params, kModelParamsFirstSize);
}

}  // extern "C"

namespace {

// By reference: copying an out-of-range value into a kl_weight_format would already be the
// undefined load enum_bits avoids.
kl::WeightRequest weight_request(const kl_weight_format& format) {
    const int value = enum_bits(format);
    if (value < KL_WEIGHTS_AUTO || value > KL_WEIGHTS_INT4)
        kl::fail(kl::Status::InvalidArgument,
                 "weight_format is " + std::to_string(value) + ", not a kl_weight_format value");
    return static_cast<kl::WeightRequest>(value);
}

// A C progress callback as the core takes one (false aborts); empty for NULL.
std::function<bool(float)> core_progress(kl_progress_callback cb, void* user) {
    if (!cb) return {};
    return [cb, user](float fraction) { return cb(fraction, user) == 0; };
}

// kl_model_params -> ModelLoadOptions, validated.
kl::ModelLoadOptions load_options(const kl_model_params* params) {
    kl_model_params p;
    kl_model_params_default(&p);
    if (params) {
        // An older caller's struct ends before the batching fields: they keep their defaults.
        check_struct_size(params->struct_size, kModelParamsFirstSize, "kl_model_params");
        std::memcpy(&p, params, std::min<size_t>(params->struct_size, sizeof(p)));
        if (params->struct_size < kModelParamsDevicesEnd) p.n_devices = 0;
        p.struct_size = sizeof(p);
    }
    if (p.n_devices > KL_MAX_DEVICES)
        kl::fail(kl::Status::InvalidArgument, "n_devices is " + std::to_string(p.n_devices) +
                                                  ", at most KL_MAX_DEVICES (" +
                                                  std::to_string(KL_MAX_DEVICES) + ")");
    const int device = enum_bits(p.device);
    if (device != KL_DEVICE_AUTO && device != KL_DEVICE_CPU && device != KL_DEVICE_CUDA)
        kl::fail(kl::Status::InvalidArgument,
                 "device is " + std::to_string(device) + ", not a kl_device value");
    kl::ModelLoadOptions options;
    options.weights = weight_request(p.weight_format);
    options.device = static_cast<kl::DeviceRequest>(device);
    options.device_index = p.device_index;
    options.devices.assign(p.devices, p.devices + p.n_devices);  // checked by Model
    options.n_threads = p.n_threads;
    options.max_batch = p.max_batch;
    options.batch_wait_us = p.batch_wait_us;
    options.progress = core_progress(p.progress_cb, p.progress_user);
    return options;
}

}  // namespace

extern "C" {

kl_status kl_model_load(const char* dir, const kl_model_params* params, kl_model** out) {
    return guarded([&] {
        require(out != nullptr, "out is NULL");
        *out = nullptr;
        require(dir != nullptr, "dir is NULL");
        const kl::ModelLoadOptions options = load_options(params);
        auto model = std::make_unique<kl_model>();
        model->model = kl::Model::load(dir, options);
        *out = model.release();
    });
}

kl_status kl_model_create_random(const char* config_json, uint64_t seed,
                                 const kl_model_params* params, kl_model** out) {
    return guarded([&] {
        require(out != nullptr, "out is NULL");
        *out = nullptr;
        require(config_json != nullptr, "config_json is NULL");
        const kl::ModelLoadOptions options = load_options(params);
        const kl::ModelConfig config = kl::ModelConfig::from_json(config_json, "config_json");
        auto model = std::make_unique<kl_model>();
        model->model = kl::Model::create_random(config, seed, options);
        *out = model.release();
    });
}

kl_status kl_checkpoint_quantize(const char* in_dir, const char* out_dir, kl_weight_format format,
                                 uint64_t shard_bytes) {
    return kl_checkpoint_quantize_with_progress(in_dir, out_dir, format, shard_bytes, nullptr,
                                                nullptr);
}

kl_status kl_checkpoint_quantize_with_progress(const char* in_dir, const char* out_dir,
                                               kl_weight_format format, uint64_t shard_bytes,
                                               kl_progress_callback progress_cb,
                                               void* progress_user) {
    return guarded([&] {
        require(in_dir != nullptr, "in_dir is NULL");
        require(out_dir != nullptr, "out_dir is NULL");
        const kl::WeightRequest request = weight_request(format);
        require(request == kl::WeightRequest::Fp8 || request == kl::WeightRequest::Int4,
                "format must be KL_WEIGHTS_FP8 or KL_WEIGHTS_INT4");
        kl::write_checkpoint(in_dir, out_dir, request,
                             shard_bytes ? shard_bytes : uint64_t(4) << 30,
                             core_progress(progress_cb, progress_user));
    });
}

void kl_model_free(kl_model* model) {
    delete model;
}

kl_status kl_model_info(const kl_model* model, struct kl_model_info* out) {
    return guarded([&] {
        require(model != nullptr, "model is NULL");
        require(out != nullptr, "out is NULL");
        const size_t given = out->struct_size;
        if (given < offsetof(struct kl_model_info, vocab_size) + sizeof(uint32_t))
            check_struct_size(out->struct_size, sizeof(struct kl_model_info), "kl_model_info");
        const kl::ModelConfig& c = model->model->config();
        const kl::Backend& b = model->model->backend();
        struct kl_model_info info;
        std::memset(&info, 0, sizeof(info));
        info.struct_size = static_cast<uint32_t>(std::min(given, sizeof(info)));
        info.vocab_size = static_cast<uint32_t>(c.vocab_size);
        info.hidden_size = static_cast<uint32_t>(c.hidden_size);
        info.n_layers = static_cast<uint32_t>(c.num_hidden_layers);
        info.n_kda_layers = static_cast<uint32_t>(c.n_kda_layers());
        info.n_mla_layers = static_cast<uint32_t>(c.n_mla_layers());
        info.n_experts = static_cast<uint32_t>(c.num_experts);
        info.n_experts_active = static_cast<uint32_t>(c.num_experts_per_token);
        info.max_context = static_cast<uint64_t>(c.max_context);
        info.device = static_cast<kl_device>(b.device());
        info.weight_bytes = b.weight_bytes();
        info.session_fixed_bytes = b.session_fixed_bytes();
        info.kv_bytes_per_token = b.kv_bytes_per_token();
        const kl::Tokenizer* tokenizer = model->model->tokenizer();
        info.bos_token = tokenizer ? tokenizer->bos_token() : -1;
        info.eos_token = tokenizer ? tokenizer->eos_token() : -1;
        const kl::ParameterCounts& params = model->model->parameters();
        info.n_params = params.total;
        info.n_active_params = params.active;
        info.n_routed_params = params.routed;
        info.decode_weight_bytes = params.decode_bytes(b.device());
        info.routed_weight_bytes = params.routed_bytes(b.device());
        info.n_devices = static_cast<uint32_t>(model->model->shards());
        info.eot_token = tokenizer && tokenizer->chat_format().available
                             ? tokenizer->special_id(tokenizer->chat_format().end)
                             : -1;
        // Older callers' structs are shorter: write only what they have room for.
        std::memcpy(out, &info, std::min(given, sizeof(info)));
    });
}

// ---- session ------------------------------------------------------------------------------

void kl_session_params_default(kl_session_params* params) {
    if (!params) return;
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
}

kl_status kl_session_create(kl_model* model, const kl_session_params* params, kl_session** out) {
    return guarded([&] {
        require(out != nullptr, "out is NULL");
        *out = nullptr;
        require(model != nullptr, "model is NULL");
        kl_session_params p;
        kl_session_params_default(&p);
        if (params) {
            check_struct_size(params->struct_size, sizeof(kl_session_params), "kl_session_params");
            p = *params;
        }
        auto session = std::make_unique<kl_session>();
        session->model = model->model;
        session->session = std::make_unique<kl::Session>(*model->model, p.max_context);
        *out = session.release();
    });
}

void kl_session_free(kl_session* session) {
    delete session;
}

kl_status kl_session_reset(kl_session* session) {
    return guarded([&] {
        require(session != nullptr, "session is NULL");
        const kl::SessionInUse in_use(session->in_use);
        session->session->reset();
        session->session->clear_cancel();  // a new conversation: a pending cancel is moot
        session->next_text.clear();
    });
}

kl_status kl_session_append(kl_session* session, const int32_t* tokens, size_t n,
                            kl_logits which_value, float* logits) {
    return guarded([&] {
        require(session != nullptr, "session is NULL");
        const kl::SessionInUse in_use(session->in_use);
        // n first: a binding passes an empty array as NULL, and "n is 0" is the real cause.
        require(n > 0, "n is 0: nothing to append");
        require(tokens != nullptr, "tokens is NULL");
        const int which = enum_bits(which_value);
        require(which == KL_LOGITS_NONE || which == KL_LOGITS_LAST || which == KL_LOGITS_ALL,
                "which is not a kl_logits value");
        require(which == KL_LOGITS_NONE || logits != nullptr,
                "logits is NULL but which asks for logits");
        kl::Session& s = *session->session;
        s.append(tokens, n, which == KL_LOGITS_ALL ? logits : nullptr,
                 which == KL_LOGITS_LAST ? logits : nullptr);
        session->next_text.clear();  // appended tokens are input, not streamed text
    });
}

kl_status kl_session_fill_synthetic(kl_session* session, uint64_t n_tokens, uint64_t seed) {
    return guarded([&] {
        require(session != nullptr, "session is NULL");
        const kl::SessionInUse in_use(session->in_use);
        session->session->fill_synthetic(n_tokens, seed);
    });
}

kl_status kl_session_position(const kl_session* session, uint64_t* out) {
    return guarded([&] {
        require(session != nullptr, "session is NULL");
        const kl::SessionInUse in_use(session->in_use);
        require(out != nullptr, "out is NULL");
        *out = session->session->position();
    });
}

kl_status kl_session_tokens(const kl_session* session, int32_t* out, size_t cap, size_t* n) {
    if (n) *n = 0;
    return guarded([&] {
        require(session != nullptr, "session is NULL");
        require(n != nullptr, "n is NULL");
        const kl::SessionInUse in_use(session->in_use);
        copy_ids(session->session->history(), out, cap, n);
    });
}

kl_status kl_session_fork(const kl_session* session, kl_session** out) {
    return guarded([&] {
        require(out != nullptr, "out is NULL");
        *out = nullptr;
        require(session != nullptr, "session is NULL");
        const kl::SessionInUse in_use(session->in_use);
        auto copy = std::make_unique<kl_session>();
        copy->model = session->model;
        copy->session = session->session->fork();
        copy->next_text = session->next_text;
        *out = copy.release();
    });
}

kl_status kl_session_state_size(const kl_session* session, size_t* out) {
    return guarded([&] {
        require(session != nullptr, "session is NULL");
        const kl::SessionInUse in_use(session->in_use);
        require(out != nullptr, "out is NULL");
        *out = session->session->snapshot_size();
    });
}

kl_status kl_session_state_save(const kl_session* session, void* buf, size_t cap, size_t* written) {
    return guarded([&] {
        require(session != nullptr, "session is NULL");
        const kl::SessionInUse in_use(session->in_use);
        const size_t needed = session->session->snapshot_size();
        if (written) *written = needed;
        require(buf != nullptr || cap == 0, "buf is NULL but cap > 0");
        require(buf != nullptr || written != nullptr, "buf and written are NULL: nothing to do");
        if (buf == nullptr) return;  // the size query
        if (cap < needed)
            kl::fail(kl::Status::InvalidArgument, "buffer of " + std::to_string(cap) +
                                                      " bytes is too small: the snapshot needs " +
                                                      std::to_string(needed) +
                                                      " (see kl_session_state_size)");
        session->session->save_snapshot(static_cast<uint8_t*>(buf));
    });
}

kl_status kl_session_state_load(kl_session* session, const void* buf, size_t n) {
    return guarded([&] {
        require(session != nullptr, "session is NULL");
        const kl::SessionInUse in_use(session->in_use);
        require(buf != nullptr, "buf is NULL");
        session->session->load_snapshot(static_cast<const uint8_t*>(buf), n);
        session->next_text.clear();
    });
}

void kl_session_cancel(kl_session* session) {
    if (session) session->session->request_cancel();
}

void kl_session_clear_cancel(kl_session* session) {
    if (session) session->session->clear_cancel();
}

// ---- sampling and generation --------------------------------------------------------------

void kl_sampling_params_default(kl_sampling_params* params) {
    if (!params) return;
    std::memset(params, 0, sizeof(*params));
    params->struct_size = sizeof(*params);
    params->temperature = 0.0f;
    params->top_k = 0;
    params->top_p = 1.0f;
    params->min_p = 0.0f;
    params->repetition_penalty = 1.0f;
    params->repetition_window = 64;
    params->seed = 0;
}

kl_status kl_session_sample(kl_session* session, const kl_sampling_params* params, int32_t* token) {
    return guarded([&] {
        require(session != nullptr, "session is NULL");
        const kl::SessionInUse in_use(session->in_use);
        require(params != nullptr, "params is NULL");
        require(token != nullptr, "token is NULL");
        *token = session->session->sample(to_core(*params));
    });
}

kl_status kl_generate_params_init(kl_generate_params* params, size_t struct_size) {
    return init_params(params, struct_size, kGenerateParamsFirstSize, "kl_generate_params",
                       [](kl_generate_params& p) {
                           p.max_new_tokens = 128;
                           kl_sampling_params_default(&p.sampling);
                       });
}

// Parenthesised: the header makes the name a macro for callers compiled against it.
void(kl_generate_params_default)(kl_generate_params* params) {
    if (params) kl_generate_params_init(params, kGenerateParamsFirstSize);
}

}  // extern "C"

namespace {

// kl_generate_params -> GenerateOptions, checked (stop strings, logit bias and top logprobs
// by the Generator). An older caller's struct (struct_size from the first release on) is
// read up to its size, the fields after it keep their defaults.
kl::GenerateOptions generate_options(const kl_generate_params* params) {
    kl_generate_params p;
    kl_generate_params_init(&p, sizeof(p));
    if (params) {
        check_struct_size(params->struct_size, kGenerateParamsFirstSize, "kl_generate_params");
        std::memcpy(&p, params, std::min<size_t>(params->struct_size, sizeof(p)));
    }
    require(p.n_stop_tokens == 0 || p.stop_tokens != nullptr,
            "stop_tokens is NULL but n_stop_tokens > 0");
    require(p.n_stop_strings == 0 || p.stop_strings != nullptr,
            "stop_strings is NULL but n_stop_strings > 0");
    kl::GenerateOptions options;
    options.max_new_tokens = p.max_new_tokens;
    options.sampling = to_core(p.sampling);
    if (p.n_stop_tokens) options.stop_tokens.assign(p.stop_tokens, p.stop_tokens + p.n_stop_tokens);
    for (size_t j = 0; j < p.n_stop_strings; ++j) {
        if (!p.stop_strings[j])
            kl::fail(kl::Status::InvalidArgument,
                     "stop_strings[" + std::to_string(j) + "] is NULL");
        options.stop_strings.emplace_back(p.stop_strings[j]);
    }
    require(p.n_logit_bias == 0 || (p.logit_bias_tokens != nullptr && p.logit_bias_values != nullptr),
            "logit_bias_tokens or logit_bias_values is NULL but n_logit_bias > 0");
    for (size_t j = 0; j < p.n_logit_bias; ++j)
        options.logit_bias.push_back({p.logit_bias_tokens[j], p.logit_bias_values[j]});
    options.logprobs = p.logprobs != 0 || p.n_top_logprobs > 0;
    options.n_top_logprobs = p.n_top_logprobs;
    if (p.logits_processor) {
        const kl_logits_processor processor = p.logits_processor;
        void* user = p.logits_processor_user;
        options.processor = [processor, user](float* logits, size_t vocab, const int32_t* history,
                                              size_t n_history) {
            return processor(user, logits, vocab, history, n_history);
        };
    }
    return options;
}

// The caller holds the session's in-use flag.
std::unique_ptr<kl_generator> new_generator(kl_session* session, const kl_generate_params* params) {
    auto generator = std::unique_ptr<kl_generator>(new kl_generator{
        session, kl::Generator(*session->session, generate_options(params)), {}, {}, {}});
    session->next_text.clear();  // a character kl_session_next held is moot now
    return generator;
}

}  // namespace

extern "C" {

kl_status kl_generator_create(kl_session* session, const kl_generate_params* params,
                              kl_generator** out) {
    return guarded([&] {
        require(out != nullptr, "out is NULL");
        *out = nullptr;
        require(session != nullptr, "session is NULL");
        const kl::SessionInUse in_use(session->in_use);
        std::unique_ptr<kl_generator> generator = new_generator(session, params);
        // A new generation: a cancel pending from before was aimed at what ran before it
        // (docs/design/capi.md "Cancel"); kl_session_generate, a blocking call, keeps it.
        session->session->clear_cancel();
        *out = generator.release();
    });
}

}  // extern "C"

namespace {

// Writes a step to the caller's struct, the appended fields only when its struct_size covers
// them; the generator owns the text and the alternatives.
void write_step(kl_generator& generator, kl::GeneratedStep& step, kl_generation_step* out) {
    generator.piece = std::move(step.piece);
    generator.top_tokens.clear();
    generator.top_logprobs.clear();
    for (const kl::TokenLogprob& alternative : step.top) {
        generator.top_tokens.push_back(alternative.token);
        generator.top_logprobs.push_back(alternative.logprob);
    }
    out->token = step.token;
    out->piece = generator.piece.c_str();
    out->piece_len = generator.piece.size();
    out->end = static_cast<kl_end_reason>(step.end);
    out->n_generated = static_cast<uint32_t>(generator.generator.generated());
    if (out->struct_size < sizeof(kl_generation_step)) return;
    out->logprob = step.logprob;
    out->n_top = static_cast<uint32_t>(step.top.size());
    out->top_tokens = step.top.empty() ? nullptr : generator.top_tokens.data();
    out->top_logprobs = step.top.empty() ? nullptr : generator.top_logprobs.data();
}

}  // namespace

extern "C" {

kl_status kl_generator_next(kl_generator* generator, kl_generation_step* out) {
    return guarded([&] {
        require(generator != nullptr, "generator is NULL");
        require(out != nullptr, "out is NULL");
        check_struct_size(out->struct_size, kGenerationStepFirstSize, "kl_generation_step");
        // The step runs on the generator's session: the same conflict as a direct call.
        const kl::SessionInUse in_use(generator->session->in_use);
        kl::GeneratedStep step;
        try {
            step = generator->generator.next();
        } catch (const kl::Error& e) {
            // A cancel ends the caller's loop: say so in the step too (the header's rule).
            if (e.status() == kl::Status::Cancelled) {
                kl::GeneratedStep cancelled;
                cancelled.end = kl::EndReason::Cancelled;
                write_step(*generator, cancelled, out);
            }
            throw;
        }
        write_step(*generator, step, out);
    });
}

void kl_generator_free(kl_generator* generator) {
    delete generator;
}

kl_status kl_session_generate_with_result(kl_session* session, const kl_generate_params* params,
                                          kl_token_callback cb, void* user,
                                          kl_generate_result* result) {
    kl_generate_result ended{};  // what *result receives, however the call ends
    ended.end = KL_END_ERROR;
    const kl_status status = guarded([&] {
        if (result) check_struct_size(result->struct_size, sizeof(kl_generate_result),
                                      "kl_generate_result");
        require(session != nullptr, "session is NULL");
        const kl::SessionInUse in_use(session->in_use);
        require(params != nullptr, "params is NULL");
        const std::unique_ptr<kl_generator> generator = new_generator(session, params);
        const bool text = session->model->tokenizer() != nullptr;
        for (;;) {
            kl::GeneratedStep step;
            try {
                step = generator->generator.next();
            } catch (const kl::Error& e) {
                if (e.status() == kl::Status::Cancelled) ended.end = KL_END_CANCELLED;
                throw;
            }
            ended.n_generated = generator->generator.generated();
            if (step.token == KL_NO_TOKEN || step.end == kl::EndReason::StopToken) {
                // The end: text still held comes in one last callback without a token.
                if (cb && !step.piece.empty()) cb(user, KL_NO_TOKEN, step.piece.c_str(), step.piece.size());
                ended.end = static_cast<kl_end_reason>(step.end);
                return;
            }
            if (cb && cb(user, step.token, text ? step.piece.c_str() : nullptr, step.piece.size()) != 0) {
                ended.end = KL_END_CALLBACK;
                return;
            }
            if (step.end != kl::EndReason::None) {
                ended.end = static_cast<kl_end_reason>(step.end);
                return;
            }
        }
    });
    // A struct_size too small is the one failure that leaves *result alone (it may be short).
    if (result && result->struct_size >= sizeof(kl_generate_result)) {
        result->end = ended.end;
        result->n_generated = ended.n_generated;
    }
    return status;
}

kl_status kl_session_generate(kl_session* session, const kl_generate_params* params,
                              kl_token_callback cb, void* user, size_t* n_generated) {
    kl_generate_result result{};
    result.struct_size = sizeof(result);
    const kl_status status = kl_session_generate_with_result(session, params, cb, user, &result);
    if (n_generated) *n_generated = static_cast<size_t>(result.n_generated);
    return status;
}

kl_status kl_session_next(kl_session* session, const kl_sampling_params* params, int32_t* token,
                          char* piece, size_t cap, size_t* piece_len) {
    if (piece_len) *piece_len = 0;
    return guarded([&] {
        require(session != nullptr, "session is NULL");
        const kl::SessionInUse in_use(session->in_use);
        require(params != nullptr, "params is NULL");
        require(token != nullptr, "token is NULL");
        require(piece != nullptr || cap == 0, "piece is NULL but cap > 0");
        const kl::Tokenizer* tokenizer = session->model->tokenizer();
        kl::Session& s = *session->session;
        const int32_t next = s.sample(to_core(*params));
        // The text first (on a copy of the stream), so that a piece that does not fit fails
        // before anything changed.
        kl::Utf8Stream stream = session->next_text;
        std::string text;
        if (tokenizer) stream.push(tokenizer->token_bytes(next), text);
        if (piece_len) *piece_len = text.size();
        if (piece != nullptr && text.size() + 1 > cap)
            kl::fail(kl::Status::InvalidArgument,
                     "piece has room for " + std::to_string(cap) + " bytes, the text needs " +
                         std::to_string(text.size() + 1) + " (with its NUL)");
        s.append(&next, 1, nullptr);
        session->next_text = std::move(stream);
        *token = next;
        if (piece != nullptr) {
            std::memcpy(piece, text.data(), text.size());
            piece[text.size()] = '\0';
        }
    });
}

// ---- batched decode -----------------------------------------------------------------------

}  // extern "C"

namespace {

// The sessions of a batch call, each held (kl::SessionInUse) for the call. The batch is
// checked first (NULL, a session given twice, sessions of different models), before any is
// taken: a session given twice would otherwise report BUSY, which is not the cause.
class HeldBatch {
public:
    HeldBatch(kl_session* const* sessions, size_t n) {
        require(n > 0, "n is 0: an empty batch");
        require(sessions != nullptr, "sessions is NULL");
        core_.reserve(n);
        for (size_t i = 0; i < n; ++i)
            core_.push_back(sessions[i] ? sessions[i]->session.get() : nullptr);
        kl::Session::check_batch(core_.data(), n);
        held_.reserve(n);
        for (size_t i = 0; i < n; ++i)
            held_.push_back(std::make_unique<kl::SessionInUse>(sessions[i]->in_use));
    }
    kl::Session* const* core() const { return core_.data(); }

private:
    std::vector<std::unique_ptr<kl::SessionInUse>> held_;
    std::vector<kl::Session*> core_;
};

}  // namespace

extern "C" {

kl_status kl_batch_next(kl_session* const* sessions, size_t n, const kl_sampling_params* params,
                        int32_t* tokens, char* pieces, size_t piece_stride, size_t* piece_lens) {
    return guarded([&] {
        const HeldBatch batch(sessions, n);
        require(params != nullptr, "params is NULL");
        require(tokens != nullptr, "tokens is NULL");
        require(pieces != nullptr || piece_stride == 0, "pieces is NULL but piece_stride > 0");
        std::vector<kl::SamplingParams> sampling;
        sampling.reserve(n);
        for (size_t i = 0; i < n; ++i) sampling.push_back(to_core(params[i]));
        std::vector<int32_t> next(n);
        kl::Session::sample_batch(batch.core(), sampling.data(), n, next.data());
        // The texts first (on copies of the streams), so that one that does not fit fails
        // before anything changed.
        std::vector<kl::Utf8Stream> streams;
        std::vector<std::string> texts(n);
        streams.reserve(n);
        for (size_t i = 0; i < n; ++i) {
            streams.push_back(sessions[i]->next_text);
            const kl::Tokenizer* tokenizer = sessions[i]->model->tokenizer();
            if (tokenizer) streams[i].push(tokenizer->token_bytes(next[i]), texts[i]);
            if (pieces != nullptr && texts[i].size() + 1 > piece_stride)
                kl::fail(kl::Status::InvalidArgument,
                         "sessions[" + std::to_string(i) + "]: piece_stride has room for " +
                             std::to_string(piece_stride) + " bytes, the text needs " +
                             std::to_string(texts[i].size() + 1) + " (with its NUL)");
        }
        kl::Session::append_batch(batch.core(), next.data(), n);
        for (size_t i = 0; i < n; ++i) {
            sessions[i]->next_text = std::move(streams[i]);
            tokens[i] = next[i];
            if (piece_lens) piece_lens[i] = texts[i].size();
            if (pieces != nullptr) {
                char* out = pieces + i * piece_stride;
                std::memcpy(out, texts[i].data(), texts[i].size());
                out[texts[i].size()] = '\0';
            }
        }
    });
}

kl_status kl_batch_append(kl_session* const* sessions, size_t n, const int32_t* tokens) {
    return guarded([&] {
        const HeldBatch batch(sessions, n);
        require(tokens != nullptr, "tokens is NULL");
        kl::Session::append_batch(batch.core(), tokens, n);
        for (size_t i = 0; i < n; ++i)
            sessions[i]->next_text.clear();  // appended tokens are input, not streamed text
    });
}

// ---- tokenizer and chat format --------------------------------------------------------

}  // extern "C"

namespace {

const kl::Tokenizer& tokenizer_of(const kl_model* model) {
    require(model != nullptr, "model is NULL");
    const kl::Tokenizer* tokenizer = model->model->tokenizer();
    if (!tokenizer)
        kl::fail(kl::Status::Unsupported,
                 "this model has no tokenizer (no tiktoken.model in its folder): pass token ids "
                 "(kl_session_append)");
    return *tokenizer;
}

// Copies `text` to out (cap bytes) by the size protocol, NUL-terminated when there is room.
void copy_text(const std::string& text, char* out, size_t cap, size_t* len) {
    require(len != nullptr, "len is NULL");
    if (!output_fits(text.size(), out, cap, len, "out", "bytes")) return;
    if (!text.empty()) std::memcpy(out, text.data(), text.size());
    if (cap > text.size()) out[text.size()] = '\0';
}

// The caller's messages as the core's; InvalidArgument for a NULL array, role or content.
std::vector<kl::ChatMessage> chat_messages(const kl_chat_message* msgs, size_t n) {
    require(msgs != nullptr || n == 0, "msgs is NULL but n > 0");
    std::vector<kl::ChatMessage> messages(n);
    for (size_t i = 0; i < n; ++i) {
        if (!msgs[i].role || !msgs[i].content)
            kl::fail(kl::Status::InvalidArgument,
                     "msgs[" + std::to_string(i) + "]." + (msgs[i].role ? "content" : "role") +
                         " is NULL");
        messages[i] = {msgs[i].role, msgs[i].content};
    }
    return messages;
}

}  // namespace

extern "C" {

kl_status kl_tokenize(const kl_model* model, const char* text, size_t len, int parse_special,
                      int32_t* out, size_t cap, size_t* n) {
    if (n) *n = 0;
    return guarded([&] {
        const kl::Tokenizer& tokenizer = tokenizer_of(model);
        require(n != nullptr, "n is NULL");
        require(text != nullptr || len == 0, "text is NULL but len > 0");
        require(out != nullptr || cap == 0, "out is NULL but cap > 0");
        copy_ids(tokenizer.encode(std::string_view(text ? text : "", len), parse_special != 0),
                 out, cap, n);
    });
}

kl_status kl_detokenize(const kl_model* model, const int32_t* tokens, size_t n, char* out,
                        size_t cap, size_t* len) {
    if (len) *len = 0;
    return guarded([&] {
        const kl::Tokenizer& tokenizer = tokenizer_of(model);
        require(tokens != nullptr || n == 0, "tokens is NULL but n > 0");
        copy_text(tokenizer.decode(tokens, n), out, cap, len);
    });
}

kl_status kl_chat_template_apply(const kl_model* model, const kl_chat_message* msgs, size_t n,
                                 int add_generation_prompt, char* out, size_t cap, size_t* len) {
    if (len) *len = 0;
    return guarded([&] {
        const kl::Tokenizer& tokenizer = tokenizer_of(model);
        const std::vector<kl::ChatMessage> messages = chat_messages(msgs, n);
        copy_text(tokenizer.chat_format().render(messages, add_generation_prompt != 0), out, cap,
                  len);
    });
}

// kl_chat_tokenize: the chat format's markup as special tokens, content as plain text
// (core/tokenizer/chat_format.h encode_chat; docs/design/capi.md "Chat format and untrusted
// text").
kl_status kl_chat_tokenize(const kl_model* model, const kl_chat_message* msgs, size_t n,
                           int add_generation_prompt, int32_t* out, size_t cap, size_t* n_out) {
    if (n_out) *n_out = 0;
    return guarded([&] {
        const kl::Tokenizer& tokenizer = tokenizer_of(model);
        require(n_out != nullptr, "n_out is NULL");
        require(out != nullptr || cap == 0, "out is NULL but cap > 0");
        const std::vector<kl::ChatMessage> messages = chat_messages(msgs, n);
        copy_ids(kl::encode_chat(tokenizer, messages, add_generation_prompt != 0), out, cap, n_out);
    });
}

}  // extern "C"
