#include <algorithm>
#include <string>

#include "gemm.h"

namespace kl::cuda {
namespace {

constexpr size_t kWorkspaceBytes = 32u << 20;
// cuBLASLt 13.0's FP8 block scaling has no algorithm for x of 5, 13, 14 or 21 rows and has
// them for 40, 64 and 1100 (H200): x runs in multiples of this many rows, the rest as one
// such group padded with zero rows.
constexpr size_t kFp8RowGroup = 4;
// W8A8 pays a pass over x and a scale per 128 x 128 block: below this many columns in or out
// it was slower than expanding W (gemm_bench, H200, 4096 rows: kv_a 2304 -> 576 0.038 vs
// 0.023 ms, the shared expert's 2304 -> 1024 0.040 vs 0.035 ms); from it on, 1.0-1.4x faster
// than bf16 (q/k/v 0.091 vs 0.108 ms, the dense MLP's gate 0.175 vs 0.238 ms).
constexpr size_t kFp8MinDim = 2048;

void check_lt(cublasStatus_t status, const char* what) {
    if (status != CUBLAS_STATUS_SUCCESS)
        fail(Status::Device, std::string("cuBLASLt error in ") + what + ": status " +
                                 std::to_string(static_cast<int>(status)));
}

void destroy(cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
             cublasLtMatrixLayout_t c) {
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (op) cublasLtMatmulDescDestroy(op);
}

}  // namespace

Gemm::Gemm() : workspace_(kWorkspaceBytes) {
    check_lt(cublasLtCreate(&handle_), "cublasLtCreate");
}

Gemm::~Gemm() {
    for (auto& entry : plans_)
        destroy(entry.second.op, entry.second.a, entry.second.b, entry.second.c);
    if (handle_) cublasLtDestroy(handle_);
}

// Column-major view: Y^T [out, n] (columns ldy apart) = W (col-major [in, out], transposed)
// · X^T [in, n]. FP8 (docs/design/kernels.md, "FP8 prefill"): W is operand A with
// BLK128x128 scales (row-major [ceil(out/128)][ceil(in/128)], rows padded to 4 floats), x is
// operand B with VEC128 scales (group-major [ceil(in/128)][n]). A shape cuBLASLt has no FP8
// algorithm for is remembered as such (null); for bf16 it is an error.
const Gemm::Plan* Gemm::plan(WeightCode code, size_t n, size_t in, size_t out, size_t ldy,
                             const float* w_scales, const float* x_scales) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto key = std::make_tuple(static_cast<int>(code), n, in, out, ldy);
    auto found = plans_.find(key);
    if (found != plans_.end()) return found->second.op ? &found->second : nullptr;
    const bool fp8 = code == WeightCode::Fp8;
    const cudaDataType_t operand = fp8 ? CUDA_R_8F_E4M3 : CUDA_R_16BF;
    Plan p;
    auto set = [&](cublasLtMatmulDescAttributes_t attribute, const void* value, size_t bytes,
                   const char* what) {
        check_lt(cublasLtMatmulDescSetAttribute(p.op, attribute, value, bytes), what);
    };
    check_lt(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate");
    const cublasOperation_t transpose = CUBLAS_OP_T;
    set(CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(transpose), "set TRANSA");
    if (fp8) {
        const int32_t w_mode = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F;
        const int32_t x_mode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
        set(CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &w_mode, sizeof(w_mode), "set A_SCALE_MODE");
        set(CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &x_mode, sizeof(x_mode), "set B_SCALE_MODE");
        set(CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &w_scales, sizeof(w_scales),
            "set A_SCALE_POINTER");
        set(CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &x_scales, sizeof(x_scales),
            "set B_SCALE_POINTER");
    }
    check_lt(cublasLtMatrixLayoutCreate(&p.a, operand, in, out, in), "layout A");
    check_lt(cublasLtMatrixLayoutCreate(&p.b, operand, in, n, in), "layout B");
    check_lt(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, out, n, ldy), "layout C");
    cublasLtMatmulPreference_t preference;
    check_lt(cublasLtMatmulPreferenceCreate(&preference), "PreferenceCreate");
    const size_t workspace = kWorkspaceBytes;
    check_lt(
        cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                             &workspace, sizeof(workspace)),
        "set workspace");
    cublasLtMatmulHeuristicResult_t result{};
    int found_algos = 0;
    const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
        handle_, p.op, p.a, p.b, p.c, p.c, preference, 1, &result, &found_algos);
    cublasLtMatmulPreferenceDestroy(preference);
    if (status != CUBLAS_STATUS_SUCCESS || found_algos == 0) {
        destroy(p.op, p.a, p.b, p.c);
        if (fp8 && (status == CUBLAS_STATUS_NOT_SUPPORTED || found_algos == 0)) {
            plans_.emplace(key, Plan{});
            return nullptr;
        }
        check_lt(status, "AlgoGetHeuristic");
        fail(Status::Device, "cuBLASLt has no algorithm for [" + std::to_string(n) + "x" +
                                 std::to_string(in) + "] x [" + std::to_string(in) + "x" +
                                 std::to_string(out) + "]");
    }
    p.algo = result.algo;
    return &plans_.emplace(key, p).first->second;
}

bool Gemm::fp8_tensor_cores(size_t out, size_t in) {
    return out % 16 == 0 && in % 16 == 0 && fp8_tensor_cores_available();
}

void Gemm::prepare_fp8(const QMatrix& w, size_t out, size_t in) {
    if (w.code != WeightCode::Fp8 || !fp8_tensor_cores(out, in) || fp8_scales_.count(w.scales))
        return;
    const size_t rows = quant_scale_cols(out), cols = quant_scale_cols(in);
    const size_t padded = (cols + 3) / 4 * 4;
    DeviceBuffer copy(rows * padded * sizeof(float));
    check(cudaMemset(copy.as<void>(), 0, copy.bytes()), "cudaMemset");
    check(cudaMemcpy2D(copy.as<void>(), padded * sizeof(float), w.scales, cols * sizeof(float),
                       cols * sizeof(float), rows, cudaMemcpyDeviceToDevice),
          "cudaMemcpy2D (FP8 scales)");
    fp8_scales_.emplace(w.scales, std::move(copy));
}

void Gemm::reserve_fp8_activations(size_t rows, size_t in, size_t out) {
    rows = std::max(rows, kFp8RowGroup);
    if (rows * in > x_codes_.bytes()) x_codes_ = DeviceBuffer(rows * in);
    const size_t scales = rows * quant_scale_cols(in) * sizeof(float);
    if (scales > x_scales_.bytes()) x_scales_ = DeviceBuffer(scales);
    const size_t tail = kFp8RowGroup * out * sizeof(float);
    if (tail > tail_y_.bytes()) tail_y_ = DeviceBuffer(tail);
}

void Gemm::reserve_dequantized(size_t values) {
    if (values * sizeof(bf16) > dequantized_.bytes())
        dequantized_ = DeviceBuffer(values * sizeof(bf16));
}

bool Gemm::runs_fp8(const QMatrix& w, size_t n, size_t in, size_t out, size_t ldy) {
    if (w.code != WeightCode::Fp8 || gemv_supported(n, in, w.code) || !fp8_tensor_cores(out, in) ||
        in < kFp8MinDim || out < kFp8MinDim)
        return false;
    const auto padded = fp8_scales_.find(w.scales);
    if (padded == fp8_scales_.end()) return false;
    const size_t rows = std::max(n, kFp8RowGroup);
    if (rows * in > x_codes_.bytes() ||
        rows * quant_scale_cols(in) * sizeof(float) > x_scales_.bytes() ||
        kFp8RowGroup * out * sizeof(float) > tail_y_.bytes())
        return false;
    const float* w_scales = padded->second.as<float>();
    const float* x_scales = x_scales_.as<float>();
    const size_t whole = n / kFp8RowGroup * kFp8RowGroup;
    return (whole == 0 || plan(WeightCode::Fp8, whole, in, out, ldy, w_scales, x_scales)) &&
           (whole == n || plan(WeightCode::Fp8, kFp8RowGroup, in, out, out, w_scales, x_scales));
}

void Gemm::run(const bf16* x, size_t n, size_t in, const QMatrix& w, size_t out, float* y,
               size_t ldy, cudaStream_t stream) {
    if (n == 0) return;
    if (gemv_supported(n, in, w.code)) {  // decode: bandwidth-bound; cuBLASLt's n = 1 is slower
        gemv(x, n, in, w, out, y, ldy, stream);
        return;
    }
    if (runs_fp8(w, n, in, out, ldy)) {
        run_fp8(x, n, in, w, out, y, ldy, stream);
        return;
    }
    const void* values = w.data;
    if (w.code != WeightCode::Bf16) {
        if (out * in * sizeof(bf16) > dequantized_.bytes())
            fail(Status::Internal, "Gemm: no room reserved for a quantized weight's values");
        dequantize_to_bf16(w, out, in, dequantized_.as<bf16>(), stream);
        values = dequantized_.as<void>();
    }
    const Plan* p = plan(WeightCode::Bf16, n, in, out, ldy, nullptr, nullptr);
    const float alpha = 1.0f, beta = 0.0f;
    check_lt(cublasLtMatmul(handle_, p->op, &alpha, values, p->a, x, p->b, &beta, y, p->c, y, p->c,
                            &p->algo, workspace_.as<void>(), workspace_.bytes(), stream),
             "cublasLtMatmul");
}

// runs_fp8() has checked the shapes, the buffers and that both plans exist.
void Gemm::run_fp8(const bf16* x, size_t n, size_t in, const QMatrix& w, size_t out, float* y,
                   size_t ldy, cudaStream_t stream) {
    const float* w_scales = fp8_scales_.find(w.scales)->second.as<float>();
    uint8_t* codes = x_codes_.as<uint8_t>();
    float* x_scales = x_scales_.as<float>();
    const float alpha = 1.0f, beta = 0.0f;
    // One product: `rows` rows of quantized x into y (rows ld apart).
    auto product = [&](size_t rows, float* dst, size_t ld) {
        const Plan* p = plan(WeightCode::Fp8, rows, in, out, ld, w_scales, x_scales);
        check_lt(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                                                &w_scales, sizeof(w_scales)),
                 "set A_SCALE_POINTER");
        check_lt(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                                                &x_scales, sizeof(x_scales)),
                 "set B_SCALE_POINTER");
        check_lt(
            cublasLtMatmul(handle_, p->op, &alpha, w.data, p->a, codes, p->b, &beta, dst, p->c, dst,
                           p->c, &p->algo, workspace_.as<void>(), workspace_.bytes(), stream),
            "cublasLtMatmul (FP8)");
    };
    const size_t whole = n / kFp8RowGroup * kFp8RowGroup, tail = n - whole;
    if (whole) {
        quantize_activations_fp8(x, whole, in, codes, x_scales, 1, whole, stream);
        product(whole, y, ldy);
    }
    if (tail) {  // zero rows after the tail's (codes 0, scales 0), then its rows into y
        check(cudaMemsetAsync(codes, 0, kFp8RowGroup * in, stream), "cudaMemsetAsync");
        check(cudaMemsetAsync(x_scales, 0, kFp8RowGroup * quant_scale_cols(in) * sizeof(float),
                              stream),
              "cudaMemsetAsync");
        quantize_activations_fp8(x + whole * in, tail, in, codes, x_scales, 1, kFp8RowGroup,
                                 stream);
        product(kFp8RowGroup, tail_y_.as<float>(), out);
        check(cudaMemcpy2DAsync(y + whole * ldy, ldy * sizeof(float), tail_y_.as<float>(),
                                out * sizeof(float), out * sizeof(float), tail,
                                cudaMemcpyDeviceToDevice, stream),
              "cudaMemcpy2DAsync (FP8 tail rows)");
    }
}

}  // namespace kl::cuda
