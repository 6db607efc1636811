// Weights in device memory: one tensor (bf16, fp32 where model.md says so, or a linear
// weight in a quantized format of ops.h: FP8 codes or packed INT4 plus fp32 scales), a view
// of rows of another, and the builders (from a checkpoint tensor, from random_init.h
// values, from a quantized tensor, by stacking rows so that several projections of one
// input run as one GEMV).
#pragma once

#include <memory>
#include <vector>

#include "core/quantize.h"
#include "core/random_init.h"
#include "core/safetensors.h"
#include "core/weights.h"
#include "cuda_util.h"
#include "ops.h"

namespace kl::cuda {

struct Weight {
    std::shared_ptr<DeviceBuffer> buffer;  // shared by the views of one stacked tensor
    std::shared_ptr<DeviceBuffer> scale_buffer;  // quantized: the scales
    const void* data = nullptr;
    const float* scales = nullptr;
    WeightCode code = WeightCode::Bf16;  // Bf16 also for the fp32 tensors (f32())
    size_t rows = 0, cols = 0;
    const bf16* bf() const;  // checks that the weight is bf16
    const float* f32() const { return static_cast<const float*>(data); }
    QMatrix matrix() const { return QMatrix{code, data, scales}; }
    size_t bytes() const {  // device bytes of the whole buffers (views: of what they share)
        return (buffer ? buffer->bytes() : 0) + (scale_buffer ? scale_buffer->bytes() : 0);
    }
};

// Whether the kernels read a [rows, cols] weight in `format` as it is (decode GEMVs load 16
// values per lane: FP8 16 bytes, INT4 two words), rather than as bf16 of its values.
bool device_reads(WeightFormat format, size_t cols);
// The quantized tensor's codes and scales uploaded as they are (device_reads(q.format)).
Weight upload_quantized(const QuantizedTensor& q);
// fp32 values on the host [rows, cols] uploaded as bf16 (or fp32).
Weight upload_values(const std::vector<float>& values, size_t rows, size_t cols, bool as_f32);
// fp32 values on the device [rows, cols] quantized there (exactly as core/quantize.cpp), or
// rounded to bf16 for WeightFormat::Plain.
Weight quantize_device_values(const float* values, size_t rows, size_t cols, WeightFormat format);
// A quantized weight as bf16 of its values (a bf16 weight: itself).
Weight to_bf16(const Weight& w);

// A checkpoint tensor, converted to bf16 (or fp32) on the host and uploaded.
Weight upload_weight(const TensorView& view, bool as_f32);
// The deterministic random values of core/random_init.h, generated on the device.
Weight random_weight(const TensorSpec& spec, uint64_t seed, bool as_f32);
// The random values of `spec` in fp32, rounded to bf16 where its dtype is bf16: the values
// core/weights.cpp's random_tensor_source (and make_tiny_model's files) hold.
Weight random_values_f32(const TensorSpec& spec, uint64_t seed);
// n values of core/random_init.h for (seed, key, init) into f32, or as bf16 into bf when
// f32 is null, enqueued on `stream` (random weights, synthetic session state).
void fill_random(uint64_t seed, uint64_t key, const RandomInit& init, size_t n, float* f32,
                 bf16* bf, cudaStream_t stream);
// Weights of one code with equal column counts stacked by rows into one new buffer, in
// order (FP8: every part but the last a whole number of 128-row blocks: stackable()).
bool stackable(const std::vector<const Weight*>& parts);
Weight stack_rows(const std::vector<const Weight*>& parts);
// Rows [first, first + rows) of a weight (shares its buffers; FP8: first a multiple of 128).
Weight row_view(const Weight& whole, size_t first, size_t rows);

}  // namespace kl::cuda
