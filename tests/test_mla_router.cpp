// MLA attention (absorbed decode form == expanded prefill form == a float64 loop) and the
// MoE router (ties, bias, renormalisation, scaling, grouped top-k).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backends/cpu/ops.h"
#include "compare.h"
#include "expect_error.h"

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
                      MlaCase{{1, 8, 0, 8, 16}, 3, 4},
                      // A long cache: the absorbed form splits it into partial sums.
                      MlaCase{{2, 16, 8, 16, 32}, 700, 2},
                      // More queries than one score block of the expanded form holds.
                      MlaCase{{1, 4, 2, 4, 8}, 10, 1100}));

TEST(MlaCausality, LaterRowsDoNotChangeEarlierOutputs) {
    kl::ThreadPool pool(1);
    const MlaShape s{2, 8, 4, 8, 16};
    using Attention = void (*)(kl::ThreadPool&, const MlaShape&, const float*, size_t, size_t,
                               const float*, const float*, float*);
    const Attention forms[] = {  // the expanded form's cancel argument left at its default
        [](kl::ThreadPool& p, const MlaShape& shape, const float* q, size_t T, size_t pos,
           const float* cache, const float* kv_b, float* out) {
            kl::cpu::mla_attention_expanded(p, shape, q, T, pos, cache, kv_b, out);
        },
        &kl::cpu::mla_attention_absorbed};
    for (Attention attention : forms) {
        MlaInputs in = random_mla(s, 10, 10, 3);
        std::vector<float> before(10 * s.heads * s.v_dim), after(before.size());
        attention(pool, s, in.q.data(), 10, 0, in.cache.data(), in.kv_b.data(), before.data());
        for (size_t i = 7 * s.cache_width(); i < in.cache.size(); ++i) in.cache[i] += 1.0f;
        attention(pool, s, in.q.data(), 10, 0, in.cache.data(), in.kv_b.data(), after.data());
        const size_t cut = 7 * s.heads * s.v_dim;
        EXPECT_EQ(std::vector<float>(before.begin(), before.begin() + cut),
                  std::vector<float>(after.begin(), after.begin() + cut));
        EXPECT_NE(std::vector<float>(before.begin() + cut, before.end()),
                  std::vector<float>(after.begin() + cut, after.end()));
    }
}

// The engine prefills with the expanded form and decodes with the absorbed one: decoding
// token t (T = 1 at pos = t) and prefilling a later slice (T > 1 at pos > 0) must both give
// the rows of one whole-prompt prefill.
TEST(MlaSteps, DecodeAndSlicesMatchOnePrefill) {
    kl::ThreadPool pool(3);
    const MlaShape s{3, 16, 8, 12, 24};
    const size_t N = 24, out_width = s.heads * s.v_dim;
    const MlaInputs in = random_mla(s, N, N, 29);
    std::vector<float> whole(N * out_width);
    kl::cpu::mla_attention_expanded(pool, s, in.q.data(), N, 0, in.cache.data(), in.kv_b.data(),
                                    whole.data());
    EXPECT_LE(rel_error(whole, mla_float64(s, in, N, 0)), 1e-5);
    auto rows = [&](size_t begin, size_t end) {
        return std::vector<float>(whole.begin() + begin * out_width,
                                  whole.begin() + end * out_width);
    };
    for (size_t t = 0; t < N; ++t) {
        std::vector<float> step(out_width);
        kl::cpu::mla_attention_absorbed(pool, s, in.q.data() + t * s.q_width(), 1, t,
                                        in.cache.data(), in.kv_b.data(), step.data());
        ASSERT_LE(rel_error(step, rows(t, t + 1)), 1e-4) << "decode at pos " << t;
    }
    const size_t pos = 13, T = N - pos;
    std::vector<float> slice(T * out_width), slice_absorbed(T * out_width);
    kl::cpu::mla_attention_expanded(pool, s, in.q.data() + pos * s.q_width(), T, pos,
                                    in.cache.data(), in.kv_b.data(), slice.data());
    kl::cpu::mla_attention_absorbed(pool, s, in.q.data() + pos * s.q_width(), T, pos,
                                    in.cache.data(), in.kv_b.data(), slice_absorbed.data());
    EXPECT_LE(rel_error(slice, rows(pos, N)), 1e-5);
    EXPECT_LE(rel_error(slice_absorbed, rows(pos, N)), 1e-4);
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

// Equal group scores keep the lower group. All s are 0.5; the bias sets the biased scores.
// Group sums 1.0 / 1.375 / 1.125 / 1.375: groups 1 and 3 tie, group 1 must win.
TEST(Router, GroupTiesGoToTheLowerGroup) {
    const std::vector<float> logits(8, 0.0f);
    const std::vector<float> bias = {0, 0, 0.25f, 0.125f, 0.125f, 0, 0.125f, 0.25f};
    kl::cpu::RouterConfig c{8, 2, true, 3.0f, true, 4, 1};
    int32_t experts[2];
    float weights[2];
    kl::cpu::moe_route(c, logits.data(), bias.data(), experts, weights);
    EXPECT_EQ(experts[0], 2);
    EXPECT_EQ(experts[1], 3);
    EXPECT_NEAR(weights[0], 1.5f, 1e-6f);  // 0.5 / (0.5 + 0.5) * 3
    EXPECT_NEAR(weights[1], 1.5f, 1e-6f);
}

// Groups of 4: group 0 has the best single expert and the larger sum of all four, group 1
// the larger sum of its best two, which is the rule.
TEST(Router, GroupScoreIsTheSumOfTheTopTwo) {
    const std::vector<float> biased = {0.9f, 0.1f, 0.1f, 0.1f, 0.5f, 0.55f, 0.0f, 0.0f};
    const std::vector<float> logits(8, 0.0f);
    std::vector<float> bias;
    for (float b : biased) bias.push_back(b - 0.5f);
    kl::cpu::RouterConfig c{8, 2, false, 1.0f, true, 2, 1};
    int32_t experts[2];
    float weights[2];
    kl::cpu::moe_route(c, logits.data(), bias.data(), experts, weights);
    EXPECT_EQ(experts[0], 5);
    EXPECT_EQ(experts[1], 4);
    EXPECT_NEAR(weights[0], 0.5f, 1e-6f);
}

// One expert per group: a group's score is that expert's, so grouping changes nothing.
TEST(Router, SingleExpertGroupsScoreTheirExpert) {
    const std::vector<float> p = {0.6f, 0.1f, 0.5f, 0.55f, 0.2f};
    std::vector<float> logits;
    for (float x : p) logits.push_back(logit(x));
    const std::vector<float> bias(5, 0.0f);
    kl::cpu::RouterConfig c{5, 2, true, 1.0f, true, 5, 2};
    int32_t experts[2];
    float weights[2];
    kl::cpu::moe_route(c, logits.data(), bias.data(), experts, weights);
    EXPECT_EQ(experts[0], 0);
    EXPECT_EQ(experts[1], 3);
    EXPECT_NEAR(weights[0], 0.6f / 1.15f, 1e-6f);
}

TEST(Router, RejectsConfigsItCannotRoute) {
    const std::vector<float> logits(6, 0.0f), bias(6, 0.0f);
    int32_t experts[8];
    float weights[8];
    auto route = [&](kl::cpu::RouterConfig c) {
        return [&, c] { kl::cpu::moe_route(c, logits.data(), bias.data(), experts, weights); };
    };
    using kl::Status;
    kl::test::expect_error(route(plain(6, 7)), Status::InvalidArgument, {"top_k 7", "6"});
    kl::test::expect_error(route(plain(6, 0)), Status::InvalidArgument, {"top_k 0"});
    kl::test::expect_error(route({6, 2, true, 1.0f, true, 4, 2}), Status::InvalidArgument,
                           {"n_groups 4"});
    kl::test::expect_error(route({6, 5, true, 1.0f, true, 3, 2}), Status::InvalidArgument,
                           {"topk_groups 2", "top_k 5"});
}

}  // namespace
