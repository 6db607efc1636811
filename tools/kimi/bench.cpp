// kimi bench: prefill and decode rates of a model (a folder or random weights of a config),
// each next to its bandwidth or FLOP floor.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cancel_on_signal.h"
#include "cli.h"
#include "kimi_linear.h"

namespace kimi {

std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
    return "unknown CPU";
}

// What one token costs at best: the weight bytes a decode step must read (kl_model_info's
// decode_weight_bytes, in the form the backend holds them: fp32, bf16, FP8 or INT4) and the
// matrix FLOPs of prefill (the active parameters but the lm_head, which prefill runs for the
// last token only).
struct Floors {
    double decode_weight_bytes = 0;  // per token
    double prefill_flops = 0;        // per token, weight FLOPs (attention not counted)
};

Floors floors(const struct kl_model_info& info) {
    const double lm_head = static_cast<double>(info.vocab_size) * info.hidden_size;
    Floors f;
    f.decode_weight_bytes = static_cast<double>(info.decode_weight_bytes);
    f.prefill_flops = 2.0 * (static_cast<double>(info.n_active_params) - lm_head);
    return f;
}

SessionHandle new_session(kl_model* model, uint64_t capacity) {
    kl_session_params params;
    kl_session_params_default(&params);
    params.max_context = capacity;
    kl_session* session = nullptr;
    check(kl_session_create(model, &params, &session));
    return SessionHandle(session, &kl_session_free);
}

// The bytes a batched step of `batch` sessions at `context` must read at least: the weights
// but the routed experts, the distinct experts the batch touches (expected number under
// uniform routing: E (1 - (1 - k/E)^B) per layer, a share of routed_weight_bytes), and every
// session's state (read and written) and cache.
double batch_floor_bytes(const struct kl_model_info& info, const Floors& floor, int batch,
                         int32_t context) {
    const double routed = static_cast<double>(info.routed_weight_bytes);
    const double share =
        info.n_experts ? static_cast<double>(info.n_experts_active) / info.n_experts : 0.0;
    const double touched = 1.0 - std::pow(1.0 - share, batch);
    const double weights = floor.decode_weight_bytes + routed * (touched - share);
    return weights + batch * (2.0 * info.session_fixed_bytes +
                              static_cast<double>(context) * info.kv_bytes_per_token);
}

// Batched decode at each context: B sessions advanced by kl_batch_next (median step), then
// the same B sessions continued by B threads each calling kl_session_generate for as many
// tokens, whose steps the model (loaded with max_batch = the largest B) batches (aggregate
// rate over the whole run).
void bench_batches(kl_model* model, const struct kl_model_info& info, const Floors& floor,
                   const std::vector<int32_t>& contexts, const std::vector<int32_t>& batches,
                   int steps, double bandwidth) {
    std::printf("\n%8s %6s %12s %14s %12s %14s %8s %14s\n", "context", "batch", "step ms p50",
                "tokens/s", "floor ms", "floor tok/s", "of floor", "threads tok/s");
    for (int32_t context : contexts) {
        for (int32_t batch : batches) {
            if (batch < 1) throw UsageError{"--batch sizes must be positive"};
            std::vector<SessionHandle> sessions;
            std::vector<kl_session*> raw;
            const uint64_t capacity = static_cast<uint64_t>(context) + 2 * steps + 8;
            kl_status made = KL_OK;
            for (int32_t i = 0; i < batch && made == KL_OK; ++i) {
                kl_session_params params;
                kl_session_params_default(&params);
                params.max_context = capacity;
                kl_session* s = nullptr;
                made = kl_session_create(model, &params, &s);
                if (made != KL_OK) break;
                sessions.emplace_back(s, &kl_session_free);
                raw.push_back(s);
                made = kl_session_fill_synthetic(s, static_cast<uint64_t>(std::max(context, 1)),
                                                 100 + i);
            }
            if (made != KL_OK) {  // the device's memory ends before this batch does
                std::printf("%8d %6d   %s\n", context, batch, kl_last_error());
                continue;
            }
            std::vector<kl_sampling_params> params(batch);
            for (auto& p : params) kl_sampling_params_default(&p);
            std::vector<int32_t> tokens(batch);
            std::vector<double> step_ms;
            const CancelOnSignal cancel(raw[0]);  // a cancel pending on one stops the batch
            for (int s = 0; s < steps; ++s) {
                before_measurement();
                const auto start = Clock::now();
                check(kl_batch_next(raw.data(), raw.size(), params.data(), tokens.data(), nullptr,
                                    0, nullptr));
                step_ms.push_back(1000.0 * seconds_since(start));
            }
            std::sort(step_ms.begin(), step_ms.end());
            const double p50 = step_ms[step_ms.size() / 2];
            const double floor_ms =
                1e3 * batch_floor_bytes(info, floor, batch, context) / bandwidth;

            std::vector<std::thread> threads;
            std::vector<kl_status> status(batch, KL_OK);
            std::vector<size_t> generated(batch, 0);
            kl_generate_params generate;
            kl_generate_params_default(&generate);
            generate.max_new_tokens = static_cast<uint32_t>(steps);  // no stop tokens: all of them
            const auto start = Clock::now();
            for (int32_t i = 0; i < batch; ++i)
                threads.emplace_back([&, i] {
                    // A signal stops each generation between two tokens (its callback).
                    const kl_token_callback stop = [](void*, int32_t, const char*, size_t) {
                        return stop_signal() ? 1 : 0;
                    };
                    status[i] =
                        kl_session_generate(raw[i], &generate, stop, nullptr, &generated[i]);
                });
            for (auto& t : threads) t.join();
            size_t total = 0;
            for (size_t n : generated) total += n;
            const double threaded = static_cast<double>(total) / seconds_since(start);
            for (kl_status st : status) check(st);
            check_signal();  // the threads stopped early
            std::printf("%8d %6d %12.3f %14.1f %12.3f %14.1f %7.0f%% %14.1f\n", context, batch, p50,
                        batch * 1e3 / p50, floor_ms, batch * 1e3 / floor_ms, 100.0 * floor_ms / p50,
                        threaded);
            std::fflush(stdout);
        }
    }
}

// Prefill: best of the repeats, fresh session each. Decode: the median time of one
// generated token (kl_session_next: sample from the last logits, append it), after a
// synthetic context of the given length (kl_session_fill_synthetic). Floors: bytes over the
// copy bandwidth, FLOPs over the matrix rate (--bandwidth-gbs, --matrix-tflops: the H100's
// measured 3000 GB/s and 794 TFLOP/s by default, docs/design/kernels.md). SIGINT or SIGTERM
// stop it between two measured calls, or in one through kl_session_cancel (a long prefill).
int cmd_bench(const Options& o) {
    const std::vector<int32_t> lengths = o.ints("prompt-len", "128,512");
    const std::vector<int32_t> contexts = o.ints("context", "0");
    const int decode_steps = static_cast<int>(o.integer("decode", 64, 1, INT32_MAX));
    const int repeats = static_cast<int>(o.integer("repeats", 3, 1, INT32_MAX));
    // --logprobs N: decode steps also report log-probabilities and N alternatives (-1: off).
    const int top_logprobs = static_cast<int>(o.integer("logprobs", -1, -1, INT32_MAX));
    if (top_logprobs > KL_MAX_TOP_LOGPROBS)
        throw UsageError{"--logprobs must be at most " + std::to_string(KL_MAX_TOP_LOGPROBS)};
    const int threads = static_cast<int>(o.integer("threads", 0, 0, INT32_MAX));
    const double bandwidth = o.number("bandwidth-gbs", 3000.0) * 1e9;
    const double matrix_rate = o.number("matrix-tflops", 794.0) * 1e12;
    const ModelHandle model = load(o);
    const SignalStop stop;  // the measurements' (see before_measurement)
    const struct kl_model_info info = model_info(model.get());
    const Floors floor = floors(info);
    std::mt19937 rng(1234);
    std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(info.vocab_size) - 1);

    if (info.device == KL_DEVICE_CPU)
        std::printf("machine: %s, %u hardware threads, %d worker threads\n", cpu_model().c_str(),
                    std::thread::hardware_concurrency(),
                    threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency()));
    const std::string split =
        info.n_devices > 1 ? " x " + std::to_string(info.n_devices) + " devices" : "";
    std::printf("model: %s (%u layers, hidden %u, vocab %u, weights %s, %s%s)\n",
                o.has("random") ? ("random " + o.get("random", "")).c_str() : o.dir.c_str(),
                info.n_layers, info.hidden_size, info.vocab_size,
                human_bytes(info.weight_bytes).c_str(),
                info.device == KL_DEVICE_CUDA ? "cuda" : "cpu", split.c_str());
    std::printf(
        "floors: %.0f GB/s copy, %.0f TFLOP/s matrix; decode reads %s of weights + "
        "2 x %s of KDA state per token; prefill %.2f GFLOP per token\n",
        bandwidth / 1e9, matrix_rate / 1e12,
        human_bytes(static_cast<uint64_t>(floor.decode_weight_bytes)).c_str(),
        human_bytes(info.session_fixed_bytes).c_str(), floor.prefill_flops / 1e9);

    if (!o.has("batch-only")) {  // prefill and one-session decode
        std::printf("\n%10s %12s %14s %12s %8s\n", "prompt", "prefill ms", "tokens/s", "floor ms",
                    "ratio");
        std::vector<float> logits(info.vocab_size);
        for (int32_t length : lengths) {
            std::vector<int32_t> prompt(static_cast<size_t>(length));
            for (auto& t : prompt) t = pick(rng);
            double best = 1e30;
            for (int r = 0; r < repeats; ++r) {
                SessionHandle session = new_session(model.get(), prompt.size() + 1);
                const CancelOnSignal cancel(session.get());
                before_measurement();
                const auto start = Clock::now();
                check(kl_session_append(session.get(), prompt.data(), prompt.size(), KL_LOGITS_LAST,
                                        logits.data()));
                best = std::min(best, seconds_since(start));
            }
            const double floor_s = floor.prefill_flops * length / matrix_rate;
            std::printf("%10d %12.2f %14.1f %12.2f %8.2f\n", length, 1e3 * best, length / best,
                        1e3 * floor_s, best / floor_s);
        }

        std::printf("\n%10s %12s %12s %12s %8s\n", "context", "TPOT ms p50", "MB/token", "floor ms",
                    "ratio");
        kl_sampling_params greedy;
        kl_sampling_params_default(&greedy);
        for (int32_t context : contexts) {
            SessionHandle session =
                new_session(model.get(), static_cast<uint64_t>(context) + decode_steps + 2);
            const CancelOnSignal cancel(session.get());
            if (context > 0) {
                check(kl_session_fill_synthetic(session.get(), static_cast<uint64_t>(context), 7));
            } else {
                const int32_t token = pick(rng);
                check(kl_session_append(session.get(), &token, 1, KL_LOGITS_NONE, nullptr));
            }
            std::vector<double> step_ms;
            if (top_logprobs >= 0) {
                // Each step as a chat app asking for log-probabilities runs it: a generator
                // sampling on the host copy of the logits (kimi_linear.h, kl_generate_params).
                kl_generate_params gp;
                kl_generate_params_default(&gp);
                gp.max_new_tokens = static_cast<uint32_t>(decode_steps);
                gp.logprobs = 1;
                gp.n_top_logprobs = static_cast<uint32_t>(top_logprobs);
                kl_generator* generator = nullptr;
                check(kl_generator_create(session.get(), &gp, &generator));
                const std::unique_ptr<kl_generator, void (*)(kl_generator*)> owned(
                    generator, &kl_generator_free);
                for (int s = 0; s < decode_steps; ++s) {
                    kl_generation_step step;
                    step.struct_size = sizeof step;
                    before_measurement();
                    const auto start = Clock::now();
                    check(kl_generator_next(generator, &step));
                    step_ms.push_back(1000.0 * seconds_since(start));
                }
            } else {
                for (int s = 0; s < decode_steps; ++s) {
                    int32_t token = 0;
                    before_measurement();
                    const auto start = Clock::now();
                    check(kl_session_next(session.get(), &greedy, &token, nullptr, 0, nullptr));
                    step_ms.push_back(1000.0 * seconds_since(start));
                }
            }
            std::sort(step_ms.begin(), step_ms.end());
            const double p50 = step_ms[step_ms.size() / 2];
            const double bytes = floor.decode_weight_bytes + 2.0 * info.session_fixed_bytes +
                                 static_cast<double>(context) * info.kv_bytes_per_token;
            const double floor_ms = 1e3 * bytes / bandwidth;
            std::printf("%10d %12.3f %12.1f %12.3f %8.2f\n", context, p50, bytes / 1e6, floor_ms,
                        p50 / floor_ms);
        }
    }
    if (o.has("batch"))
        bench_batches(model.get(), info, floor, contexts, o.ints("batch", "1"), decode_steps,
                      bandwidth);
    return 0;
}

}  // namespace kimi
