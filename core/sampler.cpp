#include "sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "error.h"
#include "score_order.h"

namespace kl {
namespace {

size_t argmax(const std::vector<float>& values) {
    return static_cast<size_t>(std::max_element(values.begin(), values.end()) - values.begin());
}

}  // namespace

void validate_sampling(const SamplingParams& p) {
    auto bad = [](const std::string& what) { fail(Status::InvalidArgument, what); };
    if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature))
        bad("sampling temperature is " + std::to_string(p.temperature) + ", must be >= 0");
    if (p.top_k < 0) bad("sampling top_k is " + std::to_string(p.top_k) + ", must be >= 0");
    if (!(p.top_p > 0.0f && p.top_p <= 1.0f))
        bad("sampling top_p is " + std::to_string(p.top_p) + ", must be in (0, 1]");
    if (!(p.min_p >= 0.0f && p.min_p < 1.0f))
        bad("sampling min_p is " + std::to_string(p.min_p) + ", must be in [0, 1)");
    if (!(p.repetition_penalty > 0.0f) || !std::isfinite(p.repetition_penalty))
        bad("sampling repetition_penalty is " + std::to_string(p.repetition_penalty) +
            ", must be > 0");
    if (p.repetition_window < 0)
        bad("sampling repetition_window is " + std::to_string(p.repetition_window) +
            ", must be >= 0");
}

int32_t sample_token(const float* logits, size_t vocab, const SamplingParams& p,
                     const int32_t* history, size_t history_len, uint64_t position) {
    const bool penalised = p.repetition_penalty != 1.0f && history_len > 0;
    // Greedy without a penalty needs no copy of the row (the common chat-app default).
    if (!penalised && (p.temperature == 0.0f || p.top_k == 1))
        return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
    std::vector<float> scores(logits, logits + vocab);

    // CTRL-style penalty, once per distinct recent token.
    if (penalised) {
        size_t window = p.repetition_window > 0
                            ? std::min(history_len, static_cast<size_t>(p.repetition_window))
                            : history_len;
        std::vector<bool> seen(vocab, false);
        for (size_t i = history_len - window; i < history_len; ++i) {
            const auto token = static_cast<size_t>(history[i]);
            if (token >= vocab || seen[token]) continue;
            seen[token] = true;
            float& s = scores[token];
            s = s > 0.0f ? s / p.repetition_penalty : s * p.repetition_penalty;
        }
    }

    if (p.temperature == 0.0f || p.top_k == 1) return static_cast<int32_t>(argmax(scores));

    // Candidates sorted by score (ties: lower id first), cut by top-k.
    size_t keep = vocab;
    if (p.top_k > 0) keep = std::min(keep, static_cast<size_t>(p.top_k));
    const std::vector<int32_t> order = order_by_score(scores.data(), vocab, keep);

    // Softmax at the temperature, in double for a stable cumulative sum.
    std::vector<double> probs(keep);
    const double top = scores[order[0]];
    double total = 0.0;
    for (size_t i = 0; i < keep; ++i) {
        probs[i] = std::exp((scores[order[i]] - top) / p.temperature);
        total += probs[i];
    }
    for (double& prob : probs) prob /= total;

    // min-p: relative to the most likely token.
    if (p.min_p > 0.0f) {
        const double floor = p.min_p * probs[0];
        size_t n = 1;
        while (n < keep && probs[n] >= floor) ++n;
        keep = n;
    }
    // top-p: the smallest prefix whose mass reaches top_p.
    if (p.top_p < 1.0f) {
        double mass = 0.0;
        size_t n = 0;
        while (n < keep) {
            mass += probs[n++];
            if (mass >= p.top_p) break;
        }
        keep = n;
    }

    double kept_mass = 0.0;
    for (size_t i = 0; i < keep; ++i) kept_mass += probs[i];
    const double target = sampling_draw(p.seed, position) * kept_mass;
    double cumulative = 0.0;
    for (size_t i = 0; i < keep; ++i) {
        cumulative += probs[i];
        if (target < cumulative) return order[i];
    }
    return order[keep - 1];
}

}  // namespace kl
