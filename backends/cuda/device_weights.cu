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

__global__ void round_to_bf16_kernel(float* values, size_t n) {
    for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<size_t>(gridDim.x) * blockDim.x)
        values[i] = __bfloat162float(__float2bfloat16(values[i]));
}

Weight allocate(size_t rows, size_t cols, size_t element_bytes) {
    Weight w;
    w.rows = rows;
    w.cols = cols;
    w.buffer = std::make_shared<DeviceBuffer>(rows * cols * element_bytes);
    w.data = w.buffer->as<void>();
    return w;
}

// Bytes of one row's values and scale rows of a weight in `code` with `cols` columns.
size_t row_bytes(WeightCode code, size_t cols) {
    switch (code) {
        case WeightCode::Fp8:
            return cols;
        case WeightCode::Int4:
            return (cols + 7) / 8 * sizeof(uint32_t);
        case WeightCode::Bf16:
            break;
    }
    return cols * sizeof(uint16_t);
}
size_t scale_rows(WeightCode code, size_t rows) {
    switch (code) {
        case WeightCode::Fp8:
            return (rows + kQuantBlock - 1) / kQuantBlock;
        case WeightCode::Int4:
            return rows;
        case WeightCode::Bf16:
            break;
    }
    return 0;
}

// A quantized weight's buffers for [rows, cols] (contents unset).
Weight allocate_quantized(WeightCode code, size_t rows, size_t cols) {
    Weight w;
    w.code = code;
    w.rows = rows;
    w.cols = cols;
    w.buffer = std::make_shared<DeviceBuffer>(rows * row_bytes(code, cols));
    w.scale_buffer = std::make_shared<DeviceBuffer>(scale_rows(code, rows) *
                                                    quant_scale_cols(cols) * sizeof(float));
    w.data = w.buffer->as<void>();
    w.scales = w.scale_buffer->as<float>();
    return w;
}

WeightCode code_of(WeightFormat format) {
    switch (format) {
        case WeightFormat::Fp8:
            return WeightCode::Fp8;
        case WeightFormat::Int4:
            return WeightCode::Int4;
        case WeightFormat::Plain:
            break;
    }
    return WeightCode::Bf16;
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
    return upload_values(values, rows, rows ? n / rows : 0, as_f32);
}

Weight upload_values(const std::vector<float>& values, size_t rows, size_t cols, bool as_f32) {
    const size_t n = values.size();
    Weight w = allocate(rows, cols, as_f32 ? sizeof(float) : sizeof(uint16_t));
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

const bf16* Weight::bf() const {
    if (code != WeightCode::Bf16) fail(Status::Internal, "a quantized weight read as bf16");
    return static_cast<const bf16*>(data);
}

bool device_reads(WeightFormat format, size_t cols) {
    switch (format) {
        case WeightFormat::Fp8:
            return cols % 16 == 0;
        case WeightFormat::Int4:
            return cols % 16 == 0;
        case WeightFormat::Plain:
            break;
    }
    return true;
}

Weight upload_quantized(const QuantizedTensor& q) {
    const size_t rows = static_cast<size_t>(q.rows), cols = static_cast<size_t>(q.cols);
    Weight w = allocate_quantized(code_of(q.format), rows, cols);
    if (q.data.size() != w.buffer->bytes() ||
        q.scales.size() * sizeof(float) != w.scale_buffer->bytes())
        fail(Status::Internal, "upload_quantized: sizes differ from the format's");
    check(cudaMemcpy(w.buffer->as<void>(), q.data.data(), q.data.size(), cudaMemcpyHostToDevice),
          "upload weight");
    check(cudaMemcpy(w.scale_buffer->as<void>(), q.scales.data(), q.scales.size() * sizeof(float),
                     cudaMemcpyHostToDevice),
          "upload weight scales");
    return w;
}

Weight quantize_device_values(const float* values, size_t rows, size_t cols, WeightFormat format) {
    if (format == WeightFormat::Plain) {
        Weight w = allocate(rows, cols, sizeof(uint16_t));
        cast_to_bf16(values, rows * cols, w.buffer->as<bf16>(), nullptr);
        return w;
    }
    Weight w = allocate_quantized(code_of(format), rows, cols);
    quantize_on_device(values, rows, cols, w.code, w.buffer->as<void>(),
                       w.scale_buffer->as<float>(), nullptr);
    return w;
}

Weight to_bf16(const Weight& q) {
    if (q.code == WeightCode::Bf16) return q;
    Weight w = allocate(q.rows, q.cols, sizeof(uint16_t));
    dequantize_to_bf16(q.matrix(), q.rows, q.cols, w.buffer->as<bf16>(), nullptr);
    return w;
}

bool stackable(const std::vector<const Weight*>& parts) {
    for (size_t i = 0; i < parts.size(); ++i) {
        if (parts[i]->code != parts.front()->code || parts[i]->cols != parts.front()->cols)
            return false;
        if (parts[i]->code == WeightCode::Fp8 && i + 1 < parts.size() &&
            parts[i]->rows % kQuantBlock != 0)
            return false;
    }
    return true;
}

// Buffers of views are their wholes': a part's own rows and scale rows are copied.
Weight random_values_f32(const TensorSpec& spec, uint64_t seed) {
    Weight w = random_weight(spec, seed, true);
    const size_t n = w.rows * w.cols;
    if (spec.dtype == DType::BF16 && n) {
        const unsigned blocks = static_cast<unsigned>(std::min<size_t>((n + 255) / 256, 8192));
        round_to_bf16_kernel<<<blocks, 256>>>(w.buffer->as<float>(), n);
        check_launch("round_to_bf16");
    }
    return w;
}

Weight stack_rows(const std::vector<const Weight*>& parts) {
    if (!stackable(parts)) fail(Status::Internal, "stack_rows: parts of different forms");
    const WeightCode code = parts.front()->code;
    const size_t cols = parts.front()->cols;
    size_t rows = 0;
    for (const Weight* p : parts) rows += p->rows;
    Weight w = code == WeightCode::Bf16 ? allocate(rows, cols, sizeof(uint16_t))
                                        : allocate_quantized(code, rows, cols);
    char* data = w.buffer->as<char>();
    char* scales = code == WeightCode::Bf16 ? nullptr : w.scale_buffer->as<char>();
    const size_t scale_row = quant_scale_cols(cols) * sizeof(float);
    for (const Weight* p : parts) {
        const size_t n = p->rows * row_bytes(code, cols);
        check(cudaMemcpy(data, p->data, n, cudaMemcpyDeviceToDevice), "stack weights");
        data += n;
        if (scales) {
            const size_t s = scale_rows(code, p->rows) * scale_row;
            check(cudaMemcpy(scales, p->scales, s, cudaMemcpyDeviceToDevice), "stack scales");
            scales += s;
        }
    }
    return w;
}

Weight row_view(const Weight& whole, size_t first, size_t rows) {
    if (whole.code == WeightCode::Fp8 && first % kQuantBlock != 0)
        fail(Status::Internal, "row_view: an FP8 view starts inside a 128-row block");
    Weight w = whole;
    w.data = static_cast<const char*>(whole.data) + first * row_bytes(whole.code, whole.cols);
    if (whole.scales)
        w.scales = whole.scales + scale_rows(whole.code, first) * quant_scale_cols(whole.cols);
    w.rows = rows;
    return w;
}

}  // namespace kl::cuda
