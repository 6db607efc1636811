// Where a backend gets each tensor of the layout, in whatever form the checkpoint stores it
// (plain, FP8 block-scaled, INT4 pack-quantized: core/quant_config.h) and in the form the
// load asked for (WeightRequest): built once per load, after every stored tensor has been
// checked against the layout (docs/design/model.md, "Quantized weights").
//
// A backend asks, per tensor, for
//  - dequantized(): fp32 values, exactly dequantize(quantized()) for a tensor that loads
//    quantized (what the CPU backend runs, the reference for GPU kernels), or
//  - quantized(): the stored form (FP8 codes + fp32 block scales, packed INT4 + fp32 group
//    scales) when format() is Fp8 or Int4 (what a GPU backend uploads as it is).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "quant_config.h"
#include "quantize.h"
#include "safetensors.h"
#include "weights.h"

namespace kl {

// Whether a plain tensor is quantized when a load asks for FP8 or INT4 (and what `kimi
// quantize` quantizes): linear weights except those measured to cost too much accuracy
// (docs/perf/quantized-accuracy.md).
bool quantized_by_default(const TensorSpec& spec);

// The checkpoint's tensors that hold `spec` in each format: X.weight (plain or F8_E4M3),
// X.weight_scale_inv (FP8), X.weight_packed / X.weight_scale / X.weight_shape (INT4).
std::string module_of(const TensorSpec& spec);  // X: the name without ".weight"

class WeightStore {
public:
    // Checks every tensor of the layout in the checkpoint (stored as `stored` says): names,
    // dtypes, shapes, scale shapes and values. Format naming the tensor for a missing or
    // malformed one, Unsupported for a variant this runtime does not read. The checkpoint
    // must outlive the store.
    static std::unique_ptr<WeightStore> open(const ModelLayout& layout,
                                             const Checkpoint& checkpoint,
                                             const QuantizationConfig& stored,
                                             WeightRequest request);
    // The deterministic random weights of core/random_init.h (all plain), in `request`'s form.
    static std::unique_ptr<WeightStore> random(const ModelLayout& layout, uint64_t seed,
                                               WeightRequest request);

    // The form `spec` loads in: Plain, or the quantized format quantized() gives.
    WeightFormat format(const TensorSpec& spec) const;
    void dequantized(const TensorSpec& spec, float* out) const;  // out[spec.numel()]
    QuantizedTensor quantized(const TensorSpec& spec) const;     // format(spec) != Plain
    // dequantized() as a TensorSource (core/weights.h).
    TensorSource source() const;
    // The seed of random weights (WeightStore::random), so that a GPU backend can make them
    // on the device: dequantized() of a random store is core/random_init.h's values for it,
    // quantized() their kl::quantize form. Empty for a checkpoint.
    std::optional<uint64_t> random_seed() const { return random_seed_; }

    // Every tensor loads plain and the checkpoint stores every tensor plain (a backend
    // that reads the checkpoint's TensorViews directly gets the right values).
    bool all_plain() const { return all_plain_; }
    // The checkpoint tensors that hold `spec` (none for random weights), for the
    // fingerprint and the unused-tensor check.
    std::vector<const TensorView*> views(const TensorSpec& spec) const;
    // The linear modules (module_of) that load plain: modules_to_not_convert / ignore.
    std::vector<std::string> plain_linear_modules(const ModelLayout& layout) const;

private:
    struct Stored {
        WeightFormat stored = WeightFormat::Plain;  // how the checkpoint holds it
        WeightFormat loaded = WeightFormat::Plain;  // how it loads
        const TensorView* weight = nullptr;         // plain values or F8_E4M3 codes
        const TensorView* packed = nullptr;         // INT4
        const TensorView* scale = nullptr;          // FP8 weight_scale_inv, INT4 weight_scale
        const TensorView* shape = nullptr;          // INT4 weight_shape
    };
    WeightStore() = default;
    const Stored& stored(const TensorSpec& spec) const;
    void stored_f32(const TensorSpec& spec, const Stored& s, float* out) const;  // as stored
    QuantizedTensor stored_quantized(const TensorSpec& spec, const Stored& s) const;
    void choose_loaded_formats(const ModelLayout& layout, WeightRequest request);

    std::unordered_map<std::string, Stored> tensors_;
    TensorSource random_;  // set for random weights
    std::optional<uint64_t> random_seed_;
    bool all_plain_ = true;
};

}  // namespace kl
