#include "model.h"

#include <algorithm>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "backend_registry.h"
#include "error.h"
#include "hash.h"
#include "limits.h"
#include "log.h"
#include "safetensors.h"
#include "shard_plan.h"
#include "sharded_backend.h"
#include "weight_store.h"
#include "weights.h"

namespace kl {
namespace {

// Bytes sampled from each tensor for the fingerprint: enough to tell two random or trained
// checkpoints apart without reading gigabytes at load.
constexpr size_t kFingerprintSample = 64;

// A tensor that loads in another form than plain (quantized on load, or kept quantized)
// gives other values: its format is hashed too. A plain checkpoint loaded plain hashes
// as it always did.
uint64_t fingerprint_of(const ModelConfig& config, const ModelLayout& layout,
                        const WeightStore& weights) {
    Fnv1a64 hash;
    hash.update(config.to_json());
    layout.visit([&](const TensorSpec& spec) {
        hash.update(spec.name);
        if (weights.format(spec) != WeightFormat::Plain)
            hash.update(weight_format_name(weights.format(spec)));
        for (const TensorView* view : weights.views(spec)) {
            if (view->name != spec.name) hash.update(view->name);
            hash.update(shape_string(view->shape));
            const size_t take = std::min(kFingerprintSample, view->nbytes);
            hash.update(view->data, take);
            hash.update(view->data + view->nbytes / 2 - std::min(take / 2, view->nbytes / 2),
                        take / 2);
            hash.update(view->data + view->nbytes - take, take);
        }
    });
    return hash.digest();
}

// A checkpoint may carry tensors this runtime does not use (e.g. a multi-token-prediction
// head); they are skipped, but say so: a typo in a tensor name would look the same.
void warn_about_unused_tensors(const ModelLayout& layout, const WeightStore& weights,
                               const Checkpoint& checkpoint) {
    std::set<std::string> expected;
    layout.visit([&](const TensorSpec& spec) {
        for (const TensorView* view : weights.views(spec)) expected.insert(view->name);
    });
    std::vector<std::string> unused;
    for (const auto& entry : checkpoint.tensors())
        if (!expected.count(entry.first)) unused.push_back(entry.first);
    if (unused.empty()) return;
    std::string names;
    for (size_t i = 0; i < unused.size() && i < 5; ++i) names += (i ? ", " : "") + unused[i];
    if (unused.size() > 5) names += ", ...";
    log(LogLevel::Warn, std::to_string(unused.size()) +
                            " tensor(s) in the checkpoint are not used by the config: " + names);
}

// ModelLoadOptions::devices: distinct ordinals >= 0 (checked first, alike on every device);
// on a GPU each a usable device, on the CPU (whose shards are threads) the shards' numbers
// 0..n-1 in order.
void check_devices(const std::vector<int>& devices, bool use_gpu, int gpus) {
    if (devices.size() > static_cast<size_t>(ShardPlan::kMaxShards))
        fail(Status::InvalidArgument, std::to_string(devices.size()) +
                                          " devices listed: a model splits over at most " +
                                          std::to_string(ShardPlan::kMaxShards));
    auto entry = [&](size_t i) {
        return "devices[" + std::to_string(i) + "] is " + std::to_string(devices[i]);
    };
    for (size_t i = 0; i < devices.size(); ++i) {
        if (devices[i] < 0) fail(Status::InvalidArgument, entry(i) + ": an ordinal is >= 0");
        for (size_t j = 0; j < i; ++j)
            if (devices[j] == devices[i])
                fail(Status::InvalidArgument, entry(i) + ", as devices[" + std::to_string(j) +
                                                  "] is: a device holds one shard, list it once");
    }
    for (size_t i = 0; i < devices.size(); ++i) {
        if (use_gpu && devices[i] >= gpus)
            fail(Status::Device, "CUDA device " + std::to_string(devices[i]) + " (devices[" +
                                     std::to_string(i) + "]) requested, but " +
                                     std::to_string(gpus) + " device(s) are usable");
        if (!use_gpu && devices[i] != static_cast<int>(i))
            fail(Status::InvalidArgument,
                 entry(i) +
                     ": on the CPU the shards run on threads of this process and the "
                     "devices are their numbers, 0..n-1 in order");
    }
}

// Checks the options and picks the backend: the GPU one when asked for, or for Auto when a
// device is usable; the CPU one otherwise.
const BackendProvider& choose_backend(const ModelLoadOptions& options) {
    // KL_DEVICE_CPU never asks for the GPU backend: on a GPU machine, finding it costs the
    // driver's and the CUDA runtime's start-up (docs/design/architecture.md).
    static const GpuBackendLookup kNotAsked;
    const GpuBackendLookup& lookup =
        options.device == DeviceRequest::Cpu ? kNotAsked : gpu_backend();
    const BackendProvider* gpu = lookup.provider;
    const int gpus = gpu ? gpu->device_count() : 0;
    if (options.device == DeviceRequest::Cuda && !gpu) {
        if (!lookup.built)
            fail(Status::Unsupported,
                 "KL_DEVICE_CUDA requested, but this build has no CUDA backend; use "
                 "KL_DEVICE_CPU or KL_DEVICE_AUTO");
        fail(Status::Device, "KL_DEVICE_CUDA requested, but the CUDA backend is not available: " +
                                 lookup.why_not);
    }
    if (options.device == DeviceRequest::Auto && !gpu && lookup.built) {
        static std::once_flag said;  // the reason does not change: once per process
        std::call_once(said, [&] {
            log(LogLevel::Info, "KL_DEVICE_AUTO runs on the CPU: " + lookup.why_not);
        });
    }
    const bool use_gpu = options.device == DeviceRequest::Cuda ||
                         (options.device == DeviceRequest::Auto && gpus > 0);
    if (use_gpu && options.devices.empty() &&
        (options.device_index < 0 || options.device_index >= gpus))
        fail(Status::Device, "CUDA device " + std::to_string(options.device_index) +
                                 " requested, but " + std::to_string(gpus) +
                                 " device(s) are usable");
    const BackendProvider& provider = use_gpu ? *gpu : cpu_backend_provider();
    check_devices(options.devices, use_gpu, gpus);
    if (options.devices.size() > 1 && !provider.create_shard)
        fail(Status::Unsupported,
             "a model split over " + std::to_string(options.devices.size()) +
                 " devices: the GPU backend cannot run shards yet (CUDA shards over NCCL are "
                 "not built, docs/design/sharding.md); list one device, or use KL_DEVICE_CPU");
    // The bound keeps a typo (100000) from starting threads until the process runs out of
    // them; 1024 is far more than any machine's cores (kl_model_params.n_threads).
    constexpr int kMaxThreads = 1024;
    if (options.n_threads < 0 || options.n_threads > kMaxThreads)
        fail(Status::InvalidArgument, "n_threads is " + std::to_string(options.n_threads) +
                                          ", must be in [0, " + std::to_string(kMaxThreads) +
                                          "] (0 = all hardware threads)");
    if (options.max_batch > limits::kMaxBatch)
        fail(Status::InvalidArgument, "max_batch is " + std::to_string(options.max_batch) +
                                          ", must be at most " + std::to_string(limits::kMaxBatch));
    if (options.batch_wait_us > limits::kBatchWaitMicroseconds)
        fail(Status::InvalidArgument,
             "batch_wait_us is " + std::to_string(options.batch_wait_us) + ", must be at most " +
                 std::to_string(limits::kBatchWaitMicroseconds));
    return provider;
}

// The shards a model is split over: one per listed device, 1 when none is listed.
int shard_count(const ModelLoadOptions& options) {
    return std::max(1, static_cast<int>(options.devices.size()));
}

// A listed device replaces device_index (the unsplit model's device is the first).
BackendOptions backend_options(const ModelLoadOptions& options) {
    const int device = options.devices.empty() ? options.device_index : options.devices[0];
    return BackendOptions{device, options.n_threads, options.progress};
}

// A GPU backend uploads without reporting progress: say when it is done. (The CPU backend
// reported every tensor, the last one as 1.0.)
std::unique_ptr<DecodeBatcher> batcher_for(const ModelLoadOptions& options,
                                           const Backend& backend) {
    if (options.max_batch <= 1) return nullptr;
    return std::make_unique<DecodeBatcher>(backend, options.max_batch,
                                           std::chrono::microseconds(options.batch_wait_us));
}

// The backend for `weights`: plain weights through the provider's own path when it has one
// (`plain` null when it has none; the GPU backend's reads the checkpoint's tensors or makes
// random ones on the device), anything else through create_from_store; a backend without it
// reads only plain weights, so anything quantized is refused before loading.
std::unique_ptr<Backend> create_backend(const BackendProvider& provider, const ModelConfig& config,
                                        const ModelLayout& layout, const WeightStore& weights,
                                        const ModelLoadOptions& options,
                                        const std::function<std::unique_ptr<Backend>()>& plain) {
    const int shards = shard_count(options);
    if (shards != 1) {
        const ShardPlan plan(config, layout, shards);
        if (!provider.create_shard)  // choose_backend refused the split already
            fail(Status::Unsupported, "this backend cannot run a model split over " +
                                          std::to_string(shards) + " shards");
        // The threads split between the shards, which run at once; shard g on devices[g].
        BackendOptions per_shard = backend_options(options);
        const int threads = per_shard.n_threads > 0
                                ? per_shard.n_threads
                                : static_cast<int>(std::thread::hardware_concurrency());
        per_shard.n_threads = std::max(1, threads / shards);
        std::unique_ptr<ShardGroup> group;
        if (provider.create_shard_group) group = provider.create_shard_group(options.devices);
        return std::make_unique<ShardedBackend>(
            config, plan,
            [&](int shard, ShardLinks links) {
                BackendOptions on_device = per_shard;
                on_device.device_index = options.devices[static_cast<size_t>(shard)];
                return provider.create_shard(config, layout, weights, plan, shard, std::move(links),
                                             on_device);
            },
            std::move(group));
    }
    if (weights.all_plain() && plain) return plain();
    if (!provider.create_from_store)
        fail(Status::Unsupported,
             "this backend does not run quantized (FP8 or INT4) weights; load on the CPU "
             "(KL_DEVICE_CPU), or a bf16 checkpoint with weight format AUTO or BF16");
    return provider.create_from_store(config, layout, weights, backend_options(options));
}

void report_done(const ModelLoadOptions& options, const Backend& backend) {
    if (backend.device() == DeviceKind::Cpu) return;
    if (options.progress && !options.progress(1.0f))
        fail(Status::Cancelled, "model load cancelled by the progress callback");
}

}  // namespace

std::unique_ptr<Model> Model::load(const std::string& dir, const ModelLoadOptions& options) {
    const BackendProvider& provider = choose_backend(options);
    auto model = std::unique_ptr<Model>(new Model());
    model->config_ = ModelConfig::load(dir);
    // The checkpoint's headers first: the layout is built only once the tensor count it
    // needs is known to be there (docs/design/model.md, "Limits").
    const QuantizationConfig quantization = load_quantization_config(dir);
    auto checkpoint = Checkpoint::open(dir);
    check_tensor_count(model->config_, *checkpoint);
    const ModelLayout layout(model->config_);
    const auto weights = WeightStore::open(layout, *checkpoint, quantization, options.weights);
    model->tokenizer_ = Tokenizer::load(dir, model->config_.vocab_size);
    warn_about_unused_tensors(layout, *weights, *checkpoint);
    model->fingerprint_ = fingerprint_of(model->config_, layout, *weights);
    model->parameters_ = count_parameters(model->config_, layout,
                                          [&](const TensorSpec& s) { return weights->format(s); });
    std::function<std::unique_ptr<Backend>()> plain;
    if (provider.create)
        plain = [&] {
            return provider.create(model->config_, layout, *checkpoint, backend_options(options));
        };
    model->backend_ = create_backend(provider, model->config_, layout, *weights, options, plain);
    model->shards_ = shard_count(options);
    model->batcher_ = batcher_for(options, *model->backend_);
    report_done(options, *model->backend_);
    return model;
}

std::unique_ptr<Model> Model::create_random(const ModelConfig& config, uint64_t seed,
                                            const ModelLoadOptions& options) {
    const BackendProvider& provider = choose_backend(options);
    config.validate("random model config");
    auto model = std::unique_ptr<Model>(new Model());
    model->config_ = config;
    Fnv1a64 hash;
    hash.update(config.to_json());
    hash.update("random weights, seed " + std::to_string(seed));
    if (options.weights != WeightRequest::AsStored && options.weights != WeightRequest::Bf16)
        hash.update(std::string("weights ") +
                    (options.weights == WeightRequest::Fp8 ? "fp8" : "int4"));
    model->fingerprint_ = hash.digest();
    const ModelLayout layout(config);
    const auto weights = WeightStore::random(layout, seed, options.weights);
    model->parameters_ =
        count_parameters(config, layout, [&](const TensorSpec& s) { return weights->format(s); });
    std::function<std::unique_ptr<Backend>()> plain;
    if (provider.create_random)
        plain = [&] {
            return provider.create_random(config, layout, seed, backend_options(options));
        };
    model->backend_ = create_backend(provider, config, layout, *weights, options, plain);
    model->shards_ = shard_count(options);
    model->batcher_ = batcher_for(options, *model->backend_);
    report_done(options, *model->backend_);
    return model;
}

}  // namespace kl
