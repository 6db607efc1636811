// MLA attention (absorbed decode form == expanded prefill form == a float64 loop) and the
// MoE router (ties, bias, renormalisation, scaling, grouped top-k).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "compare.h"
#include "core/cpu/ops.h"

namespace {

using kl::cpu::MlaShape;

struct MlaInputs {
    std::vector<float> q, cache, kv_b;
};

MlaInputs random_mla(const MlaShape& s, size_t rows, size_t T, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal;
    MlaInputs in;
    in.q.resize(T * s.q_width());
    in.cache.resize(rows * s.cache_width());
    in.kv_b.resize(s.heads * (s.nope + s.v_dim) * s.rank);
    for (auto* v : {&in.q, &in.cache})
        for (float& x : *v) x = normal(rng);
    for (float& x : in.kv_b) x = normal(rng) / std::sqrt(float(s.rank));
    return in;
}

// model.md's formulas in double: expand k_nope and v for every row, causal softmax.
std::vector<float> mla_float64(const MlaShape& s, const MlaInputs& in, size_t T, size_t pos) {
    const size_t qk = s.nope + s.rope, W = s.cache_width();
    std::vector<float> out(T * s.heads * s.v_dim);
    for (size_t t = 0; t < T; ++t)
        for (size_t h = 0; h < s.heads; ++h) {
            const float* q = &in.q[t * s.q_width() + h * qk];
            const float* wk = &in.kv_b[h * (s.nope + s.v_dim) * s.rank];
            const float* wv = wk + s.nope * s.rank;
            const size_t visible = pos + t + 1;
            std::vector<double> score(visible);
            double top = -INFINITY;
            for (size_t r = 0; r < visible; ++r) {
                const float* c = &in.cache[r * W];
                double dot = 0.0;
                for (size_t d = 0; d < s.nope; ++d) {
                    double k = 0.0;
                    for (size_t i = 0; i < s.rank; ++i) k += double(wk[d * s.rank + i]) * c[i];
                    dot += q[d] * k;
                }
                for (size_t d = 0; d < s.rope; ++d) dot += double(q[s.nope + d]) * c[s.rank + d];
                score[r] = dot / std::sqrt(double(qk));
                top = std::max(top, score[r]);
            }
            double total = 0.0;
            for (double& x : score) total += x = std::exp(x - top);
            for (size_t d = 0; d < s.v_dim; ++d) {
                double o = 0.0;
                for (size_t r = 0; r < visible; ++r) {
                    double v = 0.0;
                    for (size_t i = 0; i < s.rank; ++i)
                        v += double(wv[d * s.rank + i]) * in.cache[r * W + i];
                    o += score[r] / total * v;
                }
                out[(t * s.heads + h) * s.v_dim + d] = float(o);
            }
        }
    return out;
}

using kl::test::rel_error;

struct MlaCase {
    MlaShape shape;
    size_t pos, T;
};

std::ostream& operator<<(std::ostream& os, const MlaCase& c) {
    return os << "{heads=" << c.shape.heads << " nope=" << c.shape.nope << " rope=" << c.shape.rope
              << " v=" << c.shape.v_dim << " rank=" << c.shape.rank << " pos=" << c.pos
              << " T=" << c.T << "}";
}

class MlaForms : public ::testing::TestWithParam<MlaCase> {};

TEST_P(MlaForms, AbsorbedEqualsExpandedEqualsFloat64) {
    const MlaCase c = GetParam();
    kl::ThreadPool pool(2);
    const MlaInputs in = random_mla(c.shape, c.pos + c.T, c.T, 17 + uint32_t(c.pos));
    std::vector<float> expanded(c.T * c.shape.heads * c.shape.v_dim), absorbed(expanded.size());
    kl::cpu::mla_attention_expanded(pool, c.shape, in.q.data(), c.T, c.pos, in.cache.data(),
                                    in.kv_b.data(), expanded.data());
    kl::cpu::mla_attention_absorbed(pool, c.shape, in.q.data(), c.T, c.pos, in.cache.data(),
                                    in.kv_b.data(), absorbed.data());
    const std::vector<float> want = mla_float64(c.shape, in, c.T, c.pos);
    EXPECT_LE(rel_error(expanded, want), 1e-5);
    EXPECT_LE(rel_error(absorbed, want), 1e-5);
    EXPECT_LE(rel_error(absorbed, expanded), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, MlaForms,
    ::testing::Values(MlaCase{{2, 16, 8, 16, 32}, 0, 1}, MlaCase{{2, 16, 8, 16, 32}, 5, 1},
                      MlaCase{{2, 16, 8, 16, 32}, 40, 1}, MlaCase{{3, 7, 5, 9, 13}, 11, 1},
                      MlaCase{{3, 7, 5, 9, 13}, 0, 6}, MlaCase{{4, 32, 16, 32, 64}, 9, 17},
                      MlaCase{{1, 8, 0, 8, 16}, 3, 4}));

TEST(MlaCausality, LaterRowsDoNotChangeEarlierOutputs) {
    kl::ThreadPool pool(1);
    const MlaShape s{2, 8, 4, 8, 16};
    MlaInputs in = random_mla(s, 10, 10, 3);
    std::vector<float> before(10 * s.heads * s.v_dim), after(before.size());
    kl::cpu::mla_attention_expanded(pool, s, in.q.data(), 10, 0, in.cache.data(), in.kv_b.data(),
                                    before.data());
    for (size_t i = 7 * s.cache_width(); i < in.cache.size(); ++i) in.cache[i] += 1.0f;
    kl::cpu::mla_attention_expanded(pool, s, in.q.data(), 10, 0, in.cache.data(), in.kv_b.data(),
                                    after.data());
    const size_t cut = 7 * s.heads * s.v_dim;
    EXPECT_EQ(std::vector<float>(before.begin(), before.begin() + cut),
              std::vector<float>(after.begin(), after.begin() + cut));
    EXPECT_NE(std::vector<float>(before.begin() + cut, before.end()),
              std::vector<float>(after.begin() + cut, after.end()));
}

// ---- router --------------------------------------------------------------------------------

float logit(float p) {
    return std::log(p / (1.0f - p));
}  // sigmoid^-1

kl::cpu::RouterConfig plain(size_t experts, size_t top_k) {
    return {experts, top_k, true, 1.0f, false, 1, 1};
}

TEST(Router, PicksTheBestAndRenormalisesUnbiasedScores) {
    const std::vector<float> logits = {logit(0.1f), logit(0.9f), logit(0.5f), logit(0.7f)};
    const std::vector<float> bias(4, 0.0f);
    int32_t experts[2];
    float weights[2];
    kl::cpu::RouterConfig c = plain(4, 2);
    c.routed_scaling_factor = 2.0f;
    kl::cpu::moe_route(c, logits.data(), bias.data(), experts, weights);
    EXPECT_EQ(experts[0], 1);
    EXPECT_EQ(experts[1], 3);
    EXPECT_NEAR(weights[0], 2.0f * 0.9f / 1.6f, 1e-6f);
    EXPECT_NEAR(weights[1], 2.0f * 0.7f / 1.6f, 1e-6f);
    c.renormalize = false;
    kl::cpu::moe_route(c, logits.data(), bias.data(), experts, weights);
    EXPECT_NEAR(weights[0], 2.0f * 0.9f, 1e-6f);
    EXPECT_NEAR(weights[1], 2.0f * 0.7f, 1e-6f);
}

TEST(Router, BiasChangesTheChoiceButNotTheWeights) {
    const std::vector<float> logits = {logit(0.6f), logit(0.5f), logit(0.4f)};
    const std::vector<float> bias = {0.0f, 0.0f, 0.5f};  // 0.4 + 0.5 beats 0.6
    int32_t experts[1];
    float weights[1];
    kl::cpu::RouterConfig c = plain(3, 1);
    c.renormalize = false;
    kl::cpu::moe_route(c, logits.data(), bias.data(), experts, weights);
    EXPECT_EQ(experts[0], 2);
    EXPECT_NEAR(weights[0], 0.4f, 1e-6f);
}

TEST(Router, TiesGoToTheLowerIndex) {
    const std::vector<float> logits(6, 0.25f);
    const std::vector<float> bias(6, 0.0f);
    int32_t experts[3];
    float weights[3];
    kl::cpu::moe_route(plain(6, 3), logits.data(), bias.data(), experts, weights);
    EXPECT_EQ(experts[0], 0);
    EXPECT_EQ(experts[1], 1);
    EXPECT_EQ(experts[2], 2);
    EXPECT_NEAR(weights[0], 1.0f / 3.0f, 1e-6f);
}

TEST(Router, AllExpertsWhenTopKIsE) {
    const std::vector<float> logits = {0.3f, -1.0f, 2.0f};
    const std::vector<float> bias(3, 0.0f);
    int32_t experts[3];
    float weights[3];
    kl::cpu::moe_route(plain(3, 3), logits.data(), bias.data(), experts, weights);
    EXPECT_EQ(experts[0], 2);
    EXPECT_EQ(experts[1], 0);
    EXPECT_EQ(experts[2], 1);
    EXPECT_NEAR(weights[0] + weights[1] + weights[2], 1.0f, 1e-6f);
}

TEST(Router, GroupedTopKDropsTheGroupOfTheBestSingleExpert) {
    // 3 groups of 2. Group 0 holds the best single expert (0.95) but a weak partner (0.05):
    // group sums 1.0 / 1.3 / 1.2, so with topk_group 2 groups 1 and 2 are kept.
    const std::vector<float> p = {0.95f, 0.05f, 0.7f, 0.6f, 0.65f, 0.55f};
    std::vector<float> logits;
    for (float x : p) logits.push_back(logit(x));
    const std::vector<float> bias(6, 0.0f);
    kl::cpu::RouterConfig c{6, 2, true, 1.0f, true, 3, 2};
    int32_t experts[2];
    float weights[2];
    kl::cpu::moe_route(c, logits.data(), bias.data(), experts, weights);
    EXPECT_EQ(experts[0], 2);
    EXPECT_EQ(experts[1], 4);
    // Without grouping the best single expert wins.
    kl::cpu::moe_route(plain(6, 2), logits.data(), bias.data(), experts, weights);
    EXPECT_EQ(experts[0], 0);
}

TEST(Router, GroupScoresUseBiasedScores) {
    const std::vector<float> logits(4, 0.0f);            // all 0.5
    const std::vector<float> bias = {0, 0, 0.2f, 0.1f};  // group 1 wins only through bias
    kl::cpu::RouterConfig c{4, 2, true, 1.0f, true, 2, 1};
    int32_t experts[2];
    float weights[2];
    kl::cpu::moe_route(c, logits.data(), bias.data(), experts, weights);
    EXPECT_EQ(experts[0], 2);
    EXPECT_EQ(experts[1], 3);
    EXPECT_NEAR(weights[0], 0.5f, 1e-6f);
}

}  // namespace
