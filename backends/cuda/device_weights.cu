#include "device_weights.h"

#include <algorithm>

namespace kl::cuda {
namespace {

__global__ void random_fill_kernel(uint64_t seed, uint64_t key, RandomInit init, size_t n,
                                   bf16* out_bf16, float* out_f32) {
    for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<size_t>(gridDim.x) * blockDim.x) {
        const float value = random_value(seed, key, i, init);
        if (out_f32)
            out_f32[i] = value;
        else
            out_bf16[i] = __float2bfloat16(value);
    }
}

Weight allocate(size_t rows, size_t cols, size_t element_bytes) {
    Weight w;
    w.rows = rows;
    w.cols = cols;
    w.buffer = std::make_shared<DeviceBuffer>(rows * cols * element_bytes);
    w.data = w.buffer->as<void>();
    return w;
}

}  // namespace

void fill_random(uint64_t seed, uint64_t key, const RandomInit& init, size_t n, float* f32,
                 bf16* bf, cudaStream_t stream) {
    if (n == 0) return;
    const unsigned blocks = static_cast<unsigned>(std::min<size_t>((n + 255) / 256, 8192));
    random_fill_kernel<<<blocks, 256, 0, stream>>>(seed, key, init, n, bf, f32);
    check_launch("random_fill");
}

Weight upload_weight(const TensorView& view, bool as_f32) {
    const size_t n = static_cast<size_t>(view.numel());
    std::vector<float> values(n);
    view.to_f32(values.data());
    const size_t rows = view.shape.empty() ? 1 : static_cast<size_t>(view.shape[0]);
    Weight w = allocate(rows, rows ? n / rows : 0, as_f32 ? sizeof(float) : sizeof(uint16_t));
    if (as_f32) {
        check(cudaMemcpy(w.buffer->as<void>(), values.data(), n * sizeof(float),
                         cudaMemcpyHostToDevice),
              "upload weight");
    } else {
        std::vector<uint16_t> bits(n);
        for (size_t i = 0; i < n; ++i) bits[i] = f32_to_bf16(values[i]);
        check(cudaMemcpy(w.buffer->as<void>(), bits.data(), n * sizeof(uint16_t),
                         cudaMemcpyHostToDevice),
              "upload weight");
    }
    return w;
}

Weight random_weight(const TensorSpec& spec, uint64_t seed, bool as_f32) {
    size_t n = 1;
    for (int64_t d : spec.shape) n *= static_cast<size_t>(d);
    const size_t rows = spec.shape.empty() ? 1 : static_cast<size_t>(spec.shape[0]);
    Weight w = allocate(rows, rows ? n / rows : 0, as_f32 ? sizeof(float) : sizeof(uint16_t));
    const RandomInit init =
        random_init_for(spec.name, spec.shape.size() >= 2 ? spec.shape.back() : 1);
    fill_random(seed, random_tensor_key(spec.name), init, n,
                as_f32 ? w.buffer->as<float>() : nullptr, as_f32 ? nullptr : w.buffer->as<bf16>(),
                nullptr);
    return w;
}

Weight stack_rows(const std::vector<const Weight*>& parts) {
    size_t rows = 0;
    for (const Weight* p : parts) {
        if (p->cols != parts.front()->cols)
            fail(Status::Internal, "stack_rows: column counts differ");
        rows += p->rows;
    }
    Weight w = allocate(rows, parts.front()->cols, sizeof(uint16_t));
    size_t at = 0;
    for (const Weight* p : parts) {
        const size_t n = p->rows * p->cols;
        check(cudaMemcpy(w.buffer->as<bf16>() + at, p->data, n * sizeof(uint16_t),
                         cudaMemcpyDeviceToDevice),
              "stack weights");
        at += n;
    }
    return w;
}

Weight row_view(const Weight& whole, size_t first, size_t rows) {
    Weight w = whole;
    w.data = whole.bf() + first * whole.cols;
    w.rows = rows;
    return w;
}

}  // namespace kl::cuda
