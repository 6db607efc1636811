#include "model.h"

#include <algorithm>

#include "cpu/cpu_backend.h"
#include "error.h"
#include "hash.h"
#include "safetensors.h"
#include "weights.h"

namespace kl {
namespace {

// Bytes sampled from each tensor for the fingerprint: enough to tell two random or trained
// checkpoints apart without reading gigabytes at load.
constexpr size_t kFingerprintSample = 64;

uint64_t fingerprint_of(const ModelConfig& config, const Checkpoint& checkpoint) {
    Fnv1a64 hash;
    hash.update(config.to_json());
    for (const TensorSpec& spec : expected_tensors(config)) {
        const TensorView* view = checkpoint.find(spec.name);
        hash.update(spec.name);
        hash.update(shape_string(view->shape));
        const size_t take = std::min(kFingerprintSample, view->nbytes);
        hash.update(view->data, take);
        hash.update(view->data + view->nbytes / 2 - std::min(take / 2, view->nbytes / 2), take / 2);
        hash.update(view->data + view->nbytes - take, take);
    }
    return hash.digest();
}

}  // namespace

std::unique_ptr<Model> Model::load(const std::string& dir, const ModelLoadOptions& options) {
    if (options.device == DeviceRequest::Cuda)
        fail(Status::Unsupported,
             "KL_DEVICE_CUDA requested, but this build has no CUDA backend yet; use "
             "KL_DEVICE_CPU or KL_DEVICE_AUTO");
    if (options.n_threads < 0)
        fail(Status::InvalidArgument,
             "n_threads is " + std::to_string(options.n_threads) + ", must be >= 0");

    auto model = std::unique_ptr<Model>(new Model());
    model->config_ = ModelConfig::load(dir);
    auto checkpoint = Checkpoint::open(dir);
    validate_checkpoint(model->config_, *checkpoint);
    model->fingerprint_ = fingerprint_of(model->config_, *checkpoint);
    ModelWeights weights = load_weights_f32(model->config_, *checkpoint, options.progress);
    model->backend_ = make_cpu_backend(model->config_, std::move(weights), options.n_threads);
    return model;
}

}  // namespace kl
