#include "backend.h"

#include <vector>

#include "error.h"

namespace kl {

int32_t Backend::sample(const BackendState& state, const SamplingParams& params,
                        const int32_t* history, size_t history_len, uint64_t position) const {
    std::vector<float> logits(state.vocab());
    read_logits(state, logits.data());
    return sample_token(logits.data(), logits.size(), params, history, history_len, position);
}

// Transitional: until every backend has its batched pass (CPU and CUDA are being written),
// a backend without one says so instead of running the rows one by one, which could not
// keep the all-or-nothing contract. Removed (made pure) when both backends implement it.
void Backend::forward_batch(BackendState* const*, const uint64_t*, const int32_t*, size_t) const {
    fail(Status::Unsupported, "this backend has no batched decode");
}

void Backend::sample_batch(const BackendState* const* states, const SamplingParams* params,
                           const int32_t* const* histories, const size_t* history_lens,
                           const uint64_t* positions, size_t n, int32_t* out) const {
    for (size_t i = 0; i < n; ++i)
        out[i] = sample(*states[i], params[i], histories[i], history_lens[i], positions[i]);
}

}  // namespace kl
