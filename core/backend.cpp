#include "backend.h"

#include <vector>

namespace kl {

int32_t Backend::sample(const BackendState& state, const SamplingParams& params,
                        const int32_t* history, size_t history_len, uint64_t position) const {
    std::vector<float> logits(state.vocab());
    read_logits(state, logits.data());
    return sample_token(logits.data(), logits.size(), params, history, history_len, position);
}

void Backend::sample_batch(const BackendState* const* states, const SamplingParams* params,
                           const int32_t* const* histories, const size_t* history_lens,
                           const uint64_t* positions, size_t n, int32_t* out) const {
    for (size_t i = 0; i < n; ++i)
        out[i] = sample(*states[i], params[i], histories[i], history_lens[i], positions[i]);
}

}  // namespace kl
