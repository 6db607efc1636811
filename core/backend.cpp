#include "backend.h"

#include <vector>

namespace kl {

int32_t Backend::sample(const BackendState& state, const SamplingParams& params,
                        const int32_t* history, size_t history_len, uint64_t position) const {
    std::vector<float> logits(state.vocab());
    read_logits(state, logits.data());
    return sample_token(logits.data(), logits.size(), params, history, history_len, position);
}

}  // namespace kl
