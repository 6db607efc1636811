#include "shard_plan.h"

#include "error.h"

namespace kl {

ShardPlan::ShardPlan(const ModelConfig& config, const ModelLayout& layout, int shards)
    : shards_(shards) {
    if (shards < 1 || shards > kMaxShards)
        fail(Status::InvalidArgument, "a model splits over 1 to " + std::to_string(kMaxShards) +
                                          " devices, not " + std::to_string(shards));
    const std::string over = "cannot split the model over " + std::to_string(shards) + " devices: ";
    auto divide = [&](int64_t value, const std::string& what) {
        if (value % shards != 0)
            fail(Status::Unsupported, over + what + " (" + std::to_string(value) +
                                          ") is not a multiple of " + std::to_string(shards));
        return value / shards;
    };
    bool kda = false, mla = false, dense = false, moe = false, shared = false;
    for (const LayerTensors& L : layout.layers) {
        (L.is_kda ? kda : mla) = true;
        (L.is_moe ? moe : dense) = true;
        shared = shared || (L.is_moe && L.moe.has_shared);
    }
    if (kda) kda_heads_ = divide(config.kda_num_heads, "kda_num_heads");
    if (mla) mla_heads_ = divide(config.num_attention_heads, "num_attention_heads");
    if (dense) dense_inter_ = divide(config.intermediate_size, "intermediate_size");
    if (moe) experts_per_shard_ = divide(config.num_experts, "num_experts");
    if (shared)
        shared_inter_ = divide(config.moe_intermediate_size * config.num_shared_experts,
                               "the shared experts' width (moe_intermediate_size x "
                               "num_shared_experts)");
    vocab_size_ = config.vocab_size;
    if (vocab_size_ < shards)
        fail(Status::Unsupported, over + "vocab_size (" + std::to_string(vocab_size_) +
                                      ") is smaller than the number of devices");

    // Each rule checked against the layout's shape, so that the plan and the layout cannot
    // drift apart unnoticed.
    auto put = [&](const TensorSpec& spec, int axis, int64_t unit) {
        Rule rule;
        rule.axis = axis;
        rule.unit = unit;
        rule.whole = spec;
        if (axis >= 0) {
            if (axis >= static_cast<int>(spec.shape.size()) ||
                (unit >= 0 && spec.shape[static_cast<size_t>(axis)] != unit * shards))
                fail(Status::Internal, "shard plan: " + spec.name + " does not split along axis " +
                                           std::to_string(axis) + " in parts of " +
                                           std::to_string(unit));
            rule.size = spec.shape[static_cast<size_t>(axis)];
        }
        rules_[spec.name] = rule;
    };
    auto whole = [&](const TensorSpec& spec) { put(spec, -1, 0); };
    auto by_vocab = [&](const TensorSpec& spec) { put(spec, 0, -1); };  // unit -1: vocab()
    auto mlp = [&](const MlpTensors& m, int64_t inter) {                // column then row
        put(m.gate, 0, inter), put(m.up, 0, inter), put(m.down, 1, inter);
    };

    by_vocab(layout.embed_tokens);
    if (!layout.tied) by_vocab(layout.lm_head);
    whole(layout.final_norm);
    const int64_t D = config.kda_head_dim;
    for (const LayerTensors& L : layout.layers) {
        whole(L.input_layernorm), whole(L.post_attention_layernorm);
        if (L.is_kda) {
            const KdaTensors& k = L.kda;
            const int64_t rows = kda_heads_ * D;  // a shard's heads, D channels each
            for (const TensorSpec* t : {&k.q_proj, &k.k_proj, &k.v_proj, &k.q_conv, &k.k_conv,
                                        &k.v_conv, &k.f_b_proj, &k.g_b_proj, &k.dt_bias})
                put(*t, 0, rows);
            put(k.b_proj, 0, kda_heads_);
            put(k.a_log, 2, kda_heads_);
            put(k.o_proj, 1, rows);
            whole(k.f_a_proj), whole(k.g_a_proj), whole(k.o_norm);
        } else {
            const MlaTensors& m = L.mla;
            put(m.q_proj, 0, mla_heads_ * (config.qk_nope_head_dim + config.qk_rope_head_dim));
            put(m.kv_b_proj, 0, mla_heads_ * (config.qk_nope_head_dim + config.v_head_dim));
            put(m.o_proj, 1, mla_heads_ * config.v_head_dim);
            whole(m.kv_a_proj_with_mqa), whole(m.kv_a_layernorm);  // the latent: every shard
        }
        if (L.is_moe) {
            whole(L.moe.router), whole(L.moe.router_bias);
            for (size_t e = 0; e < L.moe.experts.size(); ++e)
                for (const TensorSpec* t :
                     {&L.moe.experts[e].gate, &L.moe.experts[e].up, &L.moe.experts[e].down}) {
                    whole(*t);
                    rules_[t->name].expert = static_cast<int64_t>(e);
                }
            if (L.moe.has_shared) mlp(L.moe.shared, shared_inter_);
        } else {
            mlp(L.mlp, dense_inter_);
        }
    }
}

void ShardPlan::check_shard(int shard) const {
    if (shard < 0 || shard >= shards_)
        fail(Status::InvalidArgument, "shard " + std::to_string(shard) + " of a plan over " +
                                          std::to_string(shards_) + " devices");
}

std::pair<int64_t, int64_t> ShardPlan::experts(int shard) const {
    check_shard(shard);
    return {shard * experts_per_shard_, (shard + 1) * experts_per_shard_};
}

// Even parts: sizes differ by at most one and none is empty (vocab_size >= shards).
std::pair<int64_t, int64_t> ShardPlan::vocab(int shard) const {
    check_shard(shard);
    return {vocab_size_ * shard / shards_, vocab_size_ * (shard + 1) / shards_};
}

ShardSlice ShardPlan::slice(const std::string& tensor, int shard) const {
    check_shard(shard);
    const auto found = rules_.find(tensor);
    if (found == rules_.end())
        fail(Status::InvalidArgument, "shard plan: no tensor named " + tensor);
    const Rule& rule = found->second;
    ShardSlice s;
    if (rule.expert >= 0) {
        s.held = rule.expert / experts_per_shard_ == shard;
        return s;
    }
    if (rule.axis < 0) return s;
    s.axis = rule.axis;
    if (rule.unit < 0) {
        const auto [begin, end] = vocab(shard);
        s.begin = begin, s.count = end - begin;
    } else {
        s.begin = shard * rule.unit, s.count = rule.unit;
    }
    return s;
}

std::vector<int64_t> ShardPlan::shape(const TensorSpec& spec, int shard) const {
    const ShardSlice s = slice(spec.name, shard);
    std::vector<int64_t> shape = spec.shape;
    if (s.axis >= 0) shape[static_cast<size_t>(s.axis)] = s.count;
    return shape;
}

ModelConfig ShardPlan::config(const ModelConfig& full, int shard) const {
    check_shard(shard);
    ModelConfig c = full;
    if (kda_heads_) c.kda_num_heads = kda_heads_;
    if (mla_heads_) c.num_attention_heads = mla_heads_;
    return c;  // MLP widths come from the weights' shapes; experts and vocabulary stay whole
}

ModelLayout ShardPlan::layout(const ModelLayout& full, int shard) const {
    check_shard(shard);
    ModelLayout cut = full;
    auto apply = [&](TensorSpec& spec) {
        const ShardSlice s = slice(spec.name, shard);
        if (s.axis >= 0)
            spec.shape[static_cast<size_t>(s.axis)] = s.count;
        else if (!s.held)
            spec.shape[0] = 0;  // another shard's expert: nothing to hold
    };
    auto mlp = [&](MlpTensors& m) { apply(m.gate), apply(m.up), apply(m.down); };
    apply(cut.embed_tokens), apply(cut.final_norm);
    if (!cut.tied) apply(cut.lm_head);
    for (LayerTensors& L : cut.layers) {
        apply(L.input_layernorm), apply(L.post_attention_layernorm);
        KdaTensors& k = L.kda;
        MlaTensors& m = L.mla;
        if (L.is_kda)
            for (TensorSpec* t : {&k.q_proj, &k.k_proj, &k.v_proj, &k.q_conv, &k.k_conv, &k.v_conv,
                                  &k.f_a_proj, &k.f_b_proj, &k.b_proj, &k.a_log, &k.dt_bias,
                                  &k.g_a_proj, &k.g_b_proj, &k.o_norm, &k.o_proj})
                apply(*t);
        else
            for (TensorSpec* t :
                 {&m.q_proj, &m.kv_a_proj_with_mqa, &m.kv_a_layernorm, &m.kv_b_proj, &m.o_proj})
                apply(*t);
        if (L.is_moe) {
            apply(L.moe.router), apply(L.moe.router_bias);
            for (MlpTensors& e : L.moe.experts) mlp(e);
            if (L.moe.has_shared) mlp(L.moe.shared);
        } else {
            mlp(L.mlp);
        }
    }
    return cut;
}

TensorSource ShardPlan::source(const TensorSource& whole, int shard) const {
    check_shard(shard);
    return [this, whole, shard](const TensorSpec& spec, float* out) {
        const ShardSlice s = slice(spec.name, shard);
        if (!s.held) return;  // an empty tensor
        const Rule& rule = rules_.at(spec.name);
        if (s.axis < 0) {
            whole(rule.whole, out);
            return;
        }
        std::vector<float> all(static_cast<size_t>(rule.whole.numel()));
        whole(rule.whole, all.data());
        const std::vector<float> part = take_slice(all.data(), rule.whole.shape, s);
        std::copy(part.begin(), part.end(), out);
    };
}

std::vector<float> take_slice(const float* full, const std::vector<int64_t>& shape,
                              const ShardSlice& slice) {
    int64_t total = 1;
    for (int64_t d : shape) total *= d;
    if (slice.axis < 0) return std::vector<float>(full, full + total);
    if (slice.axis >= static_cast<int>(shape.size()) || slice.begin < 0 || slice.count < 0 ||
        slice.begin + slice.count > shape[static_cast<size_t>(slice.axis)])
        fail(Status::InvalidArgument, "take_slice: the slice lies outside the tensor");
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < slice.axis; ++i) outer *= shape[static_cast<size_t>(i)];
    for (size_t i = static_cast<size_t>(slice.axis) + 1; i < shape.size(); ++i) inner *= shape[i];
    const int64_t dim = shape[static_cast<size_t>(slice.axis)];
    std::vector<float> out(static_cast<size_t>(outer * slice.count * inner));
    for (int64_t o = 0; o < outer; ++o) {
        const float* src = full + (o * dim + slice.begin) * inner;
        std::copy(src, src + slice.count * inner, out.begin() + o * slice.count * inner);
    }
    return out;
}

}  // namespace kl
