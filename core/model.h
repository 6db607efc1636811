// A loaded model: config, the backend holding its weights, and the fingerprint snapshots
// carry. Immutable after load; shared by any number of sessions.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "config.h"
#include "decode_batcher.h"
#include "quant_config.h"
#include "tokenizer/tokenizer.h"
#include "weights.h"

namespace kl {

enum class DeviceRequest { Auto = 0, Cpu = 1, Cuda = 2 };  // values match kl_device

struct ModelLoadOptions {
    DeviceRequest device = DeviceRequest::Auto;
    int device_index = 0;
    int n_threads = 0;                    // 0 = all hardware threads
    std::function<bool(float)> progress;  // false aborts (Cancelled); may be empty
    // Decode batching across threads (core/decode_batcher.h): > 1 turns it on.
    uint32_t max_batch = 0;
    uint32_t batch_wait_us = 0;
    // The weights' form once loaded (core/quant_config.h): as stored, plain, FP8 or INT4.
    WeightRequest weights = WeightRequest::AsStored;
    // The devices the model is split over, one shard each (docs/design/sharding.md); empty =
    // the whole model on device_index (which a list replaces; one entry: the whole model on
    // that device). On a GPU the entries are distinct device ordinals; the CPU backend runs
    // the shards on threads of one process (a check of the split; no faster), and its
    // entries are the shards' numbers, 0..n-1 in order. Checked at load: InvalidArgument
    // for a negative or repeated entry or other CPU entries, Device for a GPU not there.
    std::vector<int> devices;
};

class Model {
public:
    static std::unique_ptr<Model> load(const std::string& dir, const ModelLoadOptions& options);
    // A model of `config` with deterministic random weights (core/random_init.h), built in
    // the backend's memory with no files: benchmarks of any shape, the real one included.
    static std::unique_ptr<Model> create_random(const ModelConfig& config, uint64_t seed,
                                                const ModelLoadOptions& options);

    const ModelConfig& config() const { return config_; }
    const Backend& backend() const { return *backend_; }
    // Identifies config + weights: a hash of the config and of each tensor's name, shape and
    // sampled bytes. Snapshots of another model are rejected by it.
    uint64_t fingerprint() const { return fingerprint_; }
    // The tokenizer of the model folder; null when it has none (or for random models).
    const Tokenizer* tokenizer() const { return tokenizer_.get(); }
    const ParameterCounts& parameters() const { return parameters_; }
    // Batches concurrent one-token steps of this model's sessions; null when the model was
    // loaded without (max_batch <= 1). Thread-safe.
    DecodeBatcher* batcher() const { return batcher_.get(); }
    // The shards (devices) the model is split over; 1 for a model on one device.
    int shards() const { return shards_; }

private:
    ModelConfig config_;
    ParameterCounts parameters_;
    std::unique_ptr<Backend> backend_;
    uint64_t fingerprint_ = 0;
    int shards_ = 1;
    std::unique_ptr<Tokenizer> tokenizer_;
    std::unique_ptr<DecodeBatcher> batcher_;  // after backend_: destroyed before it
};

}  // namespace kl
