// The weight formats a checkpoint may store its linear layers in, and config.json's
// `quantization_config` that names them (docs/design/model.md, "Quantized weights"):
//  - FP8, the Hugging Face "fine-grained FP8" layout: {quant_method: "fp8", fmt: "e4m3",
//    activation_scheme: "dynamic", weight_block_size: [128, 128], modules_to_not_convert};
//  - INT4, compressed-tensors "pack-quantized" W4A16: {quant_method: "compressed-tensors",
//    format: "pack-quantized", config_groups: {group_0: {targets: ["Linear"], weights:
//    {num_bits: 4, type: "int", symmetric: true, strategy: "group", group_size: 128}}},
//    ignore}.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace kl {

// How a tensor is held: Plain is a BF16/F16/F32 tensor as it is.
enum class WeightFormat { Plain, Fp8, Int4 };
const char* weight_format_name(WeightFormat format);  // "bf16", "fp8", "int4"

// What a load asks for (kl_model_params.weight_format; values match kl_weight_format):
// the checkpoint's own format, everything plain (dequantized), or FP8 / INT4 (a plain
// checkpoint quantized on load).
enum class WeightRequest { AsStored = 0, Bf16 = 1, Fp8 = 2, Int4 = 3 };

constexpr int64_t kFp8BlockSize = 128;   // weight_block_size [128, 128]
constexpr int64_t kInt4GroupSize = 128;  // group_size

struct QuantizationConfig {
    WeightFormat format = WeightFormat::Plain;  // Plain: config.json has none
    // The linear modules kept plain (modules_to_not_convert / ignore), as the file names
    // them; the loader goes by the tensors themselves (core/weight_store.h).
    std::vector<std::string> not_converted;
};

// config.json's quantization_config (`origin` names the file in messages). Unsupported
// naming the key for a method, fmt, block or group size, bit width or scheme this runtime
// does not read; Format for a value of the wrong type.
QuantizationConfig quantization_config_from_json(const nlohmann::json& config,
                                                 const std::string& origin);
QuantizationConfig load_quantization_config(const std::string& dir);  // DIR/config.json

// The quantization_config object for `format` (not Plain), as `kimi quantize` writes it.
nlohmann::json quantization_config_json(WeightFormat format,
                                        const std::vector<std::string>& not_converted);

}  // namespace kl
