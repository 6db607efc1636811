// The CUDA backend's session state: allocation, copies (fork, the scratch copy of a
// snapshot load), reset, the layers' snapshot parts, the kept logits and synthetic
// contexts. Each runs on the model's stream under its lock (on_stream), so none races a
// forward pass of another session.
#include <cstring>
#include <string>

#include "core/error.h"
#include "core/random_init.h"
#include "core/safetensors.h"
#include "cuda_model.h"

namespace kl::cuda {
namespace {

// Benchmarks' synthetic state: random values of the given scale.
void fill_synthetic_values(uint64_t seed, uint64_t key, size_t n, float scale, float* f32, bf16* bf,
                           cudaStream_t stream) {
    fill_random(seed, key, RandomInit{false, 0.0f, scale}, n, f32, bf, stream);
}

}  // namespace

CudaState::CudaState(const ModelConfig& c, int device, uint64_t capacity)
    : BackendState(capacity, static_cast<size_t>(c.vocab_size)), device_(device) {
    DeviceGuard guard(device_);
    for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
        if (c.is_kda_layer(layer)) {
            recurrent_offset_.push_back(recurrent_floats_);
            recurrent_floats_ += c.recurrent_floats_per_kda_layer();
            cache_.emplace_back();
        } else {
            recurrent_offset_.push_back(0);
            cache_.emplace_back(capacity * c.mla_cache_width() * sizeof(bf16));
        }
    }
    for (int i = 0; i < 2; ++i) {
        recurrent_[i] = DeviceBuffer(recurrent_floats_ * sizeof(float));
        logits_[i] = DeviceBuffer(vocab() * sizeof(float));
    }
    history_ = DeviceBuffer(std::max<uint64_t>(capacity, 1) * sizeof(int32_t));
}

CudaState::~CudaState() {
    destroy_graphs(decode_graph_);
}

void CudaBackend::on_stream(const std::function<void(cudaStream_t)>& work, const char* what) const {
    std::lock_guard<FifoMutex> lock(mutex_);
    DeviceGuard guard(device_);
    try {
        work(stream_);
        check(cudaStreamSynchronize(stream_), what);
    } catch (...) {
        cudaStreamSynchronize(stream_);
        cudaGetLastError();
        throw;
    }
}

std::unique_ptr<BackendState> CudaBackend::create_state(uint64_t max_context) const {
    if (max_context > INT32_MAX)  // positions live in int32 device memory
        fail(Status::Unsupported, "max_context " + std::to_string(max_context) +
                                      " exceeds 2147483647, the CUDA backend's limit");
    auto state = std::make_unique<CudaState>(config_, device_, max_context);
    reset_state(*state);
    if (uses_graphs()) capture_decode_graphs(*state);
    return state;
}

std::unique_ptr<BackendState> CudaBackend::clone_state(const BackendState& base) const {
    const auto& st = static_cast<const CudaState&>(base);
    auto copy_base = create_state(st.capacity());
    auto& copy = static_cast<CudaState&>(*copy_base);
    on_stream([&](cudaStream_t stream) {
        auto d2d = [&](void* to, const void* from, size_t bytes) {
            if (bytes)
                check(cudaMemcpyAsync(to, from, bytes, cudaMemcpyDeviceToDevice, stream), "fork");
        };
        d2d(copy.recurrent(0), st.recurrent(st.current_), st.recurrent_floats_ * sizeof(float));
        d2d(copy.logits(0), st.logits(st.current_), st.vocab() * sizeof(float));
        for (size_t l = 0; l < st.cache_.size(); ++l)
            d2d(copy.cache_[l].as<void>(), st.cache_[l].as<void>(), st.cache_[l].bytes());
        d2d(copy.history_.as<void>(), st.history_.as<void>(), st.history_.bytes());
    });
    copy.history_synced_ = st.history_synced_;
    return copy_base;
}

void CudaBackend::reset_state(BackendState& base) const {
    auto& st = static_cast<CudaState&>(base);
    on_stream([&](cudaStream_t stream) {
        if (st.recurrent_floats_)
            check(cudaMemsetAsync(st.recurrent(st.current_), 0,
                                  st.recurrent_floats_ * sizeof(float), stream),
                  "reset");
        check(cudaMemsetAsync(st.logits(st.current_), 0, st.vocab() * sizeof(float), stream),
              "reset");
    });
    st.history_synced_ = 0;
}

// The parts core/state_io.h lays out: fp32, the bf16 cache widened.
void CudaBackend::save_layer(const BackendState& base, size_t layer, uint64_t position,
                             uint8_t* out) const {
    const auto& st = static_cast<const CudaState&>(base);
    if (!st.cache_[layer].bytes()) {
        const size_t n = static_cast<size_t>(config_.recurrent_floats_per_kda_layer());
        on_stream([&](cudaStream_t stream) {
            check(cudaMemcpyAsync(out, st.recurrent(st.current_) + st.recurrent_offset_[layer],
                                  n * sizeof(float), cudaMemcpyDeviceToHost, stream),
                  "save state");
        });
        return;
    }
    std::vector<uint16_t> bits(position * config_.mla_cache_width());
    on_stream([&](cudaStream_t stream) {
        check(cudaMemcpyAsync(bits.data(), st.cache_[layer].as<void>(), bits.size() * 2,
                              cudaMemcpyDeviceToHost, stream),
              "save cache");
    });
    for (uint16_t b : bits) {
        const float value = bf16_to_f32(b);
        std::memcpy(out, &value, sizeof(value));
        out += sizeof(value);
    }
}

void CudaBackend::load_layer(BackendState& base, size_t layer, uint64_t position,
                             const uint8_t* in) const {
    auto& st = static_cast<CudaState&>(base);
    st.history_synced_ = 0;
    if (!st.cache_[layer].bytes()) {
        const size_t n = static_cast<size_t>(config_.recurrent_floats_per_kda_layer());
        on_stream([&](cudaStream_t stream) {
            check(cudaMemcpyAsync(st.recurrent(st.current_) + st.recurrent_offset_[layer], in,
                                  n * sizeof(float), cudaMemcpyHostToDevice, stream),
                  "load state");
        });
        return;
    }
    std::vector<uint16_t> bits(position * config_.mla_cache_width());
    for (auto& b : bits) {
        float value;
        std::memcpy(&value, in, sizeof(value));
        in += sizeof(value);
        b = f32_to_bf16(value);
    }
    on_stream([&](cudaStream_t stream) {
        check(cudaMemcpyAsync(st.cache_[layer].as<void>(), bits.data(), bits.size() * 2,
                              cudaMemcpyHostToDevice, stream),
              "load cache");
    });
}

void CudaBackend::read_logits(const BackendState& base, float* out) const {
    const auto& st = static_cast<const CudaState&>(base);
    on_stream([&](cudaStream_t stream) {
        check(cudaMemcpyAsync(out, st.logits(st.current_), st.vocab() * sizeof(float),
                              cudaMemcpyDeviceToHost, stream),
              "read logits");
    });
}

void CudaBackend::write_logits(BackendState& base, const float* in) const {
    auto& st = static_cast<CudaState&>(base);
    on_stream([&](cudaStream_t stream) {
        check(cudaMemcpyAsync(st.logits(st.current_), in, st.vocab() * sizeof(float),
                              cudaMemcpyHostToDevice, stream),
              "write logits");
    });
}

void CudaBackend::fill_synthetic(BackendState& base, uint64_t position, uint64_t seed) const {
    auto& st = static_cast<CudaState&>(base);
    const size_t width = config_.mla_cache_width();
    on_stream([&](cudaStream_t stream) {
        fill_synthetic_values(seed, 1, st.recurrent_floats_, 0.05f, st.recurrent(st.current_),
                              nullptr, stream);
        fill_synthetic_values(seed, 2, st.vocab(), 4.0f, st.logits(st.current_), nullptr, stream);
        for (size_t l = 0; l < st.cache_.size(); ++l)
            if (st.cache_[l].bytes())
                fill_synthetic_values(seed, 10 + l, position * width, 1.0f, nullptr,
                                      st.cache_[l].as<bf16>(), stream);
    });
    st.history_synced_ = 0;
}

}  // namespace kl::cuda
