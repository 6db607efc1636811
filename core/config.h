// Typed model configuration parsed from a Hugging Face config.json (see docs/design/model.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kl {

struct ModelConfig {
    // Core sizes.
    int64_t hidden_size = 0;
    int64_t num_hidden_layers = 0;
    int64_t vocab_size = 0;
    int64_t intermediate_size = 0;  // dense MLP (layers < first_k_dense_replace)
    float rms_norm_eps = 1e-5f;

    // MLA (NoPE: the "rope" dims are never rotated).
    int64_t num_attention_heads = 0;
    int64_t kv_lora_rank = 0;
    int64_t qk_nope_head_dim = 0;
    int64_t qk_rope_head_dim = 0;
    int64_t v_head_dim = 0;

    // KDA (linear_attn_config). K = V = kda_head_dim.
    int64_t kda_num_heads = 0;
    int64_t kda_head_dim = 0;
    int64_t short_conv_kernel_size = 0;
    std::vector<int64_t> kda_layers;        // 1-based, as in the file
    std::vector<int64_t> full_attn_layers;  // 1-based, as in the file

    // MoE.
    int64_t num_experts = 0;
    int64_t num_experts_per_token = 0;
    int64_t num_shared_experts = 0;
    int64_t moe_intermediate_size = 0;
    bool moe_renormalize = true;
    float routed_scaling_factor = 1.0f;
    bool use_grouped_topk = false;
    int64_t num_expert_group = 1;
    int64_t topk_group = 1;
    int64_t first_k_dense_replace = 0;
    int64_t moe_layer_freq = 1;

    bool tie_word_embeddings = false;
    // Default session capacity (model_max_length / max_position_embeddings if present).
    int64_t max_context = 0;

    // Parse and validate; errors are kl::Error(Format) naming the key and `origin`.
    static ModelConfig from_json(const std::string& json_text, const std::string& origin);
    // Reads DIR/config.json (Io if missing).
    static ModelConfig load(const std::string& dir);
    // A config.json text that from_json reads back to an equal config.
    std::string to_json() const;

    // 0-based layer queries.
    bool is_kda_layer(int64_t layer) const;
    bool is_moe_layer(int64_t layer) const;
    int64_t n_kda_layers() const;
    int64_t n_mla_layers() const;

    int64_t kda_dim() const { return kda_num_heads * kda_head_dim; }
    int64_t mla_qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
    int64_t mla_cache_width() const { return kv_lora_rank + qk_rope_head_dim; }

    // Per-session state, the same sizes in every backend and in snapshots. A KDA layer keeps
    // its recurrent state S [H, K, V] then the short convolutions' last kernel-1 inputs of
    // q, k and v ([kernel-1, H*D] each), fp32; an MLA layer caches mla_cache_width() values
    // per token.
    int64_t kda_state_floats() const { return kda_num_heads * kda_head_dim * kda_head_dim; }
    int64_t conv_state_floats() const { return 3 * (short_conv_kernel_size - 1) * kda_dim(); }
    int64_t recurrent_floats_per_kda_layer() const {
        return kda_state_floats() + conv_state_floats();
    }
    uint64_t recurrent_state_bytes() const {  // all KDA layers: a session's fixed part
        return static_cast<uint64_t>(n_kda_layers() * recurrent_floats_per_kda_layer()) *
               sizeof(float);
    }
    int64_t mla_cache_values_per_token() const { return n_mla_layers() * mla_cache_width(); }

    // Throws Format naming the offending key if the config is inconsistent.
    void validate(const std::string& origin) const;
};

}  // namespace kl
