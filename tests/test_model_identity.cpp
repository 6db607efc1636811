// The master identity of the whole model: one prefill == token-by-token decode == any split
// of the prefill, on the logits of every position. Prefill runs the chunked KDA form and
// the expanded MLA attention, decode the KDA recurrence and the absorbed MLA form, so this
// checks those pairs end to end, state carried across calls included.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/model.h"
#include "core/session.h"
#include "tiny_model.h"

namespace {

struct IdentityCase {
    const char* model_args;
    size_t n_tokens;
    uint32_t seed;
};

std::ostream& operator<<(std::ostream& os, const IdentityCase& c) {
    return os << "{" << c.model_args << ", T=" << c.n_tokens << ", seed=" << c.seed << "}";
}

// Relative to the largest reference logit: fp32 rounding of two summation orders.
constexpr double kTolerance = 1e-4;

double max_abs(const std::vector<float>& v) {
    double m = 0.0;
    for (float x : v) m = std::max(m, static_cast<double>(std::fabs(x)));
    return m;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want,
                  const std::string& what) {
    ASSERT_EQ(got.size(), want.size());
    double worst = 0.0;
    size_t where = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_TRUE(std::isfinite(got[i])) << what << ": non-finite logit at " << i;
        const double diff = std::fabs(static_cast<double>(got[i]) - want[i]);
        if (diff > worst) {
            worst = diff;
            where = i;
        }
    }
    const double scale = std::max(max_abs(want), 1e-6);
    EXPECT_LE(worst / scale, kTolerance)
        << what << ": max |diff| " << worst << " at " << where << " vs max |logit| " << scale;
}

class ModelIdentity : public ::testing::TestWithParam<IdentityCase> {};

TEST_P(ModelIdentity, PrefillEqualsDecodeEqualsSplits) {
    const IdentityCase c = GetParam();
    const std::string dir = kl::test::tiny_model_dir(c.model_args);
    ASSERT_FALSE(dir.empty());
    kl::ModelLoadOptions options;
    options.n_threads = 2;
    auto model = kl::Model::load(dir, options);
    const size_t vocab = static_cast<size_t>(model->config().vocab_size);

    std::mt19937 rng(c.seed);
    std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(vocab) - 1);
    std::vector<int32_t> tokens(c.n_tokens);
    for (auto& t : tokens) t = pick(rng);

    // One prefill, all logits.
    std::vector<float> prefill(c.n_tokens * vocab);
    kl::Session whole(*model, 0);
    whole.append(tokens.data(), tokens.size(), prefill.data());

    // Token by token.
    kl::Session stepwise(*model, 0);
    std::vector<float> decoded;
    for (int32_t t : tokens) {
        stepwise.append(&t, 1, nullptr);
        const std::vector<float> step = stepwise.last_logits();
        decoded.insert(decoded.end(), step.begin(), step.end());
    }
    // A degenerate model (all-zero or position-blind logits) would pass trivially.
    ASSERT_GT(max_abs(prefill), 0.1);
    if (c.n_tokens > 1) {
        ASSERT_NE(std::vector<float>(prefill.begin(), prefill.begin() + vocab),
                  std::vector<float>(prefill.end() - vocab, prefill.end()));
    }
    expect_close(decoded, prefill, "token-by-token vs prefill");

    // Random splits, including pieces that straddle the KDA chunk boundary.
    for (int trial = 0; trial < 3; ++trial) {
        kl::Session split(*model, 0);
        std::vector<float> pieces(c.n_tokens * vocab);
        size_t done = 0;
        while (done < c.n_tokens) {
            std::uniform_int_distribution<size_t> len(1, std::max<size_t>(1, c.n_tokens / 2));
            const size_t n = std::min(len(rng), c.n_tokens - done);
            split.append(tokens.data() + done, n, pieces.data() + done * vocab);
            done += n;
        }
        EXPECT_EQ(split.position(), c.n_tokens);
        expect_close(pieces, prefill, "random split " + std::to_string(trial) + " vs prefill");
    }
    EXPECT_EQ(whole.last_logits(), std::vector<float>(prefill.end() - vocab, prefill.end()));
}

INSTANTIATE_TEST_SUITE_P(Tiny, ModelIdentity,
                         ::testing::Values(IdentityCase{"--preset tiny --seed 1", 1, 1},
                                           IdentityCase{"--preset tiny --seed 1", 2, 2},
                                           IdentityCase{"--preset tiny --seed 1", 37, 3},
                                           IdentityCase{"--preset tiny --seed 2 --dtype f32", 150,
                                                        4},
                                           IdentityCase{"--preset small --seed 3", 70, 5}));

}  // namespace
