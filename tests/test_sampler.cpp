// The sampler: filters (top-k, top-p, min-p), repetition penalty, determinism by seed, and a
// frequency check that sampling follows the softmax it claims to.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>
#include <vector>

#include "core/error.h"
#include "core/sampler.h"

namespace {

kl::SamplingParams params_with(float temperature) {
    kl::SamplingParams p;
    p.temperature = temperature;
    return p;
}

TEST(Sampler, GreedyIsArgmaxWithLowestIndexOnTies) {
    const std::vector<float> logits = {0.5f, 3.0f, -1.0f, 3.0f};
    EXPECT_EQ(kl::sample_token(logits.data(), logits.size(), params_with(0.0f), nullptr, 0, 0), 1);
}

TEST(Sampler, SameSeedSameTokenDifferentPositionsVary) {
    std::vector<float> logits(50, 0.0f);  // uniform: every draw decides
    kl::SamplingParams p = params_with(1.0f);
    p.seed = 1234;
    std::set<int32_t> seen;
    for (uint64_t pos = 0; pos < 40; ++pos) {
        const int32_t a = kl::sample_token(logits.data(), logits.size(), p, nullptr, 0, pos);
        const int32_t b = kl::sample_token(logits.data(), logits.size(), p, nullptr, 0, pos);
        EXPECT_EQ(a, b);
        seen.insert(a);
    }
    EXPECT_GT(seen.size(), 15u);  // 40 uniform draws over 50 tokens
    p.seed = 99;
    int differ = 0;
    for (uint64_t pos = 0; pos < 40; ++pos) {
        kl::SamplingParams q = p;
        q.seed = 1234;
        differ += kl::sample_token(logits.data(), logits.size(), p, nullptr, 0, pos) !=
                  kl::sample_token(logits.data(), logits.size(), q, nullptr, 0, pos);
    }
    EXPECT_GT(differ, 20);
}

TEST(Sampler, FrequenciesFollowTheSoftmax) {
    const std::vector<float> logits = {0.0f, 1.0f, 2.0f, -1.0f};
    kl::SamplingParams p = params_with(0.7f);
    p.seed = 5;
    std::vector<double> want(logits.size());
    double total = 0;
    for (size_t i = 0; i < logits.size(); ++i) total += want[i] = std::exp(logits[i] / 0.7);
    std::vector<int> count(logits.size(), 0);
    const int draws = 20000;
    for (int i = 0; i < draws; ++i)
        ++count[kl::sample_token(logits.data(), logits.size(), p, nullptr, 0, i)];
    for (size_t i = 0; i < logits.size(); ++i)  // 20000 draws: 4 sigma is < 0.015
        EXPECT_NEAR(count[i] / double(draws), want[i] / total, 0.015) << "token " << i;
}

TEST(Sampler, TopKKeepsOnlyTheKBest) {
    const std::vector<float> logits = {5.0f, 4.9f, 4.8f, 0.0f, 4.7f};
    kl::SamplingParams p = params_with(5.0f);
    p.top_k = 2;
    std::set<int32_t> seen;
    for (uint64_t pos = 0; pos < 300; ++pos)
        seen.insert(kl::sample_token(logits.data(), logits.size(), p, nullptr, 0, pos));
    EXPECT_EQ(seen, (std::set<int32_t>{0, 1}));
}

TEST(Sampler, TopPKeepsTheSmallestPrefixReachingP) {
    // probabilities 0.5, 0.3, 0.2 (temperature 1 on log-probs)
    const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
    kl::SamplingParams p = params_with(1.0f);
    p.top_p = 0.75f;  // 0.5 < 0.75 <= 0.8: keeps two
    std::set<int32_t> seen;
    for (uint64_t pos = 0; pos < 300; ++pos)
        seen.insert(kl::sample_token(logits.data(), logits.size(), p, nullptr, 0, pos));
    EXPECT_EQ(seen, (std::set<int32_t>{0, 1}));
}

TEST(Sampler, MinPDropsTokensBelowAFractionOfTheBest) {
    const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
    kl::SamplingParams p = params_with(1.0f);
    p.min_p = 0.5f;  // keeps p >= 0.25: tokens 0 and 1
    std::set<int32_t> seen;
    for (uint64_t pos = 0; pos < 300; ++pos)
        seen.insert(kl::sample_token(logits.data(), logits.size(), p, nullptr, 0, pos));
    EXPECT_EQ(seen, (std::set<int32_t>{0, 1}));
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegative) {
    const std::vector<float> logits = {2.0f, 1.5f, -0.1f};
    kl::SamplingParams p = params_with(0.0f);
    p.repetition_penalty = 2.0f;
    const int32_t history[] = {0, 0, 0};
    // 2.0 / 2 = 1.0 < 1.5: the repeated token loses its lead.
    EXPECT_EQ(kl::sample_token(logits.data(), logits.size(), p, history, 3, 3), 1);
    // Outside the window it is not penalised.
    const int32_t old_history[] = {0, 2, 2};
    p.repetition_window = 2;
    EXPECT_EQ(kl::sample_token(logits.data(), logits.size(), p, old_history, 3, 3), 0);
}

TEST(Sampler, RejectsOutOfRangeParameters) {
    auto rejects = [](kl::SamplingParams p, const char* field) {
        try {
            kl::validate_sampling(p);
            ADD_FAILURE() << field << " accepted";
        } catch (const kl::Error& e) {
            EXPECT_EQ(e.status(), kl::Status::InvalidArgument);
            EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
        }
    };
    kl::SamplingParams p;
    p.temperature = -1.0f;
    rejects(p, "temperature");
    p = {};
    p.temperature = NAN;
    rejects(p, "temperature");
    p = {};
    p.top_k = -3;
    rejects(p, "top_k");
    p = {};
    p.top_p = 0.0f;
    rejects(p, "top_p");
    p = {};
    p.top_p = 1.5f;
    rejects(p, "top_p");
    p = {};
    p.min_p = 1.0f;
    rejects(p, "min_p");
    p = {};
    p.repetition_penalty = 0.0f;
    rejects(p, "repetition_penalty");
    p = {};
    p.repetition_window = -1;
    rejects(p, "repetition_window");
    EXPECT_NO_THROW(kl::validate_sampling(kl::SamplingParams{}));
}

}  // namespace
