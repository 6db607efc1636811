// A CudaBackend as one shard of a model split over the GPUs of one host
// (docs/design/sharding.md "CUDA shards"): the provider's create_shard_group (the NCCL
// communicators) and create_shard (the shard's part of the weights, as core/shard_plan.h
// cuts them), and the shard's part of the forward pass: the blocks' sums, the logits'
// gather and the cancel the shards agree on.
#include <string>
#include <unordered_map>

#include "core/shard_plan.h"
#include "core/weight_store.h"
#include "cuda_model.h"

namespace kl::cuda {
namespace {

// What core's ShardedBackend aborts and resets: the NCCL group.
class NcclShardGroup final : public ShardGroup {
public:
    explicit NcclShardGroup(const std::vector<int>& devices) : nccl(devices) {}
    void abort() override { nccl.abort(); }
    void reset() override { nccl.reset(); }
    NcclGroup nccl;
};

// Shard `shard`'s part `part` of the tensor `whole`: another shard's expert has none; a
// tensor the shard holds whole loads as an unsplit model's (quantized experts stay
// quantized); a cut one is cut from the whole's values and uploaded as bf16 (or fp32) of
// them. Random weights are made from the whole tensor's spec (its shape sets their scale).
Weight shard_weight(const WeightStore& store, const ShardPlan& plan, int shard,
                    const TensorSpec& whole, const TensorSpec& part, Form form) {
    const ShardSlice slice = plan.slice(part.name, shard);
    if (!slice.held) return Weight{};
    if (slice.axis < 0) return store_weight(store, part, form);
    std::vector<float> values(static_cast<size_t>(whole.numel()));
    if (const auto seed = store.random_seed()) {
        const Weight w = random_weight(whole, *seed, /*as_f32=*/true);
        check(cudaMemcpy(values.data(), w.f32(), values.size() * sizeof(float),
                         cudaMemcpyDeviceToHost),
              "random weights");
    } else {
        store.dequantized(whole, values.data());
    }
    const std::vector<float> cut = take_slice(values.data(), whole.shape, slice);
    const size_t rows = part.shape.empty() ? 1 : static_cast<size_t>(part.shape[0]);
    return upload_values(cut, rows, rows ? cut.size() / rows : 0, form == Form::F32);
}

}  // namespace

// Until a split model has run on several GPUs, running one is asked for explicitly.
std::unique_ptr<ShardGroup> create_shard_group(const std::vector<int>& devices) {
    if (!env_switch("KL_CUDA_SHARDS", false))
        fail(Status::Unsupported,
             "a model split over " + std::to_string(devices.size()) +
                 " GPUs: CUDA shards over NCCL are built but not yet verified on a machine with "
                 "several GPUs; set KL_CUDA_SHARDS=1 to run them (docs/design/sharding.md), or "
                 "list one device, or use KL_DEVICE_CPU");
    return std::make_unique<NcclShardGroup>(devices);
}

std::unique_ptr<Backend> create_shard(const ModelConfig& config, const ModelLayout& layout,
                                      const WeightStore& weights, const ShardPlan& plan, int shard,
                                      ShardLinks links, const BackendOptions& options) {
    auto* group = dynamic_cast<NcclShardGroup*>(links.group);
    if (!group || group->nccl.device(shard) != options.device_index)
        fail(Status::Internal, "CUDA shard " + std::to_string(shard) + " without its NCCL rank");
    std::unordered_map<std::string, TensorSpec> whole;
    layout.visit([&](const TensorSpec& spec) { whole.emplace(spec.name, spec); });
    DeviceGuard guard(options.device_index);
    auto backend = std::make_unique<CudaBackend>(
        plan.config(config, shard), plan.layout(layout, shard),
        [&](const TensorSpec& spec, Form form) {
            return shard_weight(weights, plan, shard, whole.at(spec.name), spec, form);
        },
        options.device_index);
    check(cudaDeviceSynchronize(), "weights");
    ShardRole role;
    role.nccl = &group->nccl;
    role.rank = shard;
    role.experts = plan.experts(shard);
    for (int g = 0; g < plan.shards(); ++g) role.vocab.push_back(plan.vocab(g));
    role.links = std::move(links);
    backend->become_shard(std::move(role));
    return backend;
}

void CudaBackend::become_shard(ShardRole role) {
    DeviceGuard guard(device_);
    size_t width = 0;
    for (const auto& [begin, end] : role.vocab) width = std::max(width, size_t(end - begin));
    const size_t rows = std::max(kLogitsRows, kBatchLogitsRows);
    head_width_ = width;
    head_part_ = DeviceBuffer(rows * width * sizeof(float));
    head_gathered_ = DeviceBuffer(role.vocab.size() * rows * width * sizeof(float));
    shard_ = std::make_unique<ShardRole>(std::move(role));
}

void CudaBackend::shard_sum(float* values, size_t count) const {
    if (shard_) shard_->nccl->sum(shard_->rank, values, count, stream_);
}

// Each shard's part [rows, its width] is computed with the widest part's row stride, so that
// every rank sends the same count; the gathered parts then go to their columns of `out`.
void CudaBackend::head_rows(const bf16* xn, size_t rows, float* out) const {
    if (!shard_) {
        linear(xn, rows, head(), out);
        return;
    }
    const size_t width = head_width_, vocab = config_.vocab_size;
    float* part = head_part_.as<float>();
    float* gathered = head_gathered_.as<float>();
    linear(xn, rows, head(), part, width);
    shard_->nccl->gather(shard_->rank, part, rows * width, gathered, stream_);
    for (size_t g = 0; g < shard_->vocab.size(); ++g) {
        const auto [begin, end] = shard_->vocab[g];
        check(cudaMemcpy2DAsync(out + begin, vocab * sizeof(float), gathered + g * rows * width,
                                width * sizeof(float), size_t(end - begin) * sizeof(float), rows,
                                cudaMemcpyDeviceToDevice, stream_),
              "gather logits");
    }
}

// The host links' sum of every shard's vote: throws Cancelled when another shard failed.
bool CudaBackend::stop_for_cancel(const std::atomic<bool>& cancel) const {
    const bool mine = cancel.load(std::memory_order_relaxed);
    if (!shard_) return mine;
    float votes = mine ? 1.0f : 0.0f;
    shard_->links.sum(&votes, 1);
    return votes > 0.0f;
}

}  // namespace kl::cuda
