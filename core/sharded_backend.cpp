#include "sharded_backend.h"

#include <atomic>
#include <cstring>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>

#include "error.h"

namespace kl {
namespace {

struct ShardedState final : BackendState {
    ShardedState(uint64_t capacity, size_t vocab) : BackendState(capacity, vocab) {}
    std::vector<std::unique_ptr<BackendState>> parts;
};

ShardedState& parts_of(BackendState& state) {
    return static_cast<ShardedState&>(state);
}
const ShardedState& parts_of(const BackendState& state) {
    return static_cast<const ShardedState&>(state);
}

}  // namespace

ShardedBackend::ShardedBackend(const ModelConfig& config, const ShardPlan& plan,
                               const MakeShard& make, std::unique_ptr<ShardGroup> group)
    : config_(config), group_(std::move(group)) {
    std::vector<std::pair<int64_t, int64_t>> vocab;
    for (int g = 0; g < plan.shards(); ++g) {
        vocab.push_back(plan.vocab(g));
        shard_configs_.push_back(plan.config(config, g));
    }
    rendezvous_ = std::make_unique<ShardRendezvous>(std::move(vocab));
    for (int g = 0; g < plan.shards(); ++g) {
        ShardLinks links = rendezvous_->links(g);
        links.group = group_.get();
        shards_.push_back(make(g, std::move(links)));
    }
}

ShardedBackend::~ShardedBackend() {
    shards_.clear();  // before the group they use
}

uint64_t ShardedBackend::weight_bytes() const {
    uint64_t bytes = 0;
    for (const auto& s : shards_) bytes += s->weight_bytes();
    return bytes;
}

uint64_t ShardedBackend::session_fixed_bytes() const {
    uint64_t bytes = 0;
    for (const auto& s : shards_) bytes += s->session_fixed_bytes();
    return bytes;
}

uint64_t ShardedBackend::kv_bytes_per_token() const {  // every shard keeps the latent cache
    uint64_t bytes = 0;
    for (const auto& s : shards_) bytes += s->kv_bytes_per_token();
    return bytes;
}

std::unique_ptr<BackendState> ShardedBackend::create_state(uint64_t max_context) const {
    auto state =
        std::make_unique<ShardedState>(max_context, static_cast<size_t>(config_.vocab_size));
    for (const auto& s : shards_) state->parts.push_back(s->create_state(max_context));
    return state;
}

std::unique_ptr<BackendState> ShardedBackend::clone_state(const BackendState& state) const {
    const ShardedState& from = parts_of(state);
    auto copy = std::make_unique<ShardedState>(from.capacity(), from.vocab());
    for (size_t g = 0; g < shards_.size(); ++g)
        copy->parts.push_back(shards_[g]->clone_state(*from.parts[g]));
    return copy;
}

void ShardedBackend::reset_state(BackendState& state) const {
    for (size_t g = 0; g < shards_.size(); ++g) shards_[g]->reset_state(*parts_of(state).parts[g]);
}

void ShardedBackend::fill_synthetic(BackendState& state, uint64_t position, uint64_t seed) const {
    for (size_t g = 0; g < shards_.size(); ++g)
        shards_[g]->fill_synthetic(*parts_of(state).parts[g], position, seed);
}

void ShardedBackend::read_logits(const BackendState& state, float* out) const {
    shards_[0]->read_logits(*parts_of(state).parts[0], out);  // every shard holds them whole
}

void ShardedBackend::write_logits(BackendState& state, const float* logits) const {
    for (size_t g = 0; g < shards_.size(); ++g)
        shards_[g]->write_logits(*parts_of(state).parts[g], logits);
}

// A KDA layer's snapshot part is S [H, D, D] then the conv state [3 (kernel - 1), H D]: shard
// g holds heads [g H/G, (g + 1) H/G), its S the g-th run of S and its conv rows the g-th run
// of columns of each row. copy(at_whole, at_part, bytes) moves one run between the whole
// layer's bytes and shard g's (kda_part_bytes()).
template <typename Copy>
void ShardedBackend::each_kda_run(size_t g, const Copy& copy) const {
    const size_t G = shards_.size();
    const size_t state_floats = static_cast<size_t>(shard_configs_[0].kda_state_floats());
    const size_t width = static_cast<size_t>(shard_configs_[0].kda_dim());
    const size_t conv_rows = static_cast<size_t>(3 * (config_.short_conv_kernel_size - 1));
    constexpr size_t f = sizeof(float);
    copy(g * state_floats * f, size_t(0), state_floats * f);
    for (size_t r = 0; r < conv_rows; ++r)
        copy((G * state_floats + r * G * width + g * width) * f, (state_floats + r * width) * f,
             width * f);
}

// An MLA layer's cache is the same on every shard: shard 0's is saved, every shard loads it.
void ShardedBackend::save_layer(const BackendState& state, size_t layer, uint64_t position,
                                uint8_t* out) const {
    const ShardedState& s = parts_of(state);
    if (!config_.is_kda_layer(static_cast<int64_t>(layer))) {
        shards_[0]->save_layer(*s.parts[0], layer, position, out);
        return;
    }
    std::vector<uint8_t> part(kda_part_bytes());
    for (size_t g = 0; g < shards_.size(); ++g) {
        shards_[g]->save_layer(*s.parts[g], layer, position, part.data());
        each_kda_run(g, [&](size_t whole, size_t in_part, size_t bytes) {
            std::memcpy(out + whole, part.data() + in_part, bytes);
        });
    }
}

void ShardedBackend::load_layer(BackendState& state, size_t layer, uint64_t position,
                                const uint8_t* in) const {
    ShardedState& s = parts_of(state);
    if (!config_.is_kda_layer(static_cast<int64_t>(layer))) {
        for (size_t g = 0; g < shards_.size(); ++g)
            shards_[g]->load_layer(*s.parts[g], layer, position, in);
        return;
    }
    std::vector<uint8_t> part(kda_part_bytes());
    for (size_t g = 0; g < shards_.size(); ++g) {
        each_kda_run(g, [&](size_t whole, size_t in_part, size_t bytes) {
            std::memcpy(part.data() + in_part, in + whole, bytes);
        });
        shards_[g]->load_layer(*s.parts[g], layer, position, part.data());
    }
}

void ShardedBackend::run_shards(const std::function<void(int)>& step) const {
    std::lock_guard<std::mutex> lock(run_mutex_);
    const size_t G = shards_.size();
    std::vector<std::exception_ptr> errors(G);
    // A failed shard releases the others from the host rendezvous and from the device
    // group's collectives; both are re-armed once every shard has left the step.
    std::once_flag abort_once;
    std::atomic<bool> aborted{false};
    auto abort = [&] {
        std::call_once(abort_once, [&] {
            aborted.store(true);
            rendezvous_->abort();
            if (group_) group_->abort();
        });
    };
    auto reset = [&] {
        rendezvous_->reset();
        if (group_ && aborted.load()) group_->reset();
    };
    auto guarded = [&](size_t g) {
        try {
            step(static_cast<int>(g));
        } catch (...) {
            errors[g] = std::current_exception();
            abort();
        }
    };
    std::vector<std::thread> threads;
    try {
        for (size_t g = 1; g < G; ++g) threads.emplace_back(guarded, g);
    } catch (const std::system_error&) {  // a thread the system would not start
        abort();
        for (std::thread& t : threads) t.join();
        reset();
        fail(Status::OutOfMemory, "cannot start the threads of a split model's shards");
    }
    guarded(0);
    for (std::thread& t : threads) t.join();
    reset();
    // The root cause first: the shards released by the abort report Cancelled.
    std::exception_ptr first;
    for (const std::exception_ptr& e : errors) {
        if (!e) continue;
        if (!first) first = e;
        try {
            std::rethrow_exception(e);
        } catch (const Error& error) {
            if (error.status() != Status::Cancelled) std::rethrow_exception(e);
        } catch (...) {
            std::rethrow_exception(e);
        }
    }
    if (first) std::rethrow_exception(first);
}

void ShardedBackend::forward(BackendState& state, uint64_t position, const int32_t* tokens,
                             size_t n, float* last_logits, float* all_logits,
                             const std::atomic<bool>& cancel) const {
    ShardedState& s = parts_of(state);
    const size_t vocab = static_cast<size_t>(config_.vocab_size);
    // Every shard asks for the same rows (they gather them together); the caller's buffers
    // take shard 0's.
    std::vector<std::vector<float>> last(shards_.size()), all(shards_.size());
    for (size_t g = 1; g < shards_.size(); ++g) {
        if (last_logits) last[g].resize(vocab);
        if (all_logits) all[g].resize(n * vocab);
    }
    run_shards([&](int g) {
        const size_t i = static_cast<size_t>(g);
        shards_[i]->forward(*s.parts[i], position, tokens, n,
                            i == 0 ? last_logits : (last_logits ? last[i].data() : nullptr),
                            i == 0 ? all_logits : (all_logits ? all[i].data() : nullptr), cancel);
    });
}

void ShardedBackend::forward_batch(BackendState* const* states, const uint64_t* positions,
                                   const int32_t* tokens, size_t n) const {
    std::vector<std::vector<BackendState*>> parts(shards_.size(), std::vector<BackendState*>(n));
    for (size_t i = 0; i < n; ++i)
        for (size_t g = 0; g < shards_.size(); ++g)
            parts[g][i] = parts_of(*states[i]).parts[g].get();
    run_shards([&](int g) {
        shards_[static_cast<size_t>(g)]->forward_batch(parts[static_cast<size_t>(g)].data(),
                                                       positions, tokens, n);
    });
}

int32_t ShardedBackend::sample(const BackendState& state, const SamplingParams& params,
                               const int32_t* history, size_t history_len,
                               uint64_t position) const {
    return shards_[0]->sample(*parts_of(state).parts[0], params, history, history_len, position);
}

void ShardedBackend::sample_batch(const BackendState* const* states, const SamplingParams* params,
                                  const int32_t* const* histories, const size_t* history_lens,
                                  const uint64_t* positions, size_t n, int32_t* out) const {
    std::vector<const BackendState*> parts(n);
    for (size_t i = 0; i < n; ++i) parts[i] = parts_of(*states[i]).parts[0].get();
    shards_[0]->sample_batch(parts.data(), params, histories, history_lens, positions, n, out);
}

}  // namespace kl
