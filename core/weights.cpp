#include "weights.h"

#include <algorithm>
#include <map>

#include "error.h"
#include "random_init.h"

namespace kl {
namespace {

std::string layer_prefix(int64_t layer) {
    return "model.layers." + std::to_string(layer) + ".";
}

void add_mlp(std::vector<TensorSpec>& specs, const std::string& prefix, const char* gate,
             const char* up, const char* down, int64_t hidden, int64_t inter) {
    specs.push_back({prefix + gate + ".weight", {inter, hidden}, DType::BF16});
    specs.push_back({prefix + up + ".weight", {inter, hidden}, DType::BF16});
    specs.push_back({prefix + down + ".weight", {hidden, inter}, DType::BF16});
}

// Reads tensors by name into fp32 through a TensorSource, reporting progress.
class Loader {
public:
    Loader(const ModelConfig& config, const TensorSource& source,
           const std::function<bool(float)>& progress)
        : source_(source), progress_(progress) {
        for (TensorSpec& spec : expected_tensors(config))
            specs_.emplace(spec.name, std::move(spec));
    }

    std::vector<float> vec(const std::string& name) {
        const TensorSpec& spec = specs_.at(name);
        int64_t numel = 1;
        for (int64_t d : spec.shape) numel *= d;
        std::vector<float> out(static_cast<size_t>(numel));
        source_(spec, out.data());
        if (progress_ &&
            !progress_(static_cast<float>(++done_) / static_cast<float>(specs_.size())))
            fail(Status::Cancelled, "model load cancelled by the progress callback");
        return out;
    }
    Matrix matrix(const std::string& name) {
        const TensorSpec& spec = specs_.at(name);
        Matrix m;
        m.rows = spec.shape[0];
        m.cols = spec.shape[1];
        m.data = vec(name);
        return m;
    }
    MlpWeights mlp(const std::string& prefix, const char* gate, const char* up, const char* down) {
        MlpWeights w;
        w.gate = matrix(prefix + gate + ".weight");
        w.up = matrix(prefix + up + ".weight");
        w.down = matrix(prefix + down + ".weight");
        return w;
    }

private:
    std::map<std::string, TensorSpec> specs_;
    const TensorSource& source_;
    size_t done_ = 0;
    const std::function<bool(float)>& progress_;
};

}  // namespace

std::vector<TensorSpec> expected_tensors(const ModelConfig& c) {
    std::vector<TensorSpec> specs;
    const int64_t hidden = c.hidden_size;
    specs.push_back({"model.embed_tokens.weight", {c.vocab_size, hidden}, DType::BF16});
    for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
        const std::string p = layer_prefix(layer);
        specs.push_back({p + "input_layernorm.weight", {hidden}, DType::BF16});
        specs.push_back({p + "post_attention_layernorm.weight", {hidden}, DType::BF16});
        const std::string a = p + "self_attn.";
        if (c.is_kda_layer(layer)) {
            const int64_t H = c.kda_num_heads, D = c.kda_head_dim, HD = H * D;
            for (const char* proj : {"q_proj", "k_proj", "v_proj"})
                specs.push_back({a + proj + ".weight", {HD, hidden}, DType::BF16});
            for (const char* conv : {"q_conv1d", "k_conv1d", "v_conv1d"})
                specs.push_back(
                    {a + conv + ".weight", {HD, 1, c.short_conv_kernel_size}, DType::BF16});
            specs.push_back({a + "f_a_proj.weight", {D, hidden}, DType::BF16});
            specs.push_back({a + "f_b_proj.weight", {HD, D}, DType::BF16});
            specs.push_back({a + "b_proj.weight", {H, hidden}, DType::BF16});
            specs.push_back({a + "A_log", {1, 1, H, 1}, DType::F32});
            specs.push_back({a + "dt_bias", {HD}, DType::F32});
            specs.push_back({a + "g_a_proj.weight", {D, hidden}, DType::BF16});
            specs.push_back({a + "g_b_proj.weight", {HD, D}, DType::BF16});
            specs.push_back({a + "o_norm.weight", {D}, DType::BF16});
            specs.push_back({a + "o_proj.weight", {hidden, HD}, DType::BF16});
        } else {
            const int64_t Hm = c.num_attention_heads;
            specs.push_back({a + "q_proj.weight", {Hm * c.mla_qk_head_dim(), hidden}, DType::BF16});
            specs.push_back(
                {a + "kv_a_proj_with_mqa.weight", {c.mla_cache_width(), hidden}, DType::BF16});
            specs.push_back({a + "kv_a_layernorm.weight", {c.kv_lora_rank}, DType::BF16});
            specs.push_back({a + "kv_b_proj.weight",
                             {Hm * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank},
                             DType::BF16});
            specs.push_back({a + "o_proj.weight", {hidden, Hm * c.v_head_dim}, DType::BF16});
        }
        if (c.is_moe_layer(layer)) {
            const std::string m = p + "block_sparse_moe.";
            specs.push_back({m + "gate.weight", {c.num_experts, hidden}, DType::BF16});
            specs.push_back({m + "gate.e_score_correction_bias", {c.num_experts}, DType::F32});
            for (int64_t e = 0; e < c.num_experts; ++e)
                add_mlp(specs, m + "experts." + std::to_string(e) + ".", "w1", "w3", "w2", hidden,
                        c.moe_intermediate_size);
            if (c.num_shared_experts > 0)
                add_mlp(specs, m + "shared_experts.", "gate_proj", "up_proj", "down_proj", hidden,
                        c.moe_intermediate_size * c.num_shared_experts);
        } else {
            add_mlp(specs, p + "mlp.", "gate_proj", "up_proj", "down_proj", hidden,
                    c.intermediate_size);
        }
    }
    specs.push_back({"model.norm.weight", {hidden}, DType::BF16});
    if (!c.tie_word_embeddings)
        specs.push_back({"lm_head.weight", {c.vocab_size, hidden}, DType::BF16});
    return specs;
}

ParameterCounts count_parameters(const ModelConfig& c) {
    ParameterCounts counts;
    for (const TensorSpec& spec : expected_tensors(c)) {
        uint64_t numel = 1;
        for (int64_t d : spec.shape) numel *= static_cast<uint64_t>(d);
        counts.total += numel;
    }
    const uint64_t expert = 3ull * static_cast<uint64_t>(c.hidden_size) *
                            static_cast<uint64_t>(c.moe_intermediate_size);
    uint64_t moe_layers = 0;
    for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) moe_layers += c.is_moe_layer(layer);
    const uint64_t unchosen =
        static_cast<uint64_t>(std::max<int64_t>(0, c.num_experts - c.num_experts_per_token));
    const uint64_t embedding =
        c.tie_word_embeddings ? 0 : static_cast<uint64_t>(c.vocab_size * c.hidden_size);
    counts.active = counts.total - moe_layers * unchosen * expert - embedding;
    return counts;
}

void validate_checkpoint(const ModelConfig& config, const Checkpoint& checkpoint) {
    for (const TensorSpec& spec : expected_tensors(config)) {
        const TensorView* view = checkpoint.find(spec.name);
        if (!view)
            fail(Status::Format, "tensor " + spec.name + " is missing (config wants shape " +
                                     shape_string(spec.shape) + ")");
        if (view->shape != spec.shape)
            fail(Status::Format, "tensor " + spec.name + " has shape " + shape_string(view->shape) +
                                     ", config wants " + shape_string(spec.shape) + " (in " +
                                     view->file + ")");
    }
}

uint64_t ModelWeights::bytes() const {
    uint64_t floats = embed_tokens.data.size() + final_norm.size() + lm_head.data.size();
    auto mlp_floats = [](const MlpWeights& w) {
        return w.gate.data.size() + w.up.data.size() + w.down.data.size();
    };
    for (const LayerWeights& l : layers) {
        floats += l.input_layernorm.size() + l.post_attention_layernorm.size();
        if (l.is_kda) {
            const KdaWeights& k = l.kda;
            floats += k.q_proj.data.size() + k.k_proj.data.size() + k.v_proj.data.size() +
                      k.q_conv.size() + k.k_conv.size() + k.v_conv.size() + k.f_a_proj.data.size() +
                      k.f_b_proj.data.size() + k.b_proj.data.size() + k.a_log.size() +
                      k.dt_bias.size() + k.g_a_proj.data.size() + k.g_b_proj.data.size() +
                      k.o_norm.size() + k.o_proj.data.size();
        } else {
            const MlaWeights& m = l.mla;
            floats += m.q_proj.data.size() + m.kv_a_proj_with_mqa.data.size() +
                      m.kv_a_layernorm.size() + m.kv_b_proj.data.size() + m.o_proj.data.size();
        }
        if (l.is_moe) {
            floats += l.moe.gate.data.size() + l.moe.e_score_correction_bias.size();
            for (const MlpWeights& e : l.moe.experts) floats += mlp_floats(e);
            if (l.moe.has_shared) floats += mlp_floats(l.moe.shared);
        } else {
            floats += mlp_floats(l.mlp);
        }
    }
    return floats * sizeof(float);
}

ModelWeights load_weights_f32(const ModelConfig& c, const Checkpoint& checkpoint,
                              const std::function<bool(float)>& progress) {
    validate_checkpoint(c, checkpoint);
    return build_weights_f32(
        c, [&](const TensorSpec& spec, float* out) { checkpoint.find(spec.name)->to_f32(out); },
        progress);
}

TensorSource random_tensor_source(uint64_t seed) {
    return [seed](const TensorSpec& spec, float* out) {
        const RandomInit init =
            random_init_for(spec.name, spec.shape.size() >= 2 ? spec.shape.back() : 1);
        const uint64_t key = random_tensor_key(spec.name);
        int64_t numel = 1;
        for (int64_t d : spec.shape) numel *= d;
        // Rounded like a bf16 checkpoint (fp32 tensors stay fp32), so an in-memory random
        // model equals make_tiny_model's files for the same seed.
        const bool round = spec.dtype == DType::BF16;
        for (int64_t i = 0; i < numel; ++i) {
            const float value = random_value(seed, key, static_cast<uint64_t>(i), init);
            out[i] = round ? bf16_to_f32(f32_to_bf16(value)) : value;
        }
    };
}

ModelWeights build_weights_f32(const ModelConfig& c, const TensorSource& source,
                               const std::function<bool(float)>& progress) {
    Loader load(c, source, progress);

    ModelWeights w;
    w.embed_tokens = load.matrix("model.embed_tokens.weight");
    w.layers.resize(static_cast<size_t>(c.num_hidden_layers));
    for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
        LayerWeights& l = w.layers[static_cast<size_t>(layer)];
        const std::string p = layer_prefix(layer);
        l.input_layernorm = load.vec(p + "input_layernorm.weight");
        l.post_attention_layernorm = load.vec(p + "post_attention_layernorm.weight");
        const std::string a = p + "self_attn.";
        l.is_kda = c.is_kda_layer(layer);
        if (l.is_kda) {
            KdaWeights& k = l.kda;
            k.q_proj = load.matrix(a + "q_proj.weight");
            k.k_proj = load.matrix(a + "k_proj.weight");
            k.v_proj = load.matrix(a + "v_proj.weight");
            k.q_conv = load.vec(a + "q_conv1d.weight");
            k.k_conv = load.vec(a + "k_conv1d.weight");
            k.v_conv = load.vec(a + "v_conv1d.weight");
            k.f_a_proj = load.matrix(a + "f_a_proj.weight");
            k.f_b_proj = load.matrix(a + "f_b_proj.weight");
            k.b_proj = load.matrix(a + "b_proj.weight");
            k.a_log = load.vec(a + "A_log");
            k.dt_bias = load.vec(a + "dt_bias");
            k.g_a_proj = load.matrix(a + "g_a_proj.weight");
            k.g_b_proj = load.matrix(a + "g_b_proj.weight");
            k.o_norm = load.vec(a + "o_norm.weight");
            k.o_proj = load.matrix(a + "o_proj.weight");
        } else {
            MlaWeights& m = l.mla;
            m.q_proj = load.matrix(a + "q_proj.weight");
            m.kv_a_proj_with_mqa = load.matrix(a + "kv_a_proj_with_mqa.weight");
            m.kv_a_layernorm = load.vec(a + "kv_a_layernorm.weight");
            m.kv_b_proj = load.matrix(a + "kv_b_proj.weight");
            m.o_proj = load.matrix(a + "o_proj.weight");
        }
        l.is_moe = c.is_moe_layer(layer);
        if (l.is_moe) {
            const std::string m = p + "block_sparse_moe.";
            l.moe.gate = load.matrix(m + "gate.weight");
            l.moe.e_score_correction_bias = load.vec(m + "gate.e_score_correction_bias");
            for (int64_t e = 0; e < c.num_experts; ++e)
                l.moe.experts.push_back(
                    load.mlp(m + "experts." + std::to_string(e) + ".", "w1", "w3", "w2"));
            l.moe.has_shared = c.num_shared_experts > 0;
            if (l.moe.has_shared)
                l.moe.shared = load.mlp(m + "shared_experts.", "gate_proj", "up_proj", "down_proj");
        } else {
            l.mlp = load.mlp(p + "mlp.", "gate_proj", "up_proj", "down_proj");
        }
    }
    w.final_norm = load.vec("model.norm.weight");
    w.lm_head = c.tie_word_embeddings ? w.embed_tokens : load.matrix("lm_head.weight");
    return w;
}

}  // namespace kl
