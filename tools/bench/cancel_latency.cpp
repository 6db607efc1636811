// Cancel-to-return latency of a long prefill (issue 12): a thread calls kl_session_cancel
// after a random delay inside the prefill; the time from that call to kl_session_append's
// return is the latency. The backends check the flag at layer boundaries (the CPU loop before
// each layer, the CUDA prefill before enqueueing each layer, the host at most two layers ahead:
// docs/design/architecture.md "Cancel"), so the latency should stay within a couple of
// layers' time, whatever the prompt length. C API only, like the kimi CLI.
//
//   cancel_latency --random configs/kimi-linear-48b-a3b.json --layers 4 --device cuda
//                  [--prompt-len 8192] [--trials 20] [--threads N] [--seed S]
//   cancel_latency --model DIR [...]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "kimi_linear.h"
#include "truncated_config.h"

namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

void check(kl_status status, const char* what) {
    if (status != KL_OK)
        throw std::runtime_error(std::string(what) + ": " + kl_status_string(status) + ": " +
                                 kl_last_error());
}


struct Options {
    std::string random, model, device = "auto";
    int64_t layers = 0, prompt_len = 8192, trials = 20, threads = 0;
    uint64_t seed = 1;
};

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (i + 1 >= argc) throw std::runtime_error(flag + " needs a value");
        const std::string value = argv[++i];
        if (flag == "--random") o.random = value;
        else if (flag == "--model") o.model = value;
        else if (flag == "--device") o.device = value;
        else if (flag == "--layers") o.layers = std::stoll(value);
        else if (flag == "--prompt-len") o.prompt_len = std::stoll(value);
        else if (flag == "--trials") o.trials = std::stoll(value);
        else if (flag == "--threads") o.threads = std::stoll(value);
        else if (flag == "--seed") o.seed = std::stoull(value);
        else throw std::runtime_error("unknown option " + flag);
    }
    if (o.random.empty() == o.model.empty())
        throw std::runtime_error("give one of --random CONFIG.json or --model DIR");
    if (o.prompt_len <= 0 || o.trials <= 0) throw std::runtime_error("--prompt-len and --trials > 0");
    return o;
}

kl_model* load(const Options& o) {
    kl_model_params params;
    kl_model_params_default(&params);
    params.n_threads = static_cast<int32_t>(o.threads);
    if (o.device == "cpu") params.device = KL_DEVICE_CPU;
    else if (o.device == "cuda") params.device = KL_DEVICE_CUDA;
    else if (o.device != "auto") throw std::runtime_error("--device must be auto, cpu or cuda");
    kl_model* model = nullptr;
    if (!o.random.empty()) {
        std::ifstream in(o.random);
        if (!in) throw std::runtime_error("cannot read " + o.random);
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        if (o.layers) text = kl_tools::truncate_layers(text, o.layers);
        check(kl_model_create_random(text.c_str(), o.seed, &params, &model), "create_random");
    } else {
        check(kl_model_load(o.model.c_str(), &params, &model), "load");
    }
    return model;
}

int run(const Options& o) {
    kl_model* model = load(o);
    struct kl_model_info info = {};
    info.struct_size = sizeof(info);
    check(kl_model_info(model, &info), "info");
    kl_session_params sp;
    kl_session_params_default(&sp);
    sp.max_context = static_cast<uint64_t>(o.prompt_len);
    kl_session* session = nullptr;
    check(kl_session_create(model, &sp, &session), "session");
    std::vector<int32_t> prompt(static_cast<size_t>(o.prompt_len));
    std::mt19937_64 rng(o.seed);
    for (int32_t& id : prompt) id = static_cast<int32_t>(rng() % info.vocab_size);

    // The whole prefill, uncancelled (twice: the first warms up caches and allocations).
    double full_ms = 0;
    for (int i = 0; i < 2; ++i) {
        check(kl_session_reset(session), "reset");
        const auto start = Clock::now();
        check(kl_session_append(session, prompt.data(), prompt.size(), KL_LOGITS_NONE, nullptr),
              "prefill");
        full_ms = ms_between(start, Clock::now());
    }
    std::printf("%s on %s: %u layers, prefill of %lld tokens %.1f ms (%.2f ms per layer)\n",
                o.random.empty() ? o.model.c_str() : o.random.c_str(),
                info.device == KL_DEVICE_CUDA ? "cuda" : "cpu", info.n_layers,
                static_cast<long long>(o.prompt_len), full_ms, full_ms / info.n_layers);

    // Cancels at a random moment in [10%, 90%] of the prefill.
    std::uniform_real_distribution<double> when(0.1 * full_ms, 0.9 * full_ms);
    std::vector<double> latencies;
    int finished = 0;
    for (int64_t trial = 0; trial < o.trials; ++trial) {
        check(kl_session_reset(session), "reset");  // also drops a cancel that came too late
        const double delay_ms = when(rng);
        std::atomic<int64_t> cancelled_at{0};
        const auto start = Clock::now();
        std::thread canceller([&] {
            std::this_thread::sleep_until(start + std::chrono::duration<double, std::milli>(delay_ms));
            cancelled_at = Clock::now().time_since_epoch().count();
            kl_session_cancel(session);
        });
        const kl_status status =
            kl_session_append(session, prompt.data(), prompt.size(), KL_LOGITS_NONE, nullptr);
        const auto returned = Clock::now();
        canceller.join();
        if (status == KL_ERR_CANCELLED) {
            const Clock::time_point cancel{Clock::duration(cancelled_at.load())};
            latencies.push_back(ms_between(cancel, returned));
        } else {
            check(status, "append");
            ++finished;  // the prefill ended before the cancel took effect
        }
    }
    kl_session_free(session);
    kl_model_free(model);
    if (latencies.empty()) {
        std::printf("no trial was cancelled (%d finished first)\n", finished);
        return 1;
    }
    std::sort(latencies.begin(), latencies.end());
    std::printf("cancel -> return over %zu cancelled trials: median %.2f ms, max %.2f ms, min %.2f ms"
                " (%d finished before the cancel landed)\n",
                latencies.size(), latencies[latencies.size() / 2], latencies.back(),
                latencies.front(), finished);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(parse(argc, argv));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "cancel_latency: %s\n", e.what());
        return 2;
    }
}
