#include <algorithm>
#include <string>

#include "gemm.h"

namespace kl::cuda {
namespace {

constexpr size_t kWorkspaceBytes = 32u << 20;

void check_lt(cublasStatus_t status, const char* what) {
    if (status != CUBLAS_STATUS_SUCCESS)
        fail(Status::Device, std::string("cuBLASLt error in ") + what + ": status " +
                                 std::to_string(static_cast<int>(status)));
}

}  // namespace

Gemm::Gemm() : workspace_(kWorkspaceBytes) {
    check_lt(cublasLtCreate(&handle_), "cublasLtCreate");
}

Gemm::~Gemm() {
    for (auto& entry : plans_) {
        cublasLtMatrixLayoutDestroy(entry.second.a);
        cublasLtMatrixLayoutDestroy(entry.second.b);
        cublasLtMatrixLayoutDestroy(entry.second.c);
        cublasLtMatmulDescDestroy(entry.second.op);
    }
    if (handle_) cublasLtDestroy(handle_);
}

// Column-major view: Y^T [out, n] (columns ldy apart) = W (col-major [in, out], transposed)
// · X^T [in, n].
const Gemm::Plan& Gemm::plan(size_t n, size_t in, size_t out, size_t ldy) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto key = std::make_tuple(n, in, out, ldy);
    auto found = plans_.find(key);
    if (found != plans_.end()) return found->second;
    Plan p;
    check_lt(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate");
    const cublasOperation_t transpose = CUBLAS_OP_T;
    check_lt(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &transpose,
                                            sizeof(transpose)),
             "set TRANSA");
    check_lt(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, in, out, in), "layout A");
    check_lt(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, in, n, in), "layout B");
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
    check_lt(status, "AlgoGetHeuristic");
    if (found_algos == 0)
        fail(Status::Device, "cuBLASLt has no algorithm for [" + std::to_string(n) + "x" +
                                 std::to_string(in) + "] x [" + std::to_string(in) + "x" +
                                 std::to_string(out) + "]");
    p.algo = result.algo;
    return plans_.emplace(key, p).first->second;
}

void Gemm::reserve_dequantized(size_t values) {
    if (values * sizeof(bf16) > dequantized_.bytes())
        dequantized_ = DeviceBuffer(values * sizeof(bf16));
}

void Gemm::run(const bf16* x, size_t n, size_t in, const QMatrix& w, size_t out, float* y,
               size_t ldy, cudaStream_t stream) {
    if (n == 0) return;
    if (gemv_supported(n, in, w.code)) {  // decode: bandwidth-bound; cuBLASLt's n = 1 is slower
        gemv(x, n, in, w, out, y, ldy, stream);
        return;
    }
    const void* values = w.data;
    if (w.code != WeightCode::Bf16) {
        if (out * in * sizeof(bf16) > dequantized_.bytes())
            fail(Status::Internal, "Gemm: no room reserved for a quantized weight's values");
        dequantize_to_bf16(w, out, in, dequantized_.as<bf16>(), stream);
        values = dequantized_.as<void>();
    }
    const Plan& p = plan(n, in, out, ldy);
    const float alpha = 1.0f, beta = 0.0f;
    check_lt(cublasLtMatmul(handle_, p.op, &alpha, values, p.a, x, p.b, &beta, y, p.c, y, p.c,
                            &p.algo, workspace_.as<void>(), workspace_.bytes(), stream),
             "cublasLtMatmul");
}

}  // namespace kl::cuda
