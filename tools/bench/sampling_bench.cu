// Microseconds per kl::cuda::sample_token_on_device call at the real vocabulary (163840):
// greedy, top-k 40, top-p 0.9 and min-p 0.05 at temperature 1, each without and with a 1.3
// repetition penalty over a 256-token window of a 4096-token history, on two logit shapes
// (flat: N(0, 1); peaked: N(0, 4^2)). Each call is timed alone between two cudaEvents after a
// warmup (the latency a decode step sees) and the median of the repeats printed, with the
// mean of back-to-back calls beside it. Calls rotate over 8 rows so one row's bytes are not
// the only ones hot. Each configuration's token is also checked against kl::sample_token.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "backends/cuda/cuda_util.h"
#include "backends/cuda/ops.h"
#include "core/error.h"
#include "core/sampler.h"

namespace {

using kl::cuda::check;

constexpr size_t kVocab = 163840;
constexpr int kRows = 8, kWarmup = 20, kRepeats = 200;

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

struct Mode {
    const char* name;
    kl::SamplingParams params;
};

}  // namespace

int main() {
    try {
        std::vector<Mode> modes(4);
        modes[0] = {"greedy", {}};
        modes[1] = {"top-k 40", {}};
        modes[1].params.temperature = 1.0f;
        modes[1].params.top_k = 40;
        modes[2] = {"top-p 0.9", {}};
        modes[2].params.temperature = 1.0f;
        modes[2].params.top_p = 0.9f;
        modes[3] = {"min-p 0.05", {}};
        modes[3].params.temperature = 1.0f;
        modes[3].params.min_p = 0.05f;

        std::mt19937_64 rng(1);
        std::vector<int32_t> history(4096);
        for (int32_t& t : history) t = static_cast<int32_t>(rng() % 2000);  // repeats

        kl::cuda::DeviceBuffer logits(kRows * kVocab * sizeof(float));
        kl::cuda::DeviceBuffer dev_history(history.size() * sizeof(int32_t));
        kl::cuda::DeviceBuffer workspace(kl::cuda::sampling_workspace_bytes(kVocab));
        kl::cuda::DeviceBuffer token(sizeof(int32_t));
        check(cudaMemcpy(dev_history.as<int32_t>(), history.data(),
                         history.size() * sizeof(int32_t), cudaMemcpyHostToDevice),
              "copy history");
        cudaStream_t stream;
        check(cudaStreamCreate(&stream), "stream");
        cudaEvent_t start, stop;
        check(cudaEventCreate(&start), "event");
        check(cudaEventCreate(&stop), "event");

        std::printf("sample_token_on_device, vocab %zu, workspace %.1f MiB\n", kVocab,
                    workspace.bytes() / 1048576.0);
        std::printf("%-8s %-12s %-8s %12s %12s %12s %6s\n", "logits", "mode", "penalty",
                    "median us", "back2back us", "cpu ms", "match");
        for (float sigma : {1.0f, 4.0f}) {
            std::vector<std::vector<float>> rows(kRows, std::vector<float>(kVocab));
            std::normal_distribution<float> normal(0.0f, sigma);
            for (int r = 0; r < kRows; ++r) {
                for (float& x : rows[r]) x = normal(rng);
                check(cudaMemcpy(logits.as<float>() + r * kVocab, rows[r].data(),
                                 kVocab * sizeof(float), cudaMemcpyHostToDevice),
                      "copy logits");
            }
            for (bool penalty : {false, true})
                for (Mode mode : modes) {
                    kl::SamplingParams p = mode.params;
                    p.seed = 42;
                    if (penalty) {
                        p.repetition_penalty = 1.3f;
                        p.repetition_window = 256;
                    }
                    auto call = [&](int i) {
                        kl::cuda::sample_token_on_device(
                            logits.as<float>() + (i % kRows) * kVocab, kVocab, p,
                            dev_history.as<int32_t>(), history.size(), 1000 + i,
                            workspace.as<void>(), token.as<int32_t>(), stream);
                    };
                    for (int i = 0; i < kWarmup; ++i) call(i);
                    std::vector<double> us;
                    for (int i = 0; i < kRepeats; ++i) {
                        check(cudaEventRecord(start, stream), "record");
                        call(i);
                        check(cudaEventRecord(stop, stream), "record");
                        check(cudaEventSynchronize(stop), "sync");
                        float ms = 0.0f;
                        check(cudaEventElapsedTime(&ms, start, stop), "elapsed");
                        us.push_back(ms * 1000.0);
                    }
                    check(cudaEventRecord(start, stream), "record");
                    for (int i = 0; i < kRepeats; ++i) call(i);
                    check(cudaEventRecord(stop, stream), "record");
                    check(cudaEventSynchronize(stop), "sync");
                    float total_ms = 0.0f;
                    check(cudaEventElapsedTime(&total_ms, start, stop), "elapsed");

                    // The last back-to-back call used row (kRepeats - 1) % kRows.
                    const int last = kRepeats - 1;
                    int32_t got = -1;
                    check(cudaMemcpy(&got, token.as<int32_t>(), sizeof(got),
                                     cudaMemcpyDeviceToHost),
                          "copy token");
                    std::vector<double> cpu_ms;
                    int32_t want = -1;
                    for (int i = 0; i < 5; ++i) {
                        const auto t0 = std::chrono::steady_clock::now();
                        want = kl::sample_token(rows[last % kRows].data(), kVocab, p,
                                                history.data(), history.size(), 1000 + last);
                        cpu_ms.push_back(std::chrono::duration<double, std::milli>(
                                             std::chrono::steady_clock::now() - t0)
                                             .count());
                    }
                    std::printf("%-8s %-12s %-8s %12.1f %12.1f %12.2f %6s\n",
                                sigma == 1.0f ? "flat" : "peaked", mode.name,
                                penalty ? "1.3/256" : "off", median(us),
                                total_ms * 1000.0 / kRepeats, median(cpu_ms),
                                got == want ? "yes" : "NO");
                }
        }
        cudaEventDestroy(start);
        cudaEventDestroy(stop);
        cudaStreamDestroy(stream);
    } catch (const kl::Error& e) {
        std::fprintf(stderr, "sampling_bench: %s\n", e.what());
        return 1;
    }
    return 0;
}
