#include "token_logprobs.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace kl {

TokenLogprobs::TokenLogprobs(const float* logits, size_t vocab) : logits_(logits), vocab_(vocab) {
    // Log-sum-exp in double around the maximum: no overflow, and the sum of 160K terms
    // keeps float precision in the result.
    const double top = *std::max_element(logits, logits + vocab);
    double sum = 0.0;
    for (size_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - top);
    log_total_ = top + std::log(sum);
}

float TokenLogprobs::of(int32_t token) const {
    return static_cast<float>(static_cast<double>(logits_[token]) - log_total_);
}

std::vector<TokenLogprob> TokenLogprobs::top(size_t k) const {
    std::vector<int32_t> order(vocab_);
    std::iota(order.begin(), order.end(), 0);
    k = std::min(k, vocab_);
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                      [&](int32_t a, int32_t b) {
                          return logits_[a] > logits_[b] || (logits_[a] == logits_[b] && a < b);
                      });
    std::vector<TokenLogprob> out(k);
    for (size_t i = 0; i < k; ++i) out[i] = {order[i], of(order[i])};
    return out;
}

}  // namespace kl
