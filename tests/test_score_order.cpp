// order_by_score (core/score_order.h) is the comparison sort's order exactly, on both of its
// paths (partial sort for a short head, radix sort for a long one), ties and signed zeros
// and -inf included: the sampler's tokens, and the device sampler's agreement with them,
// rest on it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "core/score_order.h"

namespace {

std::vector<int32_t> comparison_order(const std::vector<float>& s, size_t keep) {
    std::vector<int32_t> order(s.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return s[a] > s[b]; });
    order.resize(keep);
    return order;
}

// Scores with many exact ties, both zeros, -inf, subnormals and large magnitudes.
std::vector<float> hard_scores(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 4.0f);
    const float specials[] = {0.0f, -0.0f, -INFINITY, 1e-40f, -1e-40f, 3.0e38f, -3.0e38f, 1.5f};
    std::vector<float> s(n);
    for (float& v : s) {
        const uint32_t pick = rng() % 10;
        if (pick < 2) v = specials[rng() % 8];
        else if (pick < 4) v = std::round(normal(rng));  // ties
        else v = normal(rng);
    }
    return s;
}

TEST(ScoreOrder, EqualsTheComparisonSortOnEveryPath) {
    for (size_t n : {1u, 7u, 1000u, 1025u, 5000u, 163840u}) {
        const std::vector<float> s = hard_scores(n, static_cast<uint32_t>(n));
        for (size_t keep : {size_t{1}, size_t{40}, size_t{1024}, size_t{1025}, n / 2 + 1, n}) {
            if (keep > n) continue;
            EXPECT_EQ(kl::order_by_score(s.data(), n, keep), comparison_order(s, keep))
                << "n " << n << ", keep " << keep;
        }
    }
}

TEST(ScoreOrder, AllEqualKeepsIdOrder) {
    const std::vector<float> s(3000, -2.5f);
    std::vector<int32_t> ids(3000);
    std::iota(ids.begin(), ids.end(), 0);
    EXPECT_EQ(kl::order_by_score(s.data(), s.size(), s.size()), ids);
}

}  // namespace
