// TokenLogprobs (core/token_logprobs.h) against a float64 log-softmax on the released model's
// vocabulary size, with banned (-inf) tokens and logits far apart; top(k) in the sampler's
// order (score, then lower id).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "core/token_logprobs.h"

namespace {

TEST(TokenLogprobs, MatchAFloat64LogSoftmax) {
    for (float spread : {0.5f, 3.0f, 30.0f}) {
        const size_t vocab = 163840;
        std::mt19937 rng(static_cast<uint32_t>(spread * 10));
        std::normal_distribution<float> normal(0.0f, spread);
        std::vector<float> logits(vocab);
        for (float& v : logits) v = normal(rng);
        for (size_t i = 0; i < vocab; i += 97) logits[i] = -INFINITY;  // banned
        logits[12345] = 4.0f * spread;                                   // one clear favourite
        const double top = *std::max_element(logits.begin(), logits.end());
        double sum = 0.0;
        for (float v : logits) sum += std::exp(static_cast<double>(v) - top);
        const double log_total = top + std::log(sum);

        const kl::TokenLogprobs lp(logits.data(), vocab);
        for (int32_t t : {12345, 1, 2, 500, 163839})
            EXPECT_NEAR(lp.of(t), logits[static_cast<size_t>(t)] - log_total, 1e-5)
                << "spread " << spread << ", token " << t;
        std::vector<int32_t> order(vocab);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(),
                         [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
        const std::vector<kl::TokenLogprob> best = lp.top(20);
        ASSERT_EQ(best.size(), 20u);
        for (size_t i = 0; i < best.size(); ++i) {
            EXPECT_EQ(best[i].token, order[i]) << i;
            EXPECT_EQ(best[i].logprob, lp.of(order[i]));
        }
    }
}

TEST(TokenLogprobs, ASingleFiniteTokenHasProbabilityOne) {
    std::vector<float> logits(1000, -INFINITY);
    logits[7] = -3.0f;
    const kl::TokenLogprobs lp(logits.data(), logits.size());
    EXPECT_NEAR(lp.of(7), 0.0f, 1e-6);
    EXPECT_EQ(lp.top(1).front().token, 7);
}

}  // namespace
