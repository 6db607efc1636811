#include "backend.h"

#include <vector>

namespace kl {

int32_t BackendState::sample(const SamplingParams& params, const int32_t* history,
                             size_t history_len, uint64_t position) const {
    std::vector<float> logits(vocab());
    read_logits(logits.data());
    return sample_token(logits.data(), logits.size(), params, history, history_len, position);
}

}  // namespace kl
