#include <algorithm>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "core/error.h"
#include "ops.h"

namespace kl::cpu {
namespace {

// The model config is validated on load; this guards direct callers, for whom a short
// candidate list would be undefined behaviour in the partial sort below.
void check(const RouterConfig& c) {
    auto bad = [](const std::string& what) {
        fail(Status::InvalidArgument, "moe_route: " + what);
    };
    if (c.top_k == 0 || c.top_k > c.n_experts)
        bad("top_k " + std::to_string(c.top_k) + " is outside 1..n_experts " +
            std::to_string(c.n_experts));
    if (!c.grouped || c.n_groups <= 1) return;
    if (c.n_experts % c.n_groups != 0)
        bad("n_experts " + std::to_string(c.n_experts) + " is not a multiple of n_groups " +
            std::to_string(c.n_groups));
    if (c.topk_groups == 0 || c.topk_groups > c.n_groups ||
        c.topk_groups * (c.n_experts / c.n_groups) < c.top_k)
        bad("topk_groups " + std::to_string(c.topk_groups) + " of " +
            std::to_string(c.n_groups) + " groups cannot hold top_k " + std::to_string(c.top_k) +
            " experts");
}

}  // namespace

void moe_route(const RouterConfig& config, const float* logits, const float* bias, int32_t* experts,
               float* weights) {
    check(config);
    const size_t E = config.n_experts;
    std::vector<float> score(E), biased(E);
    for (size_t e = 0; e < E; ++e) {
        score[e] = sigmoid(logits[e]);
        biased[e] = score[e] + bias[e];
    }
    // Higher biased score first; ties go to the lower index.
    auto better = [&](size_t a, size_t b) {
        return biased[a] > biased[b] || (biased[a] == biased[b] && a < b);
    };

    std::vector<bool> allowed(E, true);
    if (config.grouped && config.n_groups > 1) {
        // DeepSeek-V3 rule: a group's score is the sum of its two best biased scores.
        const size_t per_group = E / config.n_groups;
        std::vector<float> group_score(config.n_groups);
        for (size_t g = 0; g < config.n_groups; ++g) {
            std::vector<float> members(biased.begin() + g * per_group,
                                       biased.begin() + (g + 1) * per_group);
            const size_t take = std::min<size_t>(2, members.size());
            std::partial_sort(members.begin(), members.begin() + take, members.end(),
                              std::greater<float>());
            group_score[g] = std::accumulate(members.begin(), members.begin() + take, 0.0f);
        }
        std::vector<size_t> groups(config.n_groups);
        std::iota(groups.begin(), groups.end(), 0);
        std::stable_sort(groups.begin(), groups.end(),
                         [&](size_t a, size_t b) { return group_score[a] > group_score[b]; });
        std::fill(allowed.begin(), allowed.end(), false);
        for (size_t i = 0; i < config.topk_groups; ++i)
            for (size_t e = groups[i] * per_group; e < (groups[i] + 1) * per_group; ++e)
                allowed[e] = true;
    }

    std::vector<size_t> candidates;
    for (size_t e = 0; e < E; ++e)
        if (allowed[e]) candidates.push_back(e);
    std::partial_sort(candidates.begin(), candidates.begin() + config.top_k, candidates.end(),
                      better);

    float total = 0.0f;
    for (size_t i = 0; i < config.top_k; ++i) total += score[candidates[i]];
    const float norm = config.renormalize ? 1.0f / total : 1.0f;
    for (size_t i = 0; i < config.top_k; ++i) {
        experts[i] = static_cast<int32_t>(candidates[i]);
        weights[i] = score[candidates[i]] * norm * config.routed_scaling_factor;
    }
}

}  // namespace kl::cpu
