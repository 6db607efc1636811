// kimi: the command-line face of the runtime, written against the public C API only.
//   kimi info DIR
//   kimi run DIR --prompt TEXT [--chat] | --prompt-tokens 1,2,3  [--max-new N] [sampling options]
//   kimi chat DIR [--system TEXT] [sampling options]
//   kimi tokenize DIR [--parse-special]   (stdin -> ids)
//   kimi bench DIR|--random CONFIG [--prompt-len 128,512] [--context 0,1024] [--decode 64]
//   kimi quantize IN_DIR OUT_DIR --format fp8|int4 [--shard-mb N]
//   kimi accuracy DIR|--random CONFIG --weights fp8|int4 [--positions 2000] [--text FILE]
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cancel_on_signal.h"
#include "cli.h"
#include "kimi_linear.h"
#include "progress_bar.h"
#include "signal_stop.h"
#include "truncated_config.h"

namespace kimi {

const char* kUsage =
    "usage:\n"
    "  kimi info DIR\n"
    "  kimi run DIR (--prompt TEXT [--chat] | --prompt-tokens 1,2,3) [--max-new N]\n"
    "           [--temperature T] [--top-k K] [--top-p P] [--min-p M] [--repeat-penalty R]\n"
    "           [--seed S] [--stop-tokens a,b] [--stop TEXT]\n"
    "           --prompt text may hold chat tokens; --chat sends it as a user message in\n"
    "           the model's chat format and stops at the end of the answer. Ctrl-C (SIGINT)\n"
    "           or SIGTERM stops the generation, what it printed kept: exit 130 or 143\n"
    "  kimi chat DIR [--system TEXT] [--max-new N] [sampling options]  (one message a line;\n"
    "           Ctrl-C during a reply ends the reply there, the conversation keeping what it\n"
    "           said (during the message's prefill: the message dropped); at the prompt, or\n"
    "           SIGTERM, it ends kimi. A message longer than the context left is dropped\n"
    "           with an error, and the chat goes on)\n"
    "  kimi tokenize DIR [--parse-special]  (reads stdin, prints the token ids)\n"
    "  kimi bench DIR [--prompt-len 128,512] [--context 0,1024] [--decode N] [--repeats N]\n"
    "             [--logprobs K]  (decode through a generator reporting logprobs + K "
    "alternatives)\n"
    "           [--bandwidth-gbs 3000] [--matrix-tflops 794]  (floors: the H100's measured rates)\n"
    "           [--batch 1,8,64] [--batch-only]  (batched decode at each --context:\n"
    "           kl_batch_next, and as many threads calling kl_session_generate on a model with\n"
    "           max_batch = the largest; --batch-only skips the prefill and one-session tables)\n"
    "  kimi bench --random CONFIG.json [--layers N] [--seed S] [...]  (random weights, no files;\n"
    "           --layers keeps the first N layers of the config's pattern)\n"
    "  kimi quantize IN_DIR OUT_DIR --format fp8|int4 [--shard-mb 4096]  (writes a sharded\n"
    "           FP8 block-scaled or INT4 pack-quantized checkpoint; Ctrl-C stops it and removes\n"
    "           what it wrote, exit 130)\n"
    "  kimi accuracy DIR|--random CONFIG.json --weights fp8|int4 [--positions 2000] [--seq 256]\n"
    "           [--text FILE] [--seed S]  (logits of the format against bf16: mean KL divergence\n"
    "           and top-1 agreement; tokens of FILE, else random ids)\n"
    "common options: --threads N (0 = all cores), --device auto|cpu|cuda, --device-index I,\n"
    "                --devices 0,1,... (the model split over these devices, one shard each;\n"
    "                at most 8; on the CPU the shards 0..n-1, run on threads),\n"
    "                --max-batch N --batch-wait-us U (decode batching across threads),\n"
    "                --weights auto|bf16|fp8|int4 (the weights' form once loaded)\n"
    "Ctrl-C (SIGINT) or SIGTERM during a model load, bench or accuracy cancels it: exit 130\n"
    "or 143\n";

Options parse(int argc, char** argv) {
    if (argc < 2) throw UsageError{"no command"};
    Options o;
    o.command = argv[1];
    if (o.command == "help" || o.command == "--help" || o.command == "--version") return o;
    int first_option = 3;
    if (argc >= 3 && std::string(argv[2]).rfind("--", 0) == 0)
        first_option = 2;  // no folder: `kimi bench --random CONFIG.json`
    else if (argc < 3)
        throw UsageError{o.command + " needs a model folder"};
    else
        o.dir = argv[2];
    if (o.command == "quantize") {  // kimi quantize IN_DIR OUT_DIR ...
        if (argc < 4 || std::string(argv[3]).rfind("--", 0) == 0)
            throw UsageError{"quantize needs an input and an output folder"};
        o.out_dir = argv[3];
        first_option = 4;
    }
    for (int i = first_option; i < argc; ++i) {
        std::string flag = argv[i];
        if (flag.rfind("--", 0) != 0) throw UsageError{"unexpected argument \"" + flag + "\""};
        if (flag == "--chat" || flag == "--parse-special" || flag == "--batch-only") {  // switches
            o.values[flag.substr(2)] = "1";
            continue;
        }
        if (i + 1 >= argc) throw UsageError{flag + " needs a value"};
        o.values[flag.substr(2)] = argv[++i];
    }
    return o;
}

void hold_for_signal(const char* hook, const std::string& where) {
    std::fprintf(stderr, "kimi: %s: held at %s for a signal\n", hook, where.c_str());
    for (int i = 0; i < 6000 && !kimi::stop_signal(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

void before_measurement() {
    check_signal();
    static const char* const at = std::getenv("KIMI_TEST_HOLD_MEASURE");
    static unsigned long measured = 0;  // bench and accuracy measure on one thread
    if (at && ++measured == std::strtoul(at, nullptr, 10)) {
        hold_for_signal("KIMI_TEST_HOLD_MEASURE", "measurement " + std::to_string(measured));
        std::this_thread::sleep_for(std::chrono::milliseconds(100));  // CancelOnSignal: 10 ms
    }
}

// A load's or a checkpoint write's progress: the bar on a terminal, and a stop once SIGINT or
// SIGTERM came (signal_stop.h), which the library answers by cleaning up (a load frees what it
// read, a write removes what it wrote). hold_env names a test hook: a fraction at whose first
// report at or past it the work is held until a signal comes.
struct StopProgress {
    StopProgress(const char* label, const char* hold_env)
        : bar{label}, hold_env(hold_env), hold_at(std::getenv(hold_env)) {}
    kimi::ProgressBar bar;
    const bool terminal = isatty(STDERR_FILENO);
    const char* hold_env;
    const char* hold_at;
    std::atomic<bool> held{false};  // a split model's shards may report from their threads
};

int stop_progress(float fraction, void* user) {
    auto* progress = static_cast<StopProgress*>(user);
    if (progress->hold_at && fraction >= std::strtof(progress->hold_at, nullptr) &&
        !progress->held.exchange(true)) {
        if (progress->bar.shown >= 0) std::fputc('\n', stderr), progress->bar.shown = -1;
        hold_for_signal(progress->hold_env, std::to_string(static_cast<int>(100 * fraction)) + "%");
    }
    if (kimi::stop_signal()) {
        if (progress->bar.shown >= 0) std::fputc('\n', stderr);  // end the bar's line
        return 1;
    }
    return progress->terminal ? kimi::progress_bar(fraction, &progress->bar) : 0;
}

SessionHandle new_session(kl_model* model) {
    kl_session* session = nullptr;
    check(kl_session_create(model, nullptr, &session));
    return SessionHandle(session, &kl_session_free);
}

// The config's first `layers` layers (tools/common/truncated_config.h), a usage error otherwise.
std::string truncate_layers(const std::string& config_text, int64_t layers) {
    try {
        return kl_tools::truncate_layers(config_text, layers);
    } catch (const std::invalid_argument& e) {
        throw UsageError{e.what()};
    }
}

kl_weight_format weight_format(const std::string& name, const char* flag, bool auto_allowed) {
    if (name == "fp8") return KL_WEIGHTS_FP8;
    if (name == "int4") return KL_WEIGHTS_INT4;
    if (auto_allowed && name == "bf16") return KL_WEIGHTS_BF16;
    if (auto_allowed && name == "auto") return KL_WEIGHTS_AUTO;
    throw UsageError{std::string(flag) +
                     (auto_allowed ? " must be auto, bf16, fp8 or int4" : " must be fp8 or int4")};
}

ModelHandle load(const Options& o) {
    kl_model_params params;
    kl_model_params_default(&params);
    params.n_threads = static_cast<int32_t>(o.integer("threads", 0, 0, INT32_MAX));
    const std::string device = o.get("device", "auto");
    if (device == "cpu")
        params.device = KL_DEVICE_CPU;
    else if (device == "cuda")
        params.device = KL_DEVICE_CUDA;
    else if (device != "auto")
        throw UsageError{"--device must be auto, cpu or cuda"};
    params.device_index = static_cast<int32_t>(o.integer("device-index", 0, 0, INT32_MAX));
    if (o.has("devices")) {  // the entries themselves (repeated, negative...) the library checks
        const std::vector<int32_t> devices = o.ints("devices", "");
        if (devices.size() > KL_MAX_DEVICES)
            throw UsageError{"--devices lists " + std::to_string(devices.size()) +
                             " devices, at most " + std::to_string(KL_MAX_DEVICES)};
        params.n_devices = static_cast<uint32_t>(devices.size());
        std::copy(devices.begin(), devices.end(), params.devices);
    }
    // Decode batching across threads: bench --batch turns it on for its threaded runs.
    params.max_batch = static_cast<uint32_t>(o.integer("max-batch", 0, 0, UINT32_MAX));
    params.batch_wait_us = static_cast<uint32_t>(o.integer("batch-wait-us", 0, 0, UINT32_MAX));
    params.weight_format = weight_format(o.get("weights", "auto"), "--weights", true);
    if (o.has("batch") && !o.has("max-batch")) {
        const std::vector<int32_t> batches = o.ints("batch", "1");
        params.max_batch = static_cast<uint32_t>(*std::max_element(batches.begin(), batches.end()));
    }
    // The bar on a terminal; SIGINT or SIGTERM cancel the load (KIMI_TEST_HOLD_LOAD: its hook).
    StopProgress progress("loading", "KIMI_TEST_HOLD_LOAD");
    params.progress_cb = stop_progress;
    params.progress_user = &progress;
    std::string text;
    if (o.has("random")) {
        std::ifstream in(o.get("random", ""));
        if (!in) throw UsageError{"cannot read " + o.get("random", "")};
        text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        if (o.has("layers")) text = truncate_layers(text, o.integer("layers", 0, 0, INT32_MAX));
    } else if (o.dir.empty()) {
        throw UsageError{o.command + " needs a model folder"};
    }
    kl_model* model = nullptr;
    const kimi::SignalStop stop;
    const kl_status status =
        o.has("random") ? kl_model_create_random(text.c_str(), o.seed("seed"), &params, &model)
                        : kl_model_load(o.dir.c_str(), &params, &model);
    ModelHandle handle(model, &kl_model_free);
    check(status);
    check_signal();  // one that came after the last report
    return handle;
}

std::string human_bytes(uint64_t bytes) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(bytes);
    int u = 0;
    while (v >= 1024.0 && u < 4) v /= 1024.0, ++u;
    char text[32];
    std::snprintf(text, sizeof(text), u ? "%.1f %s" : "%.0f %s", v, units[u]);
    return text;
}

struct kl_model_info model_info(const kl_model* model) {
    struct kl_model_info info = {};
    info.struct_size = sizeof(info);
    check(kl_model_info(model, &info));
    return info;
}

int cmd_info(const Options& o) {
    const ModelHandle model = load(o);
    const struct kl_model_info i = model_info(model.get());
    std::printf(
        "vocab_size: %u\nhidden_size: %u\nn_layers: %u\nn_kda_layers: %u\n"
        "n_mla_layers: %u\nn_experts: %u\nn_experts_active: %u\nmax_context: %llu\n"
        "device: %s\nweight_bytes: %s\nsession_fixed_bytes: %s\nkv_bytes_per_token: %s\n",
        i.vocab_size, i.hidden_size, i.n_layers, i.n_kda_layers, i.n_mla_layers, i.n_experts,
        i.n_experts_active, static_cast<unsigned long long>(i.max_context),
        i.device == KL_DEVICE_CUDA ? "cuda" : "cpu", human_bytes(i.weight_bytes).c_str(),
        human_bytes(i.session_fixed_bytes).c_str(), human_bytes(i.kv_bytes_per_token).c_str());
    if (i.n_devices > 1) std::printf("n_devices: %u\n", i.n_devices);  // split, one shard each
    return 0;
}

// One tokenizer pass: kl_tokenize never needs more than 3 ids a byte (kimi_linear.h), so
// the buffer is sized up front instead of asking first (a paste can be megabytes).
std::vector<int32_t> tokenize(const kl_model* model, const std::string& text, int parse_special) {
    size_t n = 0;
    std::vector<int32_t> ids(3 * text.size() + 1);
    check(kl_tokenize(model, text.data(), text.size(), parse_special, ids.data(), ids.size(), &n));
    ids.resize(n);
    return ids;
}

std::vector<int32_t> chat_ids(const kl_model* model, const std::vector<kl_chat_message>& messages,
                              bool add_generation_prompt) {
    size_t n = 0;  // the size query (a NULL buffer): KL_OK with the count
    check(kl_chat_tokenize(model, messages.data(), messages.size(), add_generation_prompt,
                           nullptr, 0, &n));
    std::vector<int32_t> ids(n);
    check(kl_chat_tokenize(model, messages.data(), messages.size(), add_generation_prompt,
                           ids.data(), ids.size(), &n));
    return ids;
}

int32_t special_token(const kl_model* model, const char* text) {
    const std::vector<int32_t> ids = tokenize(model, text);
    return ids.size() == 1 ? ids[0] : -1;
}

kl_generate_params generate_params(const Options& o) {
    kl_generate_params gen;
    kl_generate_params_default(&gen);
    gen.max_new_tokens = static_cast<uint32_t>(o.integer("max-new", 32, 0, UINT32_MAX));
    gen.sampling.temperature = static_cast<float>(o.number("temperature", 0.0));
    gen.sampling.top_k = static_cast<int32_t>(o.integer("top-k", 0, 0, INT32_MAX));
    gen.sampling.top_p = static_cast<float>(o.number("top-p", 1.0));
    gen.sampling.min_p = static_cast<float>(o.number("min-p", 0.0));
    gen.sampling.repetition_penalty = static_cast<float>(o.number("repeat-penalty", 1.0));
    gen.sampling.seed = o.seed("seed");
    return gen;
}

// KIMI_TEST_HOLD_GENERATE=N, a test hook: the first generation to stream N tokens is held
// once it printed the Nth, until a signal comes.
void hold_generation(size_t tokens) {
    static const char* const at = std::getenv("KIMI_TEST_HOLD_GENERATE");
    static std::atomic<bool> held{false};
    if (at && tokens == std::strtoul(at, nullptr, 10) && !held.exchange(true))
        hold_for_signal("KIMI_TEST_HOLD_GENERATE", "token " + std::to_string(tokens));
}

int print_piece(void* user, int32_t token, const char* piece, size_t piece_len) {
    auto* stream = static_cast<Stream*>(user);
    if (token != KL_NO_TOKEN) ++stream->tokens;
    if (!stream->text_mode) {
        std::printf("%d ", token);
    } else if (piece_len) {
        std::fwrite(piece, 1, piece_len, stdout);
    }
    std::fflush(stdout);
    if (token != KL_NO_TOKEN) hold_generation(stream->tokens);
    return kimi::stop_signal() ? 1 : 0;
}

int cmd_run(const Options& o) {
    if (o.has("prompt") == o.has("prompt-tokens"))
        throw UsageError{"run needs one of --prompt TEXT and --prompt-tokens 1,2,3"};
    const ModelHandle model = load(o);
    std::vector<int32_t> stops = o.ints("stop-tokens", "");
    std::vector<int32_t> prompt;
    Stream stream;
    if (o.has("prompt")) {
        const std::string text = o.get("prompt", "");
        if (o.has("chat")) {
            prompt = chat_ids(model.get(), {{"user", text.c_str()}}, true);
            stops.push_back(special_token(model.get(), "<|im_end|>"));
        } else {
            prompt = tokenize(model.get(), text);
        }
        const int32_t eos = model_info(model.get()).eos_token;
        if (eos >= 0) stops.push_back(eos);
    } else {
        prompt = o.ints("prompt-tokens", "");
        stream.text_mode = false;
    }
    const std::string stop_text = o.get("stop", "");
    const char* stop_strings[] = {stop_text.c_str()};

    kl_generate_params gen = generate_params(o);
    gen.stop_tokens = stops.data();
    gen.n_stop_tokens = stops.size();
    if (o.has("stop")) gen.stop_strings = stop_strings, gen.n_stop_strings = 1;

    // SIGINT or SIGTERM stop the prefill or the generation (what was printed stays): main
    // reports "cancelled", exit 128 + the signal.
    const SessionHandle session = new_session(model.get());
    const kimi::SignalStop stop;
    const CancelOnSignal cancel(session.get());
    const auto prefill_start = Clock::now();
    check(kl_session_append(session.get(), prompt.data(), prompt.size(), KL_LOGITS_NONE, nullptr));
    const double prefill_s = seconds_since(prefill_start);

    size_t generated = 0;
    const auto decode_start = Clock::now();
    const kl_status status =
        kl_session_generate(session.get(), &gen, print_piece, &stream, &generated);
    const double decode_s = seconds_since(decode_start);
    std::printf("\n");
    std::fflush(stdout);
    std::fprintf(stderr, "prefill: %zu tokens, %.1f tokens/s; decode: %zu tokens, %.2f ms/token\n",
                 prompt.size(), prompt.size() / prefill_s, generated,
                 generated ? 1000.0 * decode_s / generated : 0.0);
    check(status);
    check_signal();  // the callback stopped it, or it came once the generation had ended
    return 0;
}

int cmd_tokenize(const Options& o) {
    const ModelHandle model = load(o);
    const std::string text((std::istreambuf_iterator<char>(std::cin)),
                           std::istreambuf_iterator<char>());
    const std::vector<int32_t> ids = tokenize(model.get(), text, o.has("parse-special") ? 1 : 0);
    for (size_t i = 0; i < ids.size(); ++i) std::printf(i ? " %d" : "%d", ids[i]);
    std::printf("\n");
    return 0;
}

}  // namespace kimi

using namespace kimi;

int cmd_quantize(const Options& o) {
    if (!o.has("format")) throw UsageError{"quantize needs --format fp8|int4"};
    const kl_weight_format format = weight_format(o.get("format", ""), "--format", false);
    const double shard_mb = o.number("shard-mb", 4096);
    if (!(shard_mb > 0)) throw UsageError{"--shard-mb must be positive"};
    // The bar on a terminal; SIGINT or SIGTERM stop the write, which the library answers by
    // removing what it wrote (KIMI_TEST_HOLD_QUANTIZE: its hook).
    StopProgress progress("quantizing", "KIMI_TEST_HOLD_QUANTIZE");
    const kimi::SignalStop stop;
    check(kl_checkpoint_quantize_with_progress(o.dir.c_str(), o.out_dir.c_str(), format,
                                               static_cast<uint64_t>(shard_mb * 1024 * 1024),
                                               stop_progress, &progress));
    std::printf("wrote %s (%s weights) from %s\n", o.out_dir.c_str(), o.get("format", "").c_str(),
                o.dir.c_str());
    return 0;
}

int main(int argc, char** argv) {
    try {
        const Options o = parse(argc, argv);
        if (o.command == "help" || o.command == "--help") {
            std::fputs(kUsage, stdout);
            return 0;
        }
        if (o.command == "--version") {
            std::printf("kimi %s (ABI %u)\n", kl_version(), kl_abi_version());
            return 0;
        }
        if (o.command == "info") return cmd_info(o);
        if (o.command == "run") return cmd_run(o);
        if (o.command == "bench") return cmd_bench(o);
        if (o.command == "chat") return cmd_chat(o);
        if (o.command == "tokenize") return cmd_tokenize(o);
        if (o.command == "quantize") return cmd_quantize(o);
        if (o.command == "accuracy") return cmd_accuracy(o);
        throw UsageError{"unknown command \"" + o.command + "\""};
    } catch (const UsageError& e) {
        std::fprintf(stderr, "kimi: %s\n%s", e.message.c_str(), kUsage);
        return 2;
    } catch (const Failure& f) {
        // A signal stopped it (signal_stop.h): 128 + the signal, as a shell reports its kill.
        if (const int sig = kimi::stop_signal(); f.status == KL_ERR_CANCELLED && sig) {
            std::fprintf(stderr, "kimi: cancelled by %s\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
            return 128 + sig;
        }
        std::fprintf(stderr, "error: %s: %s\n", kl_status_string(f.status), f.message.c_str());
        return 1;
    }
}
