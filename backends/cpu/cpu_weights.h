// The model's weights as the CPU backend uses them: fp32, row-major PyTorch [out, in], read
// tensor by tensor through the model's description (core/weights.h).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/config.h"
#include "core/safetensors.h"
#include "core/weights.h"

namespace kl {

struct Matrix {  // row-major [rows = out, cols = in]
    int64_t rows = 0;
    int64_t cols = 0;
    std::vector<float> data;
};

struct MlpWeights {
    Matrix gate, up, down;  // gate/up [inter, hidden], down [hidden, inter]
};

struct KdaWeights {
    Matrix q_proj, k_proj, v_proj;              // [H*D, hidden]
    std::vector<float> q_conv, k_conv, v_conv;  // [H*D, kernel]
    Matrix f_a_proj, f_b_proj;                  // [D, hidden], [H*D, D]
    Matrix b_proj;                              // [H, hidden]
    std::vector<float> a_log;                   // [H]
    std::vector<float> dt_bias;                 // [H*D]
    Matrix g_a_proj, g_b_proj;                  // [D, hidden], [H*D, D]
    std::vector<float> o_norm;                  // [D]
    Matrix o_proj;                              // [hidden, H*D]
};

struct MlaWeights {
    Matrix q_proj;                      // [Hm*(nope+rope), hidden]
    Matrix kv_a_proj_with_mqa;          // [kv_lora_rank+rope, hidden]
    std::vector<float> kv_a_layernorm;  // [kv_lora_rank]
    Matrix kv_b_proj;                   // [Hm*(nope+v), kv_lora_rank]
    Matrix o_proj;                      // [hidden, Hm*v]
};

struct MoeWeights {
    Matrix gate;                                 // router [E, hidden]
    std::vector<float> e_score_correction_bias;  // [E]
    std::vector<MlpWeights> experts;             // gate = w1, up = w3, down = w2
    bool has_shared = false;
    MlpWeights shared;  // inter = moe_inter * num_shared_experts
};

using LayerWeights = LayerOf<std::vector<float>, KdaWeights, MlaWeights, MoeWeights, MlpWeights>;

struct ModelWeights {
    Matrix embed_tokens;            // [vocab, hidden]
    std::vector<float> final_norm;  // [hidden]
    Matrix lm_head;                 // [vocab, hidden] (a copy of embed_tokens when tied)
    std::vector<LayerWeights> layers;
    uint64_t bytes() const;  // fp32 bytes held
};

// The weights of any source (a checkpoint, or random values), tensor by tensor as the
// layout describes them. progress(fraction) is called as tensors load; returning false
// aborts with Status::Cancelled.
ModelWeights build_weights_f32(const ModelLayout& layout, const TensorSource& source,
                               const std::function<bool(float)>& progress);
// Validates the checkpoint against the config, then converts every tensor to fp32.
ModelWeights load_weights_f32(const ModelConfig& config, const Checkpoint& checkpoint,
                              const std::function<bool(float)>& progress);

}  // namespace kl
