// Weights in device memory: one tensor (bf16, or fp32 where model.md says so), a view of
// rows of another, and the builders (from a checkpoint tensor, from random_init.h values,
// by stacking rows so that several projections of one input run as one GEMV).
#pragma once

#include <memory>
#include <vector>

#include "core/random_init.h"
#include "core/safetensors.h"
#include "core/weights.h"
#include "cuda_util.h"
#include "ops.h"

namespace kl::cuda {

struct Weight {
    std::shared_ptr<DeviceBuffer> buffer;  // shared by the views of one stacked tensor
    const void* data = nullptr;
    size_t rows = 0, cols = 0;
    const bf16* bf() const { return static_cast<const bf16*>(data); }
    const float* f32() const { return static_cast<const float*>(data); }
};

// A checkpoint tensor, converted to bf16 (or fp32) on the host and uploaded.
Weight upload_weight(const TensorView& view, bool as_f32);
// The deterministic random values of core/random_init.h, generated on the device.
Weight random_weight(const TensorSpec& spec, uint64_t seed, bool as_f32);
// n values of core/random_init.h for (seed, key, init) into f32, or as bf16 into bf when
// f32 is null, enqueued on `stream` (random weights, synthetic session state).
void fill_random(uint64_t seed, uint64_t key, const RandomInit& init, size_t n, float* f32,
                 bf16* bf, cudaStream_t stream);
// bf16 tensors with equal column counts stacked by rows into one new buffer, in order.
Weight stack_rows(const std::vector<const Weight*>& parts);
// Rows [first, first + rows) of a bf16 weight (shares its buffer).
Weight row_view(const Weight& whole, size_t first, size_t rows);

}  // namespace kl::cuda
