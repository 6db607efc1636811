// The CUDA backend, first version: bf16 weights uploaded once, fp32 recurrent state and a
// bf16 latent cache per session, every op on the device. Prefill runs in pieces of up to
// kPiece tokens through per-session workspaces allocated at session create. Sessions of one
// model share its stream and cuBLASLt workspace, so forward passes are serialised.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <vector>

#include "core/config.h"
#include "core/random_init.h"
#include "core/safetensors.h"
#include "core/weights.h"
#include "cuda_backend.h"
#include "cuda_util.h"
#include "gemm.h"
#include "op_profile.h"
#include "ops.h"

namespace kl::cuda {
namespace {

constexpr size_t kPiece = 256;          // tokens per prefill piece (workspace size)
constexpr size_t kLogitsRows = 16;      // lm_head rows per pass when all logits are asked for
constexpr size_t kDecodeMoeTokens = 4;  // up to this many tokens, MoE runs as expert GEMVs

// ---- weights ------------------------------------------------------------------------------

struct Weight {
    DeviceBuffer buffer;
    size_t rows = 0, cols = 0;
    const bf16* bf() const { return buffer.as<bf16>(); }
    const float* f32() const { return buffer.as<float>(); }
};

Weight upload(const TensorView& view, bool as_f32) {
    const size_t n = static_cast<size_t>(view.numel());
    std::vector<float> values(n);
    view.to_f32(values.data());
    Weight w;
    w.rows = view.shape.empty() ? 1 : static_cast<size_t>(view.shape[0]);
    w.cols = w.rows ? n / w.rows : 0;
    if (as_f32) {
        w.buffer = DeviceBuffer(n * sizeof(float));
        check(cudaMemcpy(w.buffer.as<void>(), values.data(), n * sizeof(float),
                         cudaMemcpyHostToDevice),
              "upload weight");
    } else {
        std::vector<uint16_t> bits(n);
        for (size_t i = 0; i < n; ++i) bits[i] = f32_to_bf16(values[i]);
        w.buffer = DeviceBuffer(n * sizeof(uint16_t));
        check(cudaMemcpy(w.buffer.as<void>(), bits.data(), n * sizeof(uint16_t),
                         cudaMemcpyHostToDevice),
              "upload weight");
    }
    return w;
}

__global__ void random_fill_kernel(uint64_t seed, uint64_t key, RandomInit init, size_t n,
                                   bf16* out_bf16, float* out_f32) {
    for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<size_t>(gridDim.x) * blockDim.x) {
        const float value = random_value(seed, key, i, init);
        if (out_f32)
            out_f32[i] = value;
        else
            out_bf16[i] = __float2bfloat16(value);
    }
}

// The random weights of core/random_init.h, generated in place on the device.
Weight random_weight(const TensorSpec& spec, uint64_t seed, bool as_f32) {
    size_t n = 1;
    for (int64_t d : spec.shape) n *= static_cast<size_t>(d);
    Weight w;
    w.rows = spec.shape.empty() ? 1 : static_cast<size_t>(spec.shape[0]);
    w.cols = w.rows ? n / w.rows : 0;
    w.buffer = DeviceBuffer(n * (as_f32 ? sizeof(float) : sizeof(uint16_t)));
    const RandomInit init =
        random_init_for(spec.name, spec.shape.size() >= 2 ? spec.shape.back() : 1);
    const unsigned blocks = static_cast<unsigned>(std::min<size_t>((n + 255) / 256, 4096));
    random_fill_kernel<<<std::max(1u, blocks), 256>>>(seed, random_tensor_key(spec.name), init, n,
                                                      as_f32 ? nullptr : w.buffer.as<bf16>(),
                                                      as_f32 ? w.buffer.as<float>() : nullptr);
    check_launch("random_fill");
    return w;
}

// Where the backend's weights come from: a checkpoint's tensor or random values, by name.
using WeightSource = std::function<Weight(const std::string& name, bool as_f32)>;

struct Mlp {
    Weight gate, up, down;
};
struct Layer {
    Weight input_norm, post_norm;
    bool is_kda = false, is_moe = false;
    // KDA
    Weight q, k, v, q_conv, k_conv, v_conv, f_a, f_b, b, a_log, dt_bias, g_a, g_b, o_norm, o;
    // MLA
    Weight mq, kv_a, kv_norm, kv_b, mo;
    // FFN
    Mlp mlp;
    Weight router, router_bias;
    std::vector<Mlp> experts;
    DeviceBuffer expert_w1, expert_w3, expert_w2;  // device arrays of the experts' pointers
    bool has_shared = false;
    Mlp shared;
};

// ---- session state ------------------------------------------------------------------------

struct Workspace {
    Workspace(const ModelConfig& c, uint64_t capacity) {
        const size_t P = kPiece, h = c.hidden_size, HD = c.kda_dim(), D = c.kda_head_dim;
        const size_t inter =
            std::max<size_t>(c.intermediate_size,
                             c.moe_intermediate_size * std::max<int64_t>(1, c.num_shared_experts));
        const size_t k = std::max<int64_t>(1, c.num_experts_per_token);
        const size_t slots = P * k;
        auto f = [](size_t n) { return DeviceBuffer(n * sizeof(float)); };
        auto b = [](size_t n) { return DeviceBuffer(n * sizeof(uint16_t)); };
        tokens = DeviceBuffer(P * sizeof(int32_t));
        position = DeviceBuffer(sizeof(int32_t));
        x = f(P * h), branch = f(P * h), xn = b(P * h);
        proj = f(P * HD), q = f(P * HD), kk = f(P * HD), v = f(P * HD), g = f(P * HD);
        gate = f(P * HD), o = f(P * HD), o_bf = b(P * HD);
        low = f(P * D), low_bf = b(P * D), beta = f(P * c.kda_num_heads);
        const size_t Hm = c.num_attention_heads;
        mq = f(P * Hm * c.mla_qk_head_dim()), kv = f(P * c.mla_cache_width());
        attn = f(P * Hm * c.v_head_dim), attn_bf = b(P * Hm * c.v_head_dim);
        ffn_gate = f(P * inter), ffn_up = f(P * inter), ffn_act = b(P * inter);
        const size_t E = std::max<int64_t>(1, c.num_experts), mi = c.moe_intermediate_size;
        router = f(P * E), chosen = DeviceBuffer(slots * sizeof(int32_t)), weights = f(slots);
        sorted_rows = DeviceBuffer(slots * sizeof(int32_t)), sorted_weights = f(slots);
        gathered = b(slots * h), e_gate = f(slots * mi), e_up = f(slots * mi);
        e_act = b(slots * mi), e_out = f(slots * h);
        logits = f(kLogitsRows * c.vocab_size);
        mla = DeviceBuffer(mla_workspace_bytes(P, Hm, c.kv_lora_rank, c.qk_rope_head_dim,
                                               c.v_head_dim, capacity));
    }
    DeviceBuffer tokens, position, mla, x, branch, xn, proj, q, kk, v, g, gate, o, o_bf, low, low_bf, beta;
    DeviceBuffer mq, kv, attn, attn_bf, ffn_gate, ffn_up, ffn_act;
    DeviceBuffer router, chosen, weights, sorted_rows, sorted_weights, gathered, e_gate, e_up,
        e_act, e_out, logits;
};

class CudaState final : public BackendState {
public:
    CudaState(const ModelConfig& c, int device, uint64_t capacity)
        : config_(&c), device_(device), capacity_(capacity), workspace_(c, capacity) {
        DeviceGuard guard(device);
        for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
            if (c.is_kda_layer(layer)) {
                recurrent_offset_.push_back(recurrent_floats_);
                recurrent_floats_ += kda_floats() + conv_floats();
                cache_.emplace_back();
            } else {
                recurrent_offset_.push_back(0);
                cache_.emplace_back(capacity * c.mla_cache_width() * sizeof(uint16_t));
            }
        }
        recurrent_ = DeviceBuffer(recurrent_floats_ * sizeof(float));
        scratch_ = DeviceBuffer(recurrent_floats_ * sizeof(float));
        reset();
    }

    std::unique_ptr<BackendState> clone() const override {
        DeviceGuard guard(device_);
        auto copy = std::make_unique<CudaState>(*config_, device_, capacity_);
        check(cudaMemcpy(copy->recurrent_.as<void>(), recurrent_.as<void>(), recurrent_.bytes(),
                         cudaMemcpyDeviceToDevice),
              "fork state");
        for (size_t l = 0; l < cache_.size(); ++l)
            if (cache_[l].bytes())
                check(cudaMemcpy(copy->cache_[l].as<void>(), cache_[l].as<void>(),
                                 cache_[l].bytes(), cudaMemcpyDeviceToDevice),
                      "fork cache");
        return copy;
    }

    void reset() override {
        DeviceGuard guard(device_);
        if (recurrent_.bytes())
            check(cudaMemset(recurrent_.as<void>(), 0, recurrent_.bytes()), "reset");
    }

    uint64_t capacity() const override { return capacity_; }

    size_t saved_size(uint64_t position) const override {
        size_t floats = recurrent_floats_;
        for (const auto& c : cache_)
            if (c.bytes()) floats += position * config_->mla_cache_width();
        return floats * sizeof(float);
    }

    // Same layout as the CPU backend's: per layer, fp32 (the bf16 cache widened).
    void save(uint64_t position, uint8_t* out) const override {
        DeviceGuard guard(device_);
        const size_t width = config_->mla_cache_width();
        for (size_t l = 0; l < cache_.size(); ++l) {
            if (!cache_[l].bytes()) {
                const size_t n = kda_floats() + conv_floats();
                check(cudaMemcpy(out, recurrent_.as<float>() + recurrent_offset_[l],
                                 n * sizeof(float), cudaMemcpyDeviceToHost),
                      "save state");
                out += n * sizeof(float);
            } else {
                std::vector<uint16_t> bits(position * width);
                check(cudaMemcpy(bits.data(), cache_[l].as<void>(), bits.size() * 2,
                                 cudaMemcpyDeviceToHost),
                      "save cache");
                for (uint16_t b : bits) {
                    const float value = bf16_to_f32(b);
                    std::memcpy(out, &value, sizeof(value));
                    out += sizeof(value);
                }
            }
        }
    }

    void load(uint64_t position, const uint8_t* data) override {
        DeviceGuard guard(device_);
        const size_t width = config_->mla_cache_width();
        for (size_t l = 0; l < cache_.size(); ++l) {
            if (!cache_[l].bytes()) {
                const size_t n = kda_floats() + conv_floats();
                check(cudaMemcpy(recurrent_.as<float>() + recurrent_offset_[l], data,
                                 n * sizeof(float), cudaMemcpyHostToDevice),
                      "load state");
                data += n * sizeof(float);
            } else {
                std::vector<uint16_t> bits(position * width);
                for (auto& b : bits) {
                    float value;
                    std::memcpy(&value, data, sizeof(value));
                    data += sizeof(value);
                    b = f32_to_bf16(value);
                }
                check(cudaMemcpy(cache_[l].as<void>(), bits.data(), bits.size() * 2,
                                 cudaMemcpyHostToDevice),
                      "load cache");
            }
        }
    }

    size_t kda_floats() const {
        return static_cast<size_t>(config_->kda_num_heads * config_->kda_head_dim *
                                   config_->kda_head_dim);
    }
    size_t conv_floats() const {
        return static_cast<size_t>(3 * (config_->short_conv_kernel_size - 1) * config_->kda_dim());
    }

    const ModelConfig* config_;
    int device_;
    uint64_t capacity_;
    Workspace workspace_;
    std::vector<size_t> recurrent_offset_;
    size_t recurrent_floats_ = 0;
    DeviceBuffer recurrent_;           // KDA S then conv state, per KDA layer
    DeviceBuffer scratch_;             // the working copy during a forward pass
    std::vector<DeviceBuffer> cache_;  // bf16 [capacity, rank + rope] per MLA layer
};

// ---- the backend --------------------------------------------------------------------------

class CudaBackend final : public Backend {
public:
    CudaBackend(const ModelConfig& config, const WeightSource& source, int device)
        : config_(config), device_(device) {
        DeviceGuard guard(device);
        check(cudaStreamCreate(&stream_), "cudaStreamCreate");
        gemm_ = std::make_unique<Gemm>();
        auto get = [&](const std::string& name, bool f32 = false) {
            Weight w = source(name, f32);
            weight_bytes_ += w.buffer.bytes();
            return w;
        };
        auto mlp = [&](const std::string& p, const char* g, const char* u, const char* d) {
            return Mlp{get(p + g + ".weight"), get(p + u + ".weight"), get(p + d + ".weight")};
        };
        embed_ = get("model.embed_tokens.weight");
        final_norm_ = get("model.norm.weight");
        tied_ = config.tie_word_embeddings;
        if (!tied_) lm_head_ = get("lm_head.weight");
        for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
            Layer L;
            const std::string p = "model.layers." + std::to_string(l) + ".";
            const std::string a = p + "self_attn.";
            L.input_norm = get(p + "input_layernorm.weight");
            L.post_norm = get(p + "post_attention_layernorm.weight");
            L.is_kda = config.is_kda_layer(l);
            if (L.is_kda) {
                L.q = get(a + "q_proj.weight"), L.k = get(a + "k_proj.weight"),
                L.v = get(a + "v_proj.weight");
                L.q_conv = get(a + "q_conv1d.weight"), L.k_conv = get(a + "k_conv1d.weight");
                L.v_conv = get(a + "v_conv1d.weight");
                L.f_a = get(a + "f_a_proj.weight"), L.f_b = get(a + "f_b_proj.weight");
                L.b = get(a + "b_proj.weight");
                L.a_log = get(a + "A_log", true), L.dt_bias = get(a + "dt_bias", true);
                L.g_a = get(a + "g_a_proj.weight"), L.g_b = get(a + "g_b_proj.weight");
                L.o_norm = get(a + "o_norm.weight"), L.o = get(a + "o_proj.weight");
            } else {
                L.mq = get(a + "q_proj.weight"), L.kv_a = get(a + "kv_a_proj_with_mqa.weight");
                L.kv_norm = get(a + "kv_a_layernorm.weight"), L.kv_b = get(a + "kv_b_proj.weight");
                L.mo = get(a + "o_proj.weight");
            }
            L.is_moe = config.is_moe_layer(l);
            if (L.is_moe) {
                const std::string m = p + "block_sparse_moe.";
                L.router = get(m + "gate.weight");
                L.router_bias = get(m + "gate.e_score_correction_bias", true);
                for (int64_t e = 0; e < config.num_experts; ++e)
                    L.experts.push_back(
                        mlp(m + "experts." + std::to_string(e) + ".", "w1", "w3", "w2"));
                upload_expert_pointers(L);
                L.has_shared = config.num_shared_experts > 0;
                if (L.has_shared)
                    L.shared = mlp(m + "shared_experts.", "gate_proj", "up_proj", "down_proj");
            } else {
                L.mlp = mlp(p + "mlp.", "gate_proj", "up_proj", "down_proj");
            }
            layers_.push_back(std::move(L));
        }
    }

    static void upload_expert_pointers(Layer& L) {
        std::vector<const bf16*> w1, w3, w2;
        for (const Mlp& e : L.experts) {
            w1.push_back(e.gate.bf());
            w3.push_back(e.up.bf());
            w2.push_back(e.down.bf());
        }
        const size_t bytes = w1.size() * sizeof(const bf16*);
        L.expert_w1 = DeviceBuffer(bytes), L.expert_w3 = DeviceBuffer(bytes),
        L.expert_w2 = DeviceBuffer(bytes);
        check(cudaMemcpy(L.expert_w1.as<void>(), w1.data(), bytes, cudaMemcpyHostToDevice),
              "expert table");
        check(cudaMemcpy(L.expert_w3.as<void>(), w3.data(), bytes, cudaMemcpyHostToDevice),
              "expert table");
        check(cudaMemcpy(L.expert_w2.as<void>(), w2.data(), bytes, cudaMemcpyHostToDevice),
              "expert table");
    }

    ~CudaBackend() override {
        if (stream_) cudaStreamDestroy(stream_);
    }

    DeviceKind device() const override { return DeviceKind::Cuda; }
    uint64_t weight_bytes() const override { return weight_bytes_; }
    uint64_t session_fixed_bytes() const override {
        return static_cast<uint64_t>(config_.n_kda_layers()) *
               (config_.kda_num_heads * config_.kda_head_dim * config_.kda_head_dim +
                3 * (config_.short_conv_kernel_size - 1) * config_.kda_dim()) *
               sizeof(float);
    }
    uint64_t kv_bytes_per_token() const override {
        return static_cast<uint64_t>(config_.n_mla_layers() * config_.mla_cache_width()) * 2;
    }

    std::unique_ptr<BackendState> create_state(uint64_t max_context) const override {
        return std::make_unique<CudaState>(config_, device_, max_context);
    }

    void forward(BackendState& base, uint64_t position, const int32_t* tokens, size_t n,
                 float* last_logits, float* all_logits,
                 const std::atomic<bool>& cancel) const override {
        std::lock_guard<std::mutex> lock(mutex_);
        DeviceGuard guard(device_);
        auto& state = static_cast<CudaState&>(base);
        try {
            if (state.recurrent_.bytes())
                check(cudaMemcpyAsync(state.scratch_.as<void>(), state.recurrent_.as<void>(),
                                      state.recurrent_.bytes(), cudaMemcpyDeviceToDevice, stream_),
                      "copy state");
            for (size_t start = 0; start < n; start += kPiece) {
                const size_t m = std::min(kPiece, n - start);
                run_piece(state, position + start, tokens + start, m,
                          all_logits ? all_logits + start * config_.vocab_size : nullptr,
                          start + m == n ? last_logits : nullptr, cancel);
            }
            check(cudaStreamSynchronize(stream_), "forward");
            profile_.section(nullptr, stream_);
        } catch (...) {
            cudaStreamSynchronize(stream_);
            cudaGetLastError();
            throw;
        }
        std::swap(state.recurrent_, state.scratch_);
    }

private:
    void linear(const bf16* x, size_t n, const Weight& w, float* y) const {
        gemm_->run(x, n, w.cols, w.bf(), w.rows, y, stream_);
    }

    void mlp(const Mlp& w, const bf16* x, size_t n, Workspace& ws, float* out) const {
        const size_t inter = w.gate.rows;
        linear(x, n, w.gate, ws.ffn_gate.as<float>());
        linear(x, n, w.up, ws.ffn_up.as<float>());
        silu_mul_to_bf16(ws.ffn_gate.as<float>(), ws.ffn_up.as<float>(), n * inter,
                         ws.ffn_act.as<bf16>(), stream_);
        linear(ws.ffn_act.as<bf16>(), n, w.down, out);
    }

    void run_piece(CudaState& st, uint64_t pos, const int32_t* tokens, size_t m, float* all_logits,
                   float* last_logits, const std::atomic<bool>& cancel) const {
        const ModelConfig& c = config_;
        Workspace& ws = st.workspace_;
        const size_t h = c.hidden_size, H = c.kda_num_heads, D = c.kda_head_dim, HD = H * D;
        const float eps = c.rms_norm_eps;
        check(cudaMemcpyAsync(ws.tokens.as<void>(), tokens, m * sizeof(int32_t),
                              cudaMemcpyHostToDevice, stream_),
              "upload tokens");
        const int32_t position = static_cast<int32_t>(pos);
        check(cudaMemcpyAsync(ws.position.as<void>(), &position, sizeof(position),
                              cudaMemcpyHostToDevice, stream_),
              "upload position");
        float* x = ws.x.as<float>();
        float* branch = ws.branch.as<float>();
        bf16* xn = ws.xn.as<bf16>();
        profile_.section("embedding", stream_);
        embedding_gather(embed_.bf(), ws.tokens.as<int32_t>(), m, h, x, stream_);

        for (size_t l = 0; l < layers_.size(); ++l) {
            if (cancel.load(std::memory_order_relaxed)) fail(Status::Cancelled, "cancelled");
            const Layer& L = layers_[l];
            profile_.section("norms + residual", stream_);
            rms_norm_to_bf16(x, h, L.input_norm.bf(), m, h, eps, xn, h, stream_);
            if (L.is_kda) {
                profile_.section("kda q/k/v proj + conv", stream_);
                float* rec = st.scratch_.as<float>() + st.recurrent_offset_[l];
                float* S = rec;
                float* conv = rec + st.kda_floats();
                const size_t conv_each = (c.short_conv_kernel_size - 1) * HD;
                const Weight* proj[3] = {&L.q, &L.k, &L.v};
                const Weight* convw[3] = {&L.q_conv, &L.k_conv, &L.v_conv};
                float* outs[3] = {ws.q.as<float>(), ws.kk.as<float>(), ws.v.as<float>()};
                for (int i = 0; i < 3; ++i) {
                    linear(xn, m, *proj[i], ws.proj.as<float>());
                    short_conv_silu(ws.proj.as<float>(), m, HD, convw[i]->bf(),
                                    c.short_conv_kernel_size, conv + i * conv_each, outs[i],
                                    stream_);
                }
                profile_.section("kda norms + gates", stream_);
                l2_normalize_heads(ws.q.as<float>(), m * H, D, stream_);
                l2_normalize_heads(ws.kk.as<float>(), m * H, D, stream_);
                linear(xn, m, L.f_a, ws.low.as<float>());
                cast_to_bf16(ws.low.as<float>(), m * D, ws.low_bf.as<bf16>(), stream_);
                linear(ws.low_bf.as<bf16>(), m, L.f_b, ws.g.as<float>());
                kda_gate(ws.g.as<float>(), L.a_log.f32(), L.dt_bias.f32(), m, H, D, stream_);
                linear(xn, m, L.b, ws.beta.as<float>());
                sigmoid_inplace(ws.beta.as<float>(), m * H, stream_);
                profile_.section("kda recurrence", stream_);
                kda_recurrent(ws.q.as<float>(), ws.kk.as<float>(), ws.v.as<float>(),
                              ws.g.as<float>(), ws.beta.as<float>(), m, H, D,
                              1.0f / std::sqrt(float(D)), S, ws.o.as<float>(), stream_);
                profile_.section("kda gated norm + o_proj", stream_);
                linear(xn, m, L.g_a, ws.low.as<float>());
                cast_to_bf16(ws.low.as<float>(), m * D, ws.low_bf.as<bf16>(), stream_);
                linear(ws.low_bf.as<bf16>(), m, L.g_b, ws.gate.as<float>());
                kda_gated_norm(ws.o.as<float>(), ws.gate.as<float>(), L.o_norm.bf(), m, H, D, eps,
                               ws.o_bf.as<bf16>(), stream_);
                linear(ws.o_bf.as<bf16>(), m, L.o, branch);
            } else {
                const size_t width = c.mla_cache_width(), Hm = c.num_attention_heads;
                bf16* cache = st.cache_[l].as<bf16>();
                profile_.section("mla q/kv proj + cache", stream_);
                linear(xn, m, L.mq, ws.mq.as<float>());
                linear(xn, m, L.kv_a, ws.kv.as<float>());
                rms_norm_rows_to_cache(ws.kv.as<float>(), m, c.kv_lora_rank, width, L.kv_norm.bf(),
                                       eps, cache + pos * width, stream_);
                profile_.section("mla attention", stream_);
                mla_attention(ws.mq.as<float>(), m, ws.position.as<int32_t>(), st.capacity_, cache,
                              L.kv_b.bf(), Hm, c.qk_nope_head_dim, c.qk_rope_head_dim,
                              c.v_head_dim, c.kv_lora_rank, ws.mla.as<void>(),
                              ws.attn.as<float>(), stream_);
                profile_.section("mla o_proj", stream_);
                cast_to_bf16(ws.attn.as<float>(), m * Hm * c.v_head_dim, ws.attn_bf.as<bf16>(),
                             stream_);
                linear(ws.attn_bf.as<bf16>(), m, L.mo, branch);
            }
            profile_.section("norms + residual", stream_);
            add_inplace(x, branch, m * h, stream_);

            rms_norm_to_bf16(x, h, L.post_norm.bf(), m, h, eps, xn, h, stream_);
            if (L.is_moe) {
                moe(L, xn, m, ws, branch);
            } else {
                profile_.section("dense mlp", stream_);
                mlp(L.mlp, xn, m, ws, branch);
            }
            profile_.section("norms + residual", stream_);
            add_inplace(x, branch, m * h, stream_);
        }
        if (cancel.load(std::memory_order_relaxed)) fail(Status::Cancelled, "cancelled");

        profile_.section("lm_head + logits copy", stream_);
        const Weight& head = tied_ ? embed_ : lm_head_;
        const size_t vocab = c.vocab_size;
        float* logits = ws.logits.as<float>();
        if (all_logits) {
            for (size_t r = 0; r < m; r += kLogitsRows) {
                const size_t rows = std::min(kLogitsRows, m - r);
                rms_norm_to_bf16(x + r * h, h, final_norm_.bf(), rows, h, eps, xn, h, stream_);
                linear(xn, rows, head, logits);
                check(cudaMemcpyAsync(all_logits + r * vocab, logits, rows * vocab * sizeof(float),
                                      cudaMemcpyDeviceToHost, stream_),
                      "copy logits");
            }
        }
        if (last_logits) {
            rms_norm_to_bf16(x + (m - 1) * h, h, final_norm_.bf(), 1, h, eps, xn, h, stream_);
            linear(xn, 1, head, logits);
            check(cudaMemcpyAsync(last_logits, logits, vocab * sizeof(float),
                                  cudaMemcpyDeviceToHost, stream_),
                  "copy logits");
        }
    }

    // Routing on the device. Decode (few tokens): expert GEMVs that read the chosen experts
    // on the device. Prefill: the per-expert row lists are built on the host (one sync per
    // MoE layer for now), then each chosen expert runs as dense GEMMs over its tokens.
    void moe(const Layer& L, const bf16* xn, size_t m, Workspace& ws, float* out) const {
        const ModelConfig& c = config_;
        const size_t E = c.num_experts, k = c.num_experts_per_token, h = c.hidden_size;
        const size_t mi = c.moe_intermediate_size;
        profile_.section("moe router", stream_);
        linear(xn, m, L.router, ws.router.as<float>());
        moe_route(ws.router.as<float>(), L.router_bias.f32(), m, E, k, c.moe_renormalize,
                  c.routed_scaling_factor, c.use_grouped_topk ? c.num_expert_group : 1,
                  c.use_grouped_topk ? c.topk_group : 1, ws.chosen.as<int32_t>(),
                  ws.weights.as<float>(), stream_);
        profile_.section("moe shared + experts", stream_);
        if (m <= kDecodeMoeTokens) {
            // Few tokens: GEMVs over the chosen experts, routing never leaves the device.
            if (L.has_shared)
                mlp(L.shared, xn, m, ws, out);
            else
                check(cudaMemsetAsync(out, 0, m * h * sizeof(float), stream_), "zero");
            moe_experts_gemv(xn, m, h, mi, k, ws.chosen.as<int32_t>(), ws.weights.as<float>(),
                             L.expert_w1.as<const bf16*>(), L.expert_w3.as<const bf16*>(),
                             L.expert_w2.as<const bf16*>(), ws.e_gate.as<float>(),
                             ws.e_out.as<float>(), out, stream_);
            return;
        }
        std::vector<int32_t> chosen(m * k);
        std::vector<float> weights(m * k);
        check(cudaMemcpyAsync(chosen.data(), ws.chosen.as<void>(), chosen.size() * 4,
                              cudaMemcpyDeviceToHost, stream_),
              "routing");
        check(cudaMemcpyAsync(weights.data(), ws.weights.as<void>(), weights.size() * 4,
                              cudaMemcpyDeviceToHost, stream_),
              "routing");
        if (L.has_shared)
            mlp(L.shared, xn, m, ws, out);
        else
            check(cudaMemsetAsync(out, 0, m * h * sizeof(float), stream_), "zero");
        check(cudaStreamSynchronize(stream_), "routing");

        std::vector<size_t> begin(E + 1, 0);
        for (int32_t e : chosen) ++begin[e + 1];
        for (size_t e = 0; e < E; ++e) begin[e + 1] += begin[e];
        std::vector<int32_t> rows(m * k);
        std::vector<float> row_weights(m * k);
        std::vector<size_t> fill(begin.begin(), begin.end() - 1);
        for (size_t slot = 0; slot < m * k; ++slot) {
            const size_t at = fill[chosen[slot]]++;
            rows[at] = static_cast<int32_t>(slot / k);
            row_weights[at] = weights[slot];
        }
        check(cudaMemcpyAsync(ws.sorted_rows.as<void>(), rows.data(), rows.size() * 4,
                              cudaMemcpyHostToDevice, stream_),
              "rows");
        check(cudaMemcpyAsync(ws.sorted_weights.as<void>(), row_weights.data(),
                              row_weights.size() * 4, cudaMemcpyHostToDevice, stream_),
              "rows");
        for (size_t e = 0; e < E; ++e) {
            const size_t count = begin[e + 1] - begin[e];
            if (count == 0) continue;
            const int32_t* idx = ws.sorted_rows.as<int32_t>() + begin[e];
            gather_rows_bf16(xn, idx, count, h, ws.gathered.as<bf16>(), stream_);
            const Mlp& w = L.experts[e];
            linear(ws.gathered.as<bf16>(), count, w.gate, ws.e_gate.as<float>());
            linear(ws.gathered.as<bf16>(), count, w.up, ws.e_up.as<float>());
            silu_mul_to_bf16(ws.e_gate.as<float>(), ws.e_up.as<float>(), count * mi,
                             ws.e_act.as<bf16>(), stream_);
            linear(ws.e_act.as<bf16>(), count, w.down, ws.e_out.as<float>());
            scatter_add_weighted(ws.e_out.as<float>(), idx,
                                 ws.sorted_weights.as<float>() + begin[e], count, h, out, stream_);
        }
        // rows/row_weights are read by the async copies above: finish before they go away.
        check(cudaStreamSynchronize(stream_), "moe");
    }

    ModelConfig config_;
    int device_;
    cudaStream_t stream_ = nullptr;
    std::unique_ptr<Gemm> gemm_;
    mutable std::mutex mutex_;
    mutable OpProfile profile_;  // guarded by mutex_
    uint64_t weight_bytes_ = 0;
    bool tied_ = false;
    Weight embed_, final_norm_, lm_head_;
    std::vector<Layer> layers_;
};

int device_count() {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return count;
}

std::unique_ptr<Backend> create(const ModelConfig& config, const Checkpoint& checkpoint,
                                int device_index) {
    DeviceGuard guard(device_index);
    return std::make_unique<CudaBackend>(
        config,
        [&](const std::string& name, bool as_f32) {
            const TensorView* view = checkpoint.find(name);
            if (!view) fail(Status::Format, "tensor " + name + " is missing");
            return upload(*view, as_f32);
        },
        device_index);
}

std::unique_ptr<Backend> create_random(const ModelConfig& config, uint64_t seed, int device_index) {
    DeviceGuard guard(device_index);
    std::map<std::string, TensorSpec> specs;
    for (TensorSpec& spec : expected_tensors(config)) specs.emplace(spec.name, std::move(spec));
    auto backend = std::make_unique<CudaBackend>(
        config,
        [&](const std::string& name, bool as_f32) {
            return random_weight(specs.at(name), seed, as_f32);
        },
        device_index);
    check(cudaDeviceSynchronize(), "random weights");
    return backend;
}

}  // namespace

const GpuBackendProvider& backend_provider() {
    static const GpuBackendProvider provider{&device_count, &create, &create_random};
    return provider;
}

}  // namespace kl::cuda
