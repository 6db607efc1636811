// Token sampling from a logits row: repetition penalty, greedy or temperature with top-k,
// top-p and min-p. The random draw is a pure function of (seed, position), so the same seed
// and the same state give the same token, across forks and snapshot reloads.
#pragma once

#include <cstddef>
#include <cstdint>

#include "random_init.h"  // random_mix: splitmix64

namespace kl {

struct SamplingParams {
    float temperature = 0.0f;         // 0 = greedy
    int32_t top_k = 0;                // 0 = off
    float top_p = 1.0f;               // 1 = off
    float min_p = 0.0f;               // 0 = off
    float repetition_penalty = 1.0f;  // 1 = off
    int32_t repetition_window = 0;    // 0 = all of history
    uint64_t seed = 0;
};

// The random draw of sample_token: a uniform double in [0, 1) from (seed, position), in
// integer arithmetic and an exact scaling, so the device sampler reproduces it bit for bit.
inline double sampling_draw(uint64_t seed, uint64_t position) {
    const uint64_t bits = random_mix(seed ^ random_mix(position));
    return static_cast<double>(bits >> 11) * (1.0 / 9007199254740992.0);
}

// Throws InvalidArgument naming the field if a value is out of range.
void validate_sampling(const SamplingParams& params);

// history: the tokens consumed so far (for the repetition penalty); position: the number
// of tokens consumed, which with the seed selects the random draw.
int32_t sample_token(const float* logits, size_t vocab, const SamplingParams& params,
                     const int32_t* history, size_t history_len, uint64_t position);

}  // namespace kl
