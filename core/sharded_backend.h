// A model split over G shards (docs/design/sharding.md) as one Backend: G shard backends,
// each built by its backend's provider from its part of the weights, run by G threads that
// meet at a ShardRendezvous. Sessions, snapshots, forks, batched decode and cancel work on
// it as on any backend: a session's state is its G shards' states; a snapshot holds the
// whole model's state (the KDA heads of every shard put together, the MLA cache once), the
// bytes an unsplit model's snapshot holds, so snapshots move between split and whole models
// of the same weights. Calls that run the model are serialised per model (the shards of
// two calls cannot share one rendezvous); a failed or cancelled one fails on every shard and
// changes no state.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "backend.h"
#include "config.h"
#include "shard_plan.h"
#include "shard_rendezvous.h"

namespace kl {

class ShardedBackend final : public Backend {
public:
    // make(g, links) builds shard g's backend, whose links meet the others'.
    using MakeShard = std::function<std::unique_ptr<Backend>(int shard, ShardLinks links)>;
    // `group`: the shards' device links (ShardLinks::group), null when their backend has none.
    ShardedBackend(const ModelConfig& config, const ShardPlan& plan, const MakeShard& make,
                   std::unique_ptr<ShardGroup> group = nullptr);
    ~ShardedBackend() override;

    DeviceKind device() const override { return shards_[0]->device(); }
    uint64_t weight_bytes() const override;
    uint64_t session_fixed_bytes() const override;
    uint64_t kv_bytes_per_token() const override;

    std::unique_ptr<BackendState> create_state(uint64_t max_context) const override;
    std::unique_ptr<BackendState> clone_state(const BackendState& state) const override;
    void reset_state(BackendState& state) const override;
    void fill_synthetic(BackendState& state, uint64_t position, uint64_t seed) const override;
    void read_logits(const BackendState& state, float* out) const override;
    void write_logits(BackendState& state, const float* logits) const override;
    void save_layer(const BackendState& state, size_t layer, uint64_t position,
                    uint8_t* out) const override;
    void load_layer(BackendState& state, size_t layer, uint64_t position,
                    const uint8_t* in) const override;
    void forward(BackendState& state, uint64_t position, const int32_t* tokens, size_t n,
                 float* last_logits, float* all_logits,
                 const std::atomic<bool>& cancel) const override;
    void forward_batch(BackendState* const* states, const uint64_t* positions,
                       const int32_t* tokens, size_t n) const override;
    // Shard 0 samples (every shard holds the whole logits): a GPU shard on its device.
    int32_t sample(const BackendState& state, const SamplingParams& params, const int32_t* history,
                   size_t history_len, uint64_t position) const override;
    void sample_batch(const BackendState* const* states, const SamplingParams* params,
                      const int32_t* const* histories, const size_t* history_lens,
                      const uint64_t* positions, size_t n, int32_t* out) const override;

private:
    // step(g) for every shard, each on its own thread (shard 0 on the caller's); the first
    // error other than the Cancelled that the others get from the rendezvous is rethrown.
    void run_shards(const std::function<void(int)>& step) const;
    // A KDA layer's snapshot part: one shard's bytes, and the runs of them in the whole's.
    size_t kda_part_bytes() const {
        return static_cast<size_t>(shard_configs_[0].recurrent_floats_per_kda_layer()) *
               sizeof(float);
    }
    template <typename Copy>
    void each_kda_run(size_t shard, const Copy& copy) const;

    ModelConfig config_;
    std::vector<ModelConfig> shard_configs_;
    std::unique_ptr<ShardRendezvous> rendezvous_;
    std::unique_ptr<ShardGroup> group_;  // outlives the shards, which use it
    std::vector<std::unique_ptr<Backend>> shards_;
    mutable std::mutex run_mutex_;
};

}  // namespace kl
