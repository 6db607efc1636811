// The model's weights as the CPU backend uses them (fp32, row-major PyTorch [out, in]),
// and the single list of tensors a config implies (names, shapes, dtypes), shared by the
// checkpoint validation and make_tiny_model.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "config.h"
#include "safetensors.h"

namespace kl {

// What the checkpoint must hold for a config. `dtype` is the released checkpoint's dtype
// (bf16, fp32 for A_log / dt_bias / e_score_correction_bias); any of bf16/f16/f32 loads.
struct TensorSpec {
    std::string name;
    std::vector<int64_t> shape;
    DType dtype = DType::BF16;
};
std::vector<TensorSpec> expected_tensors(const ModelConfig& config);

// Parameter counts of a config: all weights (a tied lm_head once), and those one decode
// step reads (all but the routed experts it does not choose and the untied embedding table).
struct ParameterCounts {
    uint64_t total = 0, active = 0;
};
ParameterCounts count_parameters(const ModelConfig& config);

// Checks every expected tensor by name, dtype and shape. Throws Format naming the tensor
// and both shapes. Tensors the config does not use are ignored.
void validate_checkpoint(const ModelConfig& config, const Checkpoint& checkpoint);

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

struct LayerWeights {
    std::vector<float> input_layernorm, post_attention_layernorm;  // [hidden]
    bool is_kda = false;
    KdaWeights kda;  // when is_kda
    MlaWeights mla;  // otherwise
    bool is_moe = false;
    MoeWeights moe;  // when is_moe
    MlpWeights mlp;  // otherwise
};

struct ModelWeights {
    Matrix embed_tokens;            // [vocab, hidden]
    std::vector<float> final_norm;  // [hidden]
    Matrix lm_head;                 // [vocab, hidden] (a copy of embed_tokens when tied)
    std::vector<LayerWeights> layers;
    uint64_t bytes() const;  // fp32 bytes held
};

// Validates, then converts every tensor to fp32. progress(fraction) is called as tensors
// load; returning false aborts with Status::Cancelled.
ModelWeights load_weights_f32(const ModelConfig& config, const Checkpoint& checkpoint,
                              const std::function<bool(float)>& progress);

// Writes a tensor's values as fp32 into out[0..numel of spec.shape).
using TensorSource = std::function<void(const TensorSpec& spec, float* out)>;
// The weights of any source (a checkpoint, or random values), tensor by tensor.
ModelWeights build_weights_f32(const ModelConfig& config, const TensorSource& source,
                               const std::function<bool(float)>& progress);
// Deterministic random weights (core/random_init.h), the same make_tiny_model writes.
TensorSource random_tensor_source(uint64_t seed);

}  // namespace kl
