#include "cpu_weights.h"

#include <utility>

#include "core/error.h"

namespace kl {
namespace {

// Reads tensors into fp32 through a TensorSource, reporting progress.
class Loader {
public:
    Loader(size_t n_tensors, const TensorSource& source, const std::function<bool(float)>& progress)
        : source_(source), progress_(progress), total_(n_tensors) {}

    std::vector<float> vec(const TensorSpec& spec) {
        std::vector<float> out(static_cast<size_t>(spec.numel()));
        source_(spec, out.data());
        if (progress_ && !progress_(static_cast<float>(++done_) / static_cast<float>(total_)))
            fail(Status::Cancelled, "model load cancelled by the progress callback");
        return out;
    }
    Matrix matrix(const TensorSpec& spec) {
        Matrix m;
        m.rows = spec.shape[0];
        m.cols = spec.shape[1];
        m.data = vec(spec);
        return m;
    }
    MlpWeights mlp(const MlpTensors& t) { return {matrix(t.gate), matrix(t.up), matrix(t.down)}; }

private:
    const TensorSource& source_;
    const std::function<bool(float)>& progress_;
    size_t total_;
    size_t done_ = 0;
};

KdaWeights kda_weights(const KdaTensors& t, Loader& load) {
    KdaWeights k;
    for (auto [spec, m] : {std::pair{&t.q_proj, &k.q_proj},
                           {&t.k_proj, &k.k_proj},
                           {&t.v_proj, &k.v_proj},
                           {&t.f_a_proj, &k.f_a_proj},
                           {&t.f_b_proj, &k.f_b_proj},
                           {&t.b_proj, &k.b_proj},
                           {&t.g_a_proj, &k.g_a_proj},
                           {&t.g_b_proj, &k.g_b_proj},
                           {&t.o_proj, &k.o_proj}})
        *m = load.matrix(*spec);
    for (auto [spec, v] : {std::pair{&t.q_conv, &k.q_conv},
                           {&t.k_conv, &k.k_conv},
                           {&t.v_conv, &k.v_conv},
                           {&t.a_log, &k.a_log},
                           {&t.dt_bias, &k.dt_bias},
                           {&t.o_norm, &k.o_norm}})
        *v = load.vec(*spec);
    return k;
}

MlaWeights mla_weights(const MlaTensors& t, Loader& load) {
    MlaWeights m;
    for (auto [spec, w] : {std::pair{&t.q_proj, &m.q_proj},
                           {&t.kv_a_proj_with_mqa, &m.kv_a_proj_with_mqa},
                           {&t.kv_b_proj, &m.kv_b_proj},
                           {&t.o_proj, &m.o_proj}})
        *w = load.matrix(*spec);
    m.kv_a_layernorm = load.vec(t.kv_a_layernorm);
    return m;
}

}  // namespace

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

ModelWeights build_weights_f32(const ModelLayout& layout, const TensorSource& source,
                               const std::function<bool(float)>& progress) {
    Loader load(layout.size(), source, progress);
    ModelWeights w;
    w.embed_tokens = load.matrix(layout.embed_tokens);
    for (const LayerTensors& t : layout.layers) {
        LayerWeights l;
        l.input_layernorm = load.vec(t.input_layernorm);
        l.post_attention_layernorm = load.vec(t.post_attention_layernorm);
        l.is_kda = t.is_kda;
        if (l.is_kda)
            l.kda = kda_weights(t.kda, load);
        else
            l.mla = mla_weights(t.mla, load);
        l.is_moe = t.is_moe;
        if (l.is_moe) {
            l.moe.gate = load.matrix(t.moe.router);
            l.moe.e_score_correction_bias = load.vec(t.moe.router_bias);
            for (const MlpTensors& e : t.moe.experts) l.moe.experts.push_back(load.mlp(e));
            l.moe.has_shared = t.moe.has_shared;
            if (l.moe.has_shared) l.moe.shared = load.mlp(t.moe.shared);
        } else {
            l.mlp = load.mlp(t.mlp);
        }
        w.layers.push_back(std::move(l));
    }
    w.final_norm = load.vec(layout.final_norm);
    w.lm_head = layout.tied ? w.embed_tokens : load.matrix(layout.lm_head);
    return w;
}

ModelWeights load_weights_f32(const ModelConfig& config, const Checkpoint& checkpoint,
                              const std::function<bool(float)>& progress) {
    check_tensor_count(config, checkpoint);
    const ModelLayout layout(config);
    validate_checkpoint(layout, checkpoint);
    return build_weights_f32(layout, checkpoint_tensor_source(checkpoint), progress);
}

}  // namespace kl
