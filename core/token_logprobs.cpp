#include "token_logprobs.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace kl {

namespace {

// exp(x) for x <= 0 (a logit minus the row's maximum), relative error below 1e-7 on
// [-87, 0] (Cephes' single-precision range reduction and polynomial); below -87 it answers
// exp(-87), 1.6e-38, where a term of the normaliser no longer matters. Plain arithmetic and
// integer conversions only, so the summing loop below compiles to vector instructions, where
// std::exp is a library call per term.
inline float exp_nonpositive(float x) {
    x = x > -87.0f ? x : -87.0f;
    const int32_t n = static_cast<int32_t>(x * 1.44269504088896341f - 0.5f);  // round(x / ln 2)
    const float nf = static_cast<float>(n);
    const float r = (x - nf * 0.693359375f) + nf * 2.12194440e-4f;  // x - n ln 2, in two parts
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float e = p * r * r + r + 1.0f;
    const int32_t bits = (n + 127) << 23;  // 2^n, n in [-126, 0]
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return e * scale;
}

}  // namespace

TokenLogprobs::TokenLogprobs(const float* logits, size_t vocab) : logits_(logits), vocab_(vocab) {
    // Log-sum-exp around the maximum: no overflow. This runs once per generated token when
    // log-probabilities are asked for, over the whole vocabulary, so it is written to
    // vectorise: each block of 256 terms is an elementwise map into a buffer, then summed in
    // eight independent float lanes (so the compiler need not reassociate one sum) and added
    // to a double, so the sum of 160K terms keeps float precision.
    const float top = *std::max_element(logits, logits + vocab);
    constexpr size_t kLanes = 8, kBlock = 256;
    float terms[kBlock];
    double sum = 0.0;
    for (size_t i = 0; i < vocab; i += kBlock) {
        const size_t n = std::min(kBlock, vocab - i);
        for (size_t j = 0; j < n; ++j) terms[j] = exp_nonpositive(logits[i + j] - top);
        for (size_t j = n; j < kBlock; ++j) terms[j] = 0.0f;
        float lane[kLanes] = {};
        for (size_t j = 0; j < kBlock; j += kLanes)
            for (size_t k = 0; k < kLanes; ++k) lane[k] += terms[j + k];
        for (float v : lane) sum += v;
    }
    log_total_ = static_cast<double>(top) + std::log(sum);
}

float TokenLogprobs::of(int32_t token) const {
    return static_cast<float>(static_cast<double>(logits_[token]) - log_total_);
}

std::vector<TokenLogprob> TokenLogprobs::top(size_t k) const {
    k = std::min(k, vocab_);
    if (k == 0) return {};
    // One pass keeping the k best so far, sorted (most likely first; ties: lower id first):
    // a token enters only when it beats the k-th, which after the first few thousand tokens
    // is rare, so the pass costs about one comparison per token.
    auto better = [&](int32_t a, int32_t b) {
        return logits_[a] > logits_[b] || (logits_[a] == logits_[b] && a < b);
    };
    std::vector<int32_t> best;
    best.reserve(k + 1);
    for (int32_t id = 0; id < static_cast<int32_t>(vocab_); ++id) {
        if (best.size() == k && !better(id, best.back())) continue;
        best.insert(std::upper_bound(best.begin(), best.end(), id, better), id);
        if (best.size() > k) best.pop_back();
    }
    std::vector<TokenLogprob> out(k);
    for (size_t i = 0; i < k; ++i) out[i] = {best[i], of(best[i])};
    return out;
}

}  // namespace kl
