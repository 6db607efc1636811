// How a model splits over the devices of one host (docs/design/sharding.md): attention and
// KDA heads and the dense and shared-expert MLPs tensor-parallel (column-split projections
// into a block, the row-split projection out of it, one sum over the shards per block),
// routed experts expert-parallel (shard g owns experts [g E/G, (g+1) E/G)), embedding and
// lm_head split by vocabulary. Backend-neutral: it says which part of each tensor a shard
// holds; a backend loads those parts and sums the blocks' outputs over its shards.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "config.h"
#include "weights.h"

namespace kl {

// The part of a tensor one shard holds: along `axis`, elements [begin, begin + count) (the
// whole tensor when axis is -1). `held` is false for a routed expert another shard owns.
struct ShardSlice {
    int axis = -1;
    int64_t begin = 0, count = 0;
    bool held = true;
};

class ShardPlan {
public:
    // Unsupported, naming the dimension, when `shards` does not divide the KDA heads, the
    // MLA heads, a dense or shared MLP's width or the routed experts, or exceeds the
    // vocabulary; InvalidArgument for shards < 1 or > kMaxShards.
    ShardPlan(const ModelConfig& config, const ModelLayout& layout, int shards);

    static constexpr int kMaxShards = 64;

    int shards() const { return shards_; }
    // Shard `shard`'s part of the tensor named `tensor` (InvalidArgument for a name the
    // layout does not have or a shard out of range).
    ShardSlice slice(const std::string& tensor, int shard) const;
    // That part's shape: the tensor's shape with the sliced axis cut to `count`.
    std::vector<int64_t> shape(const TensorSpec& spec, int shard) const;

    // What each shard runs: heads and MLP widths per shard, its experts and vocabulary.
    int64_t kda_heads() const { return kda_heads_; }
    int64_t mla_heads() const { return mla_heads_; }
    int64_t dense_inter() const { return dense_inter_; }
    int64_t shared_inter() const { return shared_inter_; }
    std::pair<int64_t, int64_t> experts(int shard) const;  // [begin, end)
    std::pair<int64_t, int64_t> vocab(int shard) const;    // [begin, end)

    // What a backend running shard `shard` builds from: the config with its heads, and the
    // layout with each tensor's shape cut to the shard's part (routed experts another shard
    // owns: no rows), ...
    ModelConfig config(const ModelConfig& full, int shard) const;
    ModelLayout layout(const ModelLayout& full, int shard) const;
    // ... whose tensors `source(whole, shard)` gives: each read whole from `whole`, then cut.
    TensorSource source(const TensorSource& whole, int shard) const;

private:
    // How a tensor splits: `unit` elements of `axis` per shard (the vocabulary's last shard
    // holds the rest), or whole (axis -1), or only on the owner of routed expert `expert`.
    struct Rule {
        int axis = -1;
        int64_t unit = 0, size = 0;
        int64_t expert = -1;
        TensorSpec whole;  // the tensor as the unsplit layout describes it
    };
    void check_shard(int shard) const;

    int shards_;
    int64_t kda_heads_ = 0, mla_heads_ = 0, dense_inter_ = 0, shared_inter_ = 0;
    int64_t experts_per_shard_ = 0, vocab_size_ = 0;
    std::unordered_map<std::string, Rule> rules_;
};

// Shard part `slice` of a row-major tensor of `shape` held in `full`, row-major.
std::vector<float> take_slice(const float* full, const std::vector<int64_t>& shape,
                              const ShardSlice& slice);

}  // namespace kl
