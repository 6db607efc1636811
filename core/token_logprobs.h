// Log-probabilities of a logits row: the chosen token's and the most likely alternatives',
// for the generation steps that ask for them (kl_generate_params logprobs). They are over
// the row as given: log-softmax of the logits after logit bias and the logits processor,
// before the sampler's repetition penalty, temperature and truncation (docs/design/capi.md
// "Generation"), so they describe the model, not the sampling settings.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kl {

struct TokenLogprob {
    int32_t token;
    float logprob;
};

class TokenLogprobs {
public:
    // logits [vocab]: at least one finite value, no NaN, no +inf (the caller checked).
    TokenLogprobs(const float* logits, size_t vocab);

    float of(int32_t token) const;
    // The k most likely tokens, most likely first (ties: lower id first); k <= vocab.
    std::vector<TokenLogprob> top(size_t k) const;

private:
    const float* logits_;
    size_t vocab_;
    double log_total_;  // log of the sum of exp(logit): the softmax's normaliser
};

}  // namespace kl
