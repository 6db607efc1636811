// The config of make_tiny_model's tiny preset (4 layers: KDA, KDA, KDA, MLA; a dense first
// layer, then 8 experts and one shared; hidden 64), validated, for tests that need a config
// without files (links kl_core).
#pragma once

#include "core/config.h"

namespace kl::test {

inline kl::ModelConfig tiny_config() {
    kl::ModelConfig c;
    c.hidden_size = 64, c.num_hidden_layers = 4, c.vocab_size = 256, c.intermediate_size = 128;
    c.num_attention_heads = 2, c.kv_lora_rank = 32, c.qk_nope_head_dim = 16;
    c.qk_rope_head_dim = 8, c.v_head_dim = 16;
    c.kda_num_heads = 2, c.kda_head_dim = 16, c.short_conv_kernel_size = 4;
    c.kda_layers = {1, 2, 3}, c.full_attn_layers = {4};
    c.num_experts = 8, c.num_experts_per_token = 2, c.num_shared_experts = 1;
    c.moe_intermediate_size = 32, c.routed_scaling_factor = 2.446f;
    c.first_k_dense_replace = 1, c.max_context = 4096;
    c.validate("tiny");
    return c;
}

}  // namespace kl::test
