// The split of a model over G devices (core/shard_plan.h): for every tensor of the released
// config and of the tiny one, the shards' parts cover the tensor exactly once (split
// tensors: adjacent, disjoint ranges of one axis; routed experts: one owner each;
// everything else: whole on every shard), the per-shard extents add up, take_slice's
// parts put back together give the tensor, and splits that do not divide fail clearly.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/shard_plan.h"
#include "core/weights.h"
#include "expect_error.h"
#include "tiny_config.h"

namespace {

namespace fs = std::filesystem;

kl::ModelConfig released_config() {
    const fs::path path =
        fs::path(__FILE__).parent_path().parent_path() / "configs" / "kimi-linear-48b-a3b.json";
    return kl::ModelConfig::from_json(kl::test::read_file(path.string()), path.string());
}

// The tiny preset with heads doubled, so that it splits 4 ways, and a vocabulary that does
// not (parts of 64 and 65 rows).
kl::ModelConfig tiny_config() {
    kl::ModelConfig c = kl::test::tiny_config();
    c.num_attention_heads = 4, c.kda_num_heads = 4, c.vocab_size = 258;
    c.validate("tiny");
    return c;
}

int64_t numel(const std::vector<int64_t>& shape) {
    return std::accumulate(shape.begin(), shape.end(), int64_t(1), std::multiplies<int64_t>());
}

void check_cover(const kl::ModelConfig& config, int shards) {
    SCOPED_TRACE("shards " + std::to_string(shards));
    const kl::ModelLayout layout(config);
    const kl::ShardPlan plan(config, layout, shards);
    std::vector<int64_t> held(static_cast<size_t>(shards), 0);
    int64_t total = 0, replicated = 0;
    layout.visit([&](const kl::TensorSpec& spec) {
        total += numel(spec.shape);
        const kl::ShardSlice first = plan.slice(spec.name, 0);
        int owners = 0;
        int64_t next = 0;  // where the next shard's range must start
        for (int g = 0; g < shards; ++g) {
            const kl::ShardSlice s = plan.slice(spec.name, g);
            ASSERT_EQ(s.axis, first.axis) << spec.name;
            const std::vector<int64_t> shape = plan.shape(spec, g);
            ASSERT_EQ(shape.size(), spec.shape.size()) << spec.name;
            if (s.axis >= 0) {
                EXPECT_EQ(s.begin, next) << spec.name << " shard " << g;
                EXPECT_GT(s.count, 0) << spec.name << " shard " << g;
                next = s.begin + s.count;
                EXPECT_EQ(shape[size_t(s.axis)], s.count) << spec.name;
                held[size_t(g)] += numel(shape);
            } else if (s.held) {
                ++owners;
                EXPECT_EQ(shape, spec.shape) << spec.name;
                held[size_t(g)] += numel(shape);
            }
        }
        if (first.axis >= 0) {
            EXPECT_EQ(next, spec.shape[size_t(first.axis)]) << spec.name << ": parts do not cover";
        } else {
            const bool expert = spec.name.find(".experts.") != std::string::npos;
            EXPECT_EQ(owners, expert ? 1 : shards) << spec.name;
            if (!expert) replicated += numel(spec.shape);
        }
    });
    // Every element once, replicated tensors once per shard.
    EXPECT_EQ(std::accumulate(held.begin(), held.end(), int64_t(0)),
              total + (shards - 1) * replicated);
    // Tensor and expert parallel parts are equal; only the vocabulary's may differ by a row.
    const int64_t hidden = config.hidden_size;
    for (int g = 1; g < shards; ++g)
        EXPECT_LE(std::llabs(held[size_t(g)] - held[0]), 2 * hidden) << "shard " << g;
}

TEST(ShardPlan, TheReleasedModelSplitsOverTwoFourAndEightDevices) {
    const kl::ModelConfig config = released_config();
    for (int shards : {1, 2, 4, 8}) check_cover(config, shards);
    const kl::ModelLayout layout(config);
    const kl::ShardPlan plan(config, layout, 8);
    EXPECT_EQ(plan.kda_heads(), 4);
    EXPECT_EQ(plan.mla_heads(), 4);
    EXPECT_EQ(plan.dense_inter(), config.intermediate_size / 8);
    EXPECT_EQ(plan.shared_inter(), config.moe_intermediate_size / 8);
    EXPECT_EQ(plan.experts(3), std::make_pair(int64_t(96), int64_t(128)));
    EXPECT_EQ(plan.vocab(7), std::make_pair(int64_t(143360), int64_t(163840)));
    // Named examples of each kind of split.
    const kl::ShardSlice q = plan.slice("model.layers.3.self_attn.q_proj.weight", 2);  // MLA
    EXPECT_EQ(q.axis, 0);
    EXPECT_EQ(q.count, 4 * (config.qk_nope_head_dim + config.qk_rope_head_dim));
    const kl::ShardSlice kv_a = plan.slice("model.layers.3.self_attn.kv_a_proj_with_mqa.weight", 5);
    EXPECT_EQ(kv_a.axis, -1);
    EXPECT_TRUE(kv_a.held);
    const std::string expert = "model.layers.1.block_sparse_moe.experts.";
    EXPECT_TRUE(plan.slice(expert + "31.w1.weight", 0).held);
    EXPECT_FALSE(plan.slice(expert + "32.w1.weight", 0).held);
    EXPECT_TRUE(plan.slice(expert + "32.w2.weight", 1).held);
    const kl::ShardSlice kda_o = plan.slice("model.layers.0.self_attn.o_proj.weight", 1);
    EXPECT_EQ(kda_o.axis, 1);
    EXPECT_EQ(kda_o.begin, 4 * 128);
}

TEST(ShardPlan, TheTinyModelSplitsOverTwoAndFourDevices) {
    for (int shards : {1, 2, 4}) check_cover(tiny_config(), shards);
    kl::ModelConfig tied = tiny_config();
    tied.tie_word_embeddings = true;
    check_cover(tied, 4);
}

TEST(ShardPlan, TakeSlicePartsPutBackTogetherAreTheTensor) {
    std::mt19937 rng(3);
    std::normal_distribution<float> d;
    for (const std::vector<int64_t>& shape :
         {std::vector<int64_t>{12, 5}, {1, 1, 8, 1}, {24, 1, 4}, {6, 10}, {30}}) {
        std::vector<float> full(static_cast<size_t>(numel(shape)));
        for (float& v : full) v = d(rng);
        for (int axis = 0; axis < static_cast<int>(shape.size()); ++axis) {
            const int64_t dim = shape[size_t(axis)];
            for (int64_t parts : {int64_t(1), int64_t(2), dim}) {
                if (dim % parts) continue;
                std::vector<std::vector<float>> pieces;
                for (int64_t p = 0; p < parts; ++p) {
                    kl::ShardSlice s;
                    s.axis = axis, s.begin = p * (dim / parts), s.count = dim / parts;
                    pieces.push_back(kl::take_slice(full.data(), shape, s));
                }
                // Concatenate along `axis`: outer blocks of `inner * count` from each piece.
                int64_t outer = 1, inner = 1;
                for (int i = 0; i < axis; ++i) outer *= shape[size_t(i)];
                for (size_t i = size_t(axis) + 1; i < shape.size(); ++i) inner *= shape[i];
                std::vector<float> joined;
                for (int64_t o = 0; o < outer; ++o)
                    for (const auto& piece : pieces) {
                        const int64_t block = inner * (dim / parts);
                        joined.insert(joined.end(), piece.begin() + o * block,
                                      piece.begin() + (o + 1) * block);
                    }
                EXPECT_EQ(joined, full) << "axis " << axis << " parts " << parts;
            }
        }
    }
    kl::ShardSlice outside;
    outside.axis = 0, outside.begin = 10, outside.count = 3;
    const std::vector<float> small(12 * 5, 0.0f);
    kl::test::expect_error(
        [&] {
            kl::take_slice(small.data(), {12, 5}, outside);
        },
        kl::Status::InvalidArgument, {"outside"});
}

TEST(ShardPlan, SplitsThatDoNotDivideFailNamingTheDimension) {
    const kl::ModelConfig released = released_config();
    const kl::ModelLayout layout(released);
    kl::test::expect_error([&] { (void)kl::ShardPlan(released, layout, 3); },
                           kl::Status::Unsupported, {"kda_num_heads (32) is not a multiple of 3"});
    kl::test::expect_error([&] { (void)kl::ShardPlan(released, layout, 0); },
                           kl::Status::InvalidArgument, {"1 to 64"});
    kl::test::expect_error([&] { (void)kl::ShardPlan(released, layout, 65); },
                           kl::Status::InvalidArgument, {"1 to 64"});
    kl::ModelConfig c = tiny_config();
    c.num_experts = 6;  // heads split 2 ways, experts do not
    c.num_experts_per_token = 2;
    c.validate("tiny");
    kl::test::expect_error([&] { (void)kl::ShardPlan(c, kl::ModelLayout(c), 4); },
                           kl::Status::Unsupported, {"num_experts (6)"});
    c = tiny_config();
    c.vocab_size = 3;
    kl::test::expect_error([&] { (void)kl::ShardPlan(c, kl::ModelLayout(c), 4); },
                           kl::Status::Unsupported, {"vocab_size (3)"});
    const kl::ShardPlan plan(released, layout, 2);
    kl::test::expect_error([&] { plan.slice("no.such.tensor", 0); }, kl::Status::InvalidArgument,
                           {"no tensor"});
    kl::test::expect_error([&] { plan.slice("model.norm.weight", 2); }, kl::Status::InvalidArgument,
                           {"shard 2"});
}

}  // namespace
