#include "weights.h"

#include <algorithm>

#include "backend.h"
#include "error.h"
#include "limits.h"
#include "message_text.h"
#include "quantize.h"
#include "random_init.h"

namespace kl {
namespace {

MlpTensors mlp_tensors(const std::string& prefix, const char* gate, const char* up,
                       const char* down, int64_t hidden, int64_t inter) {
    return {{prefix + gate + ".weight", {inter, hidden}, DType::BF16, true},
            {prefix + up + ".weight", {inter, hidden}, DType::BF16, true},
            {prefix + down + ".weight", {hidden, inter}, DType::BF16, true}};
}

KdaTensors kda_tensors(const ModelConfig& c, const std::string& a) {
    const int64_t hidden = c.hidden_size, H = c.kda_num_heads, D = c.kda_head_dim, HD = H * D;
    const std::vector<int64_t> conv = {HD, 1, c.short_conv_kernel_size};
    KdaTensors t;
    t.q_proj = {a + "q_proj.weight", {HD, hidden}, DType::BF16, true};
    t.k_proj = {a + "k_proj.weight", {HD, hidden}, DType::BF16, true};
    t.v_proj = {a + "v_proj.weight", {HD, hidden}, DType::BF16, true};
    t.q_conv = {a + "q_conv1d.weight", conv, DType::BF16};
    t.k_conv = {a + "k_conv1d.weight", conv, DType::BF16};
    t.v_conv = {a + "v_conv1d.weight", conv, DType::BF16};
    t.f_a_proj = {a + "f_a_proj.weight", {D, hidden}, DType::BF16, true};
    t.f_b_proj = {a + "f_b_proj.weight", {HD, D}, DType::BF16, true};
    t.b_proj = {a + "b_proj.weight", {H, hidden}, DType::BF16, true};
    t.a_log = {a + "A_log", {1, 1, H, 1}, DType::F32};
    t.dt_bias = {a + "dt_bias", {HD}, DType::F32};
    t.g_a_proj = {a + "g_a_proj.weight", {D, hidden}, DType::BF16, true};
    t.g_b_proj = {a + "g_b_proj.weight", {HD, D}, DType::BF16, true};
    t.o_norm = {a + "o_norm.weight", {D}, DType::BF16};
    t.o_proj = {a + "o_proj.weight", {hidden, HD}, DType::BF16, true};
    return t;
}

MlaTensors mla_tensors(const ModelConfig& c, const std::string& a) {
    const int64_t hidden = c.hidden_size, Hm = c.num_attention_heads;
    MlaTensors t;
    t.q_proj = {a + "q_proj.weight", {Hm * c.mla_qk_head_dim(), hidden}, DType::BF16, true};
    t.kv_a_proj_with_mqa = {
        a + "kv_a_proj_with_mqa.weight", {c.mla_cache_width(), hidden}, DType::BF16, true};
    t.kv_a_layernorm = {a + "kv_a_layernorm.weight", {c.kv_lora_rank}, DType::BF16};
    t.kv_b_proj = {a + "kv_b_proj.weight",
                   {Hm * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank},
                   DType::BF16,
                   true};
    t.o_proj = {a + "o_proj.weight", {hidden, Hm * c.v_head_dim}, DType::BF16, true};
    return t;
}

MoeTensors moe_tensors(const ModelConfig& c, const std::string& m) {
    MoeTensors t;
    t.router = {m + "gate.weight", {c.num_experts, c.hidden_size}, DType::BF16};
    t.router_bias = {m + "gate.e_score_correction_bias", {c.num_experts}, DType::F32};
    for (int64_t e = 0; e < c.num_experts; ++e)
        t.experts.push_back(mlp_tensors(m + "experts." + std::to_string(e) + ".", "w1", "w3", "w2",
                                        c.hidden_size, c.moe_intermediate_size));
    t.has_shared = c.num_shared_experts > 0;
    if (t.has_shared)
        t.shared = mlp_tensors(m + "shared_experts.", "gate_proj", "up_proj", "down_proj",
                               c.hidden_size, c.moe_intermediate_size * c.num_shared_experts);
    return t;
}

void visit_mlp(const MlpTensors& t, const std::function<void(const TensorSpec&)>& f) {
    for (const TensorSpec* s : {&t.gate, &t.up, &t.down}) f(*s);
}

void visit_layer(const LayerTensors& l, const std::function<void(const TensorSpec&)>& f) {
    f(l.input_layernorm);
    f(l.post_attention_layernorm);
    if (l.is_kda) {
        const KdaTensors& k = l.kda;
        for (const TensorSpec* s : {&k.q_proj, &k.k_proj, &k.v_proj, &k.q_conv, &k.k_conv,
                                    &k.v_conv, &k.f_a_proj, &k.f_b_proj, &k.b_proj, &k.a_log,
                                    &k.dt_bias, &k.g_a_proj, &k.g_b_proj, &k.o_norm, &k.o_proj})
            f(*s);
    } else {
        const MlaTensors& m = l.mla;
        for (const TensorSpec* s :
             {&m.q_proj, &m.kv_a_proj_with_mqa, &m.kv_a_layernorm, &m.kv_b_proj, &m.o_proj})
            f(*s);
    }
    if (l.is_moe) {
        f(l.moe.router);
        f(l.moe.router_bias);
        for (const MlpTensors& e : l.moe.experts) visit_mlp(e, f);
        if (l.moe.has_shared) visit_mlp(l.moe.shared, f);
    } else {
        visit_mlp(l.mlp, f);
    }
}

// One layer's tensors (ModelLayout's layers[layer]).
LayerTensors layer_tensors(const ModelConfig& c, int64_t layer) {
    const int64_t hidden = c.hidden_size;
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    LayerTensors l;
    l.input_layernorm = {p + "input_layernorm.weight", {hidden}, DType::BF16};
    l.post_attention_layernorm = {p + "post_attention_layernorm.weight", {hidden}, DType::BF16};
    l.is_kda = c.is_kda_layer(layer);
    if (l.is_kda)
        l.kda = kda_tensors(c, p + "self_attn.");
    else
        l.mla = mla_tensors(c, p + "self_attn.");
    l.is_moe = c.is_moe_layer(layer);
    if (l.is_moe)
        l.moe = moe_tensors(c, p + "block_sparse_moe.");
    else
        l.mlp = mlp_tensors(p + "mlp.", "gate_proj", "up_proj", "down_proj", hidden,
                            c.intermediate_size);
    return l;
}

}  // namespace

void fail_missing(const TensorSpec& spec) {
    fail(Status::Format, "tensor " + spec.name + " is missing (config wants shape " +
                             shape_string(spec.shape) + ")");
}

LayoutSize layout_size(const ModelConfig& c) {
    // 128-bit sums of products of config values each limited by ModelConfig::validate
    // (core/limits.h): no overflow whatever the config says, even unvalidated.
    using Wide = unsigned __int128;
    auto w = [](int64_t v) { return static_cast<Wide>(static_cast<uint64_t>(v)); };
    const Wide hidden = w(c.hidden_size), H = w(c.kda_num_heads), D = w(c.kda_head_dim), HD = H * D,
               Hm = w(c.num_attention_heads), nope = w(c.qk_nope_head_dim),
               rope = w(c.qk_rope_head_dim), v = w(c.v_head_dim), rank = w(c.kv_lora_rank),
               E = w(c.num_experts), vocab = w(c.vocab_size);
    Wide tensors = 2, params = vocab * hidden + hidden;  // embed_tokens, model.norm
    if (!c.tie_word_embeddings) tensors += 1, params += vocab * hidden;
    for (int64_t layer = 0; layer < c.num_hidden_layers && layer < limits::kLayers; ++layer) {
        tensors += 2, params += 2 * hidden;
        if (c.is_kda_layer(layer)) {
            tensors += 15;
            params += 3 * HD * hidden + 3 * HD * w(c.short_conv_kernel_size) + 2 * D * hidden +
                      2 * HD * D + H * hidden + H + HD + D + hidden * HD;
        } else {
            tensors += 5;
            params += Hm * (nope + rope) * hidden + (rank + rope) * hidden + rank +
                      Hm * (nope + v) * rank + hidden * Hm * v;
        }
        if (c.is_moe_layer(layer)) {
            tensors += 2 + 3 * E;
            params += E * hidden + E + E * 3 * w(c.moe_intermediate_size) * hidden;
            if (c.num_shared_experts > 0)
                tensors += 3,
                    params += 3 * w(c.moe_intermediate_size) * w(c.num_shared_experts) * hidden;
        } else {
            tensors += 3, params += 3 * w(c.intermediate_size) * hidden;
        }
    }
    if (c.num_hidden_layers > limits::kLayers || tensors > limits::kTensors)
        fail(Status::Format, "the config describes more than " + std::to_string(limits::kTensors) +
                                 " tensors (the limit)");
    if (params > limits::kParameters)
        fail(Status::Format, "the config describes more than " +
                                 std::to_string(limits::kParameters) + " parameters (the limit)");
    return {static_cast<uint64_t>(tensors), static_cast<uint64_t>(params)};
}

uint64_t TensorSpec::numel() const {
    uint64_t n = 1;
    for (int64_t d : shape) n *= static_cast<uint64_t>(d);
    return n;
}

ModelLayout::ModelLayout(const ModelConfig& c) {
    layout_size(c);  // within the limits, or Format before anything is built
    const int64_t hidden = c.hidden_size;
    embed_tokens = {"model.embed_tokens.weight", {c.vocab_size, hidden}, DType::BF16};
    layers.reserve(static_cast<size_t>(c.num_hidden_layers));
    for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer)
        layers.push_back(layer_tensors(c, layer));
    final_norm = {"model.norm.weight", {hidden}, DType::BF16};
    tied = c.tie_word_embeddings;
    if (!tied) lm_head = {"lm_head.weight", {c.vocab_size, hidden}, DType::BF16, true};
}

void ModelLayout::visit(const std::function<void(const TensorSpec&)>& f) const {
    f(embed_tokens);
    for (const LayerTensors& l : layers) visit_layer(l, f);
    f(final_norm);
    if (!tied) f(lm_head);
}

std::vector<TensorSpec> ModelLayout::tensors() const {
    std::vector<TensorSpec> specs;
    visit([&](const TensorSpec& spec) { specs.push_back(spec); });
    return specs;
}

size_t ModelLayout::size() const {
    size_t n = 0;
    visit([&](const TensorSpec&) { ++n; });
    return n;
}

std::vector<TensorSpec> expected_tensors(const ModelConfig& config) {
    return ModelLayout(config).tensors();
}

ParameterCounts count_parameters(const ModelConfig& c, const ModelLayout& layout,
                                 const std::function<WeightFormat(const TensorSpec&)>& format_of) {
    ParameterCounts counts;
    // Adds `spec` in the form it loads to `plain` (parameters) or `quantized` (bytes).
    auto add = [&](const TensorSpec& spec, uint64_t& plain, uint64_t& quantized) {
        const WeightFormat format = format_of ? format_of(spec) : WeightFormat::Plain;
        if (format == WeightFormat::Plain)
            plain += spec.numel();
        else  // only linear weights, [rows, cols], load quantized
            quantized += quantized_bytes(format, spec.shape[0], spec.shape[1]);
    };
    layout.visit([&](const TensorSpec& spec) {
        counts.total += spec.numel();
        add(spec, counts.active_plain, counts.active_quantized_bytes);
    });
    counts.active = counts.total;
    const uint64_t unchosen =
        static_cast<uint64_t>(std::max<int64_t>(0, c.num_experts - c.num_experts_per_token));
    for (const LayerTensors& l : layout.layers) {
        if (!l.is_moe || l.moe.experts.empty()) continue;
        const MlpTensors& e = l.moe.experts.front();  // all experts have one shape
        const uint64_t expert = e.gate.numel() + e.up.numel() + e.down.numel();
        counts.active -= unchosen * expert;
        counts.routed += l.moe.experts.size() * expert;
        uint64_t plain = 0, quantized = 0;
        for (const MlpTensors& x : l.moe.experts)
            for (const TensorSpec* s : {&x.gate, &x.up, &x.down}) add(*s, plain, quantized);
        counts.routed_plain += plain;
        counts.routed_quantized_bytes += quantized;
        // A token skips `unchosen` of the layer's experts: as many mean experts (exact when
        // they load in one format; a checkpoint may keep some of them plain).
        const uint64_t n = l.moe.experts.size();
        counts.active_plain -= plain / n * unchosen;
        counts.active_quantized_bytes -= quantized / n * unchosen;
    }
    if (!layout.tied) {
        counts.active -= layout.embed_tokens.numel();
        uint64_t plain = 0, quantized = 0;
        add(layout.embed_tokens, plain, quantized);
        counts.active_plain -= plain;
        counts.active_quantized_bytes -= quantized;
    }
    return counts;
}

uint64_t ParameterCounts::decode_bytes(DeviceKind device) const {
    return device == DeviceKind::Cpu ? active * sizeof(float)
                                     : active_plain * 2 + active_quantized_bytes;
}

uint64_t ParameterCounts::routed_bytes(DeviceKind device) const {
    return device == DeviceKind::Cpu ? routed * sizeof(float)
                                     : routed_plain * 2 + routed_quantized_bytes;
}

void check_tensor_count(const ModelConfig& c, const Checkpoint& checkpoint) {
    const LayoutSize size = layout_size(c);
    const size_t held = checkpoint.tensors().size();
    if (size.tensors <= held) return;
    // The config wants more tensors than the checkpoint holds, so one of them is missing:
    // name the first, building one layer's description at a time. The first missing one
    // comes within the first held + 1 names, so this costs what the checkpoint's size allows.
    auto need = [&](const TensorSpec& spec) {
        if (!checkpoint.find(spec.name)) fail_missing(spec);
    };
    need({"model.embed_tokens.weight", {c.vocab_size, c.hidden_size}, DType::BF16});
    for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer)
        visit_layer(layer_tensors(c, layer), need);
    need({"model.norm.weight", {c.hidden_size}, DType::BF16});
    fail(Status::Format, "the config describes " + std::to_string(size.tensors) +
                             " tensors, the checkpoint holds " + std::to_string(held));
}

void validate_checkpoint(const ModelLayout& layout, const Checkpoint& checkpoint) {
    layout.visit([&](const TensorSpec& spec) {
        const TensorView* view = checkpoint.find(spec.name);
        if (!view) fail_missing(spec);
        if (view->shape != spec.shape)
            fail(Status::Format, "tensor " + spec.name + " has shape " + shape_string(view->shape) +
                                     ", config wants " + shape_string(spec.shape) + " (in " +
                                     view->file + ")");
    });
}

void validate_checkpoint(const ModelConfig& config, const Checkpoint& checkpoint) {
    check_tensor_count(config, checkpoint);
    validate_checkpoint(ModelLayout(config), checkpoint);
}

TensorSource checkpoint_tensor_source(const Checkpoint& checkpoint) {
    return [&checkpoint](const TensorSpec& spec, float* out) {
        checkpoint.find(spec.name)->to_f32(out);
    };
}

TensorSource random_tensor_source(uint64_t seed) {
    return [seed](const TensorSpec& spec, float* out) {
        const RandomInit init =
            random_init_for(spec.name, spec.shape.size() >= 2 ? spec.shape.back() : 1);
        const uint64_t key = random_tensor_key(spec.name);
        const uint64_t numel = spec.numel();
        // Rounded like a bf16 checkpoint (fp32 tensors stay fp32), so an in-memory random
        // model equals make_tiny_model's files for the same seed.
        const bool round = spec.dtype == DType::BF16;
        for (uint64_t i = 0; i < numel; ++i) {
            const float value = random_value(seed, key, i, init);
            out[i] = round ? bf16_to_f32(f32_to_bf16(value)) : value;
        }
    };
}

}  // namespace kl
