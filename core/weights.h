// The model described once: every tensor a config implies (name, shape, dtype), typed by
// what it is in its layer, built once per load from the config. Checkpoint validation, the
// fingerprint, the parameter counts, make_tiny_model and each backend's weight builder all
// read this description instead of spelling tensor names. Also where tensor values come
// from (a checkpoint, or deterministic random values).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "config.h"
#include "quant_config.h"
#include "safetensors.h"

namespace kl {

// What the checkpoint must hold for a config. `dtype` is the released checkpoint's dtype
// (bf16, fp32 for A_log / dt_bias / e_score_correction_bias); any of bf16/f16/f32 loads.
// `linear`: the weight of a Linear module (a projection, an expert's or MLP's matrix,
// lm_head), which a checkpoint may store quantized (core/weight_store.h); the router gate,
// embeddings, norms, convolutions, A_log and dt_bias are not.
struct TensorSpec {
    std::string name;
    std::vector<int64_t> shape;
    DType dtype = DType::BF16;
    bool linear = false;
    uint64_t numel() const;
};

struct MlpTensors {  // SwiGLU: gate, up [inter, hidden], down [hidden, inter]
    TensorSpec gate, up, down;
};

struct KdaTensors {
    TensorSpec q_proj, k_proj, v_proj;  // [H*D, hidden]
    TensorSpec q_conv, k_conv, v_conv;  // [H*D, 1, kernel]
    TensorSpec f_a_proj, f_b_proj;      // [D, hidden], [H*D, D]
    TensorSpec b_proj;                  // [H, hidden]
    TensorSpec a_log;                   // [1, 1, H, 1] fp32
    TensorSpec dt_bias;                 // [H*D] fp32
    TensorSpec g_a_proj, g_b_proj;      // [D, hidden], [H*D, D]
    TensorSpec o_norm;                  // [D]
    TensorSpec o_proj;                  // [hidden, H*D]
};

struct MlaTensors {
    TensorSpec q_proj;              // [Hm*(nope+rope), hidden]
    TensorSpec kv_a_proj_with_mqa;  // [kv_lora_rank+rope, hidden]
    TensorSpec kv_a_layernorm;      // [kv_lora_rank]
    TensorSpec kv_b_proj;           // [Hm*(nope+v), kv_lora_rank]
    TensorSpec o_proj;              // [hidden, Hm*v]
};

struct MoeTensors {
    TensorSpec router;                // gate.weight [E, hidden]
    TensorSpec router_bias;           // gate.e_score_correction_bias [E] fp32
    std::vector<MlpTensors> experts;  // gate = w1, up = w3, down = w2
    bool has_shared = false;
    MlpTensors shared;  // inter = moe_inter * num_shared_experts
};

// What one layer is made of, for the description here and for a backend's own weights
// (the CPU backend's LayerWeights): two norms, KDA or MLA attention, a MoE or a dense MLP.
template <typename Norm, typename Kda, typename Mla, typename Moe, typename Mlp>
struct LayerOf {
    Norm input_layernorm, post_attention_layernorm;  // [hidden]
    bool is_kda = false;
    Kda kda;  // when is_kda
    Mla mla;  // otherwise
    bool is_moe = false;
    Moe moe;  // when is_moe
    Mlp mlp;  // otherwise
};
using LayerTensors = LayerOf<TensorSpec, KdaTensors, MlaTensors, MoeTensors, MlpTensors>;

struct ModelLayout {
    explicit ModelLayout(const ModelConfig& config);

    TensorSpec embed_tokens;  // [vocab, hidden]
    std::vector<LayerTensors> layers;
    TensorSpec final_norm;  // [hidden]
    bool tied = false;      // lm_head is embed_tokens
    TensorSpec lm_head;     // [vocab, hidden], when not tied

    // Every tensor once, in checkpoint order (the order make_tiny_model writes).
    void visit(const std::function<void(const TensorSpec&)>& f) const;
    std::vector<TensorSpec> tensors() const;
    size_t size() const;  // how many tensors visit() gives
};

// How many tensors and parameters (a tied lm_head once) a config describes, computed without
// building the layout. Format when past limits::kTensors or limits::kParameters
// (core/limits.h); ModelLayout's constructor checks this first.
struct LayoutSize {
    uint64_t tensors = 0, parameters = 0;
};
LayoutSize layout_size(const ModelConfig& config);

// Before the layout of a loaded config is built: a config that wants more tensors than the
// checkpoint holds is Format naming the first missing tensor, found without building the
// whole (possibly huge) layout (docs/design/model.md, "Limits").
void check_tensor_count(const ModelConfig& config, const Checkpoint& checkpoint);

// The flat list for a config (tests, make_tiny_model): ModelLayout(config).tensors().
std::vector<TensorSpec> expected_tensors(const ModelConfig& config);

enum class DeviceKind;  // core/backend.h

// Parameter counts: all weights (a tied lm_head once), and those one decode step reads
// (all but the routed experts it does not choose and the untied embedding table).
struct ParameterCounts {
    uint64_t total = 0, active = 0;
    uint64_t routed = 0;  // the routed experts' weights, all experts of all layers
    // The same sets in the form the weights load (WeightStore::format): the parameters of
    // the tensors that load plain, and the bytes (quantized_bytes, core/quantize.h) of those
    // that load FP8 or INT4. A decode step reads k / E of a layer's routed experts: k / E of
    // their parameters and bytes are active (exact when all of a layer's experts load in one
    // format, as they do unless a checkpoint keeps only some of them plain).
    uint64_t active_plain = 0, active_quantized_bytes = 0;
    uint64_t routed_plain = 0, routed_quantized_bytes = 0;

    // Bytes of weights one decode step reads at least, and of all routed experts, in the form
    // a backend on `device` holds them: the CPU backend holds every weight as fp32 (quantized
    // ones dequantized), the CUDA backend plain weights as bf16 and quantized ones as loaded.
    uint64_t decode_bytes(DeviceKind device) const;
    uint64_t routed_bytes(DeviceKind device) const;
};
// `format_of` gives the form each tensor loads in; empty: every tensor loads plain.
ParameterCounts count_parameters(
    const ModelConfig& config, const ModelLayout& layout,
    const std::function<WeightFormat(const TensorSpec&)>& format_of = {});

// Format: "tensor NAME is missing (config wants shape [..])".
[[noreturn]] void fail_missing(const TensorSpec& spec);

// Checks every described tensor by name and shape. Throws Format naming the tensor and
// both shapes. Tensors the layout does not describe are ignored.
void validate_checkpoint(const ModelLayout& layout, const Checkpoint& checkpoint);
void validate_checkpoint(const ModelConfig& config, const Checkpoint& checkpoint);

// Writes a tensor's values as fp32 into out[0..spec.numel()).
using TensorSource = std::function<void(const TensorSpec& spec, float* out)>;
// The checkpoint's values (validated against the layout), converted to fp32.
TensorSource checkpoint_tensor_source(const Checkpoint& checkpoint);
// Deterministic random weights (core/random_init.h), the same make_tiny_model writes.
TensorSource random_tensor_source(uint64_t seed);

}  // namespace kl
