#include "decode_batcher.h"

#include <vector>

namespace kl {

DecodeBatcher::DecodeBatcher(const Backend& backend, size_t max_batch,
                             std::chrono::microseconds wait)
    : backend_(backend),
      max_batch_(max_batch),
      steps_(max_batch, wait),
      // Only the steps wait for their members: a sample pass that waited too would wait for
      // threads queued at a step that waits for it, each until `wait` ran out, and keep two
      // groups of threads out of phase for good (tools/bench/bench_group_commit.cpp). The
      // step waits for threads still sampling, and those samples are short.
      samples_(max_batch, std::chrono::microseconds(0)) {}

void DecodeBatcher::step(BackendState& state, uint64_t position, int32_t token,
                         const std::atomic<bool>& cancel) {
    Step job;
    job.member = &state, job.state = &state, job.position = position, job.token = token;
    job.cancel = &cancel;
    steps_.submit(job, [this](const std::vector<Step*>& pass) {
        const size_t n = pass.size();
        std::vector<BackendState*> states(n);
        std::vector<uint64_t> positions(n);
        std::vector<int32_t> tokens(n);
        for (size_t i = 0; i < n; ++i)
            states[i] = pass[i]->state, positions[i] = pass[i]->position,
            tokens[i] = pass[i]->token;
        // A lone step takes the backend's one-session path (on a GPU: its decode graph).
        const std::atomic<bool> never(false);
        if (n == 1)
            backend_.forward(*states[0], positions[0], tokens.data(), 1, nullptr, nullptr, never);
        else
            backend_.forward_batch(states.data(), positions.data(), tokens.data(), n);
    });
}

int32_t DecodeBatcher::sample(const BackendState& state, const SamplingParams& params,
                              const int32_t* history, size_t history_len, uint64_t position) {
    Sample job;
    job.member = &state, job.state = &state, job.params = &params, job.history = history;
    job.history_len = history_len, job.position = position;
    samples_.submit(job, [this](const std::vector<Sample*>& pass) {
        const size_t n = pass.size();
        std::vector<const BackendState*> states(n);
        std::vector<SamplingParams> params(n);
        std::vector<const int32_t*> histories(n);
        std::vector<size_t> lens(n);
        std::vector<uint64_t> positions(n);
        std::vector<int32_t> tokens(n);
        for (size_t i = 0; i < n; ++i)
            states[i] = pass[i]->state, params[i] = *pass[i]->params,
            histories[i] = pass[i]->history, lens[i] = pass[i]->history_len,
            positions[i] = pass[i]->position;
        backend_.sample_batch(states.data(), params.data(), histories.data(), lens.data(),
                              positions.data(), n, tokens.data());
        for (size_t i = 0; i < n; ++i) pass[i]->token = tokens[i];
    });
    return job.token;
}

}  // namespace kl
