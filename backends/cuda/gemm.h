// Dense GEMMs: y[n, out] (fp32, rows ldy apart) = x[n, in] (bf16) · W^T, W [out, in]
// row-major (PyTorch Linear) in any format of ops.h, fp32 accumulation. A few rows (decode)
// run as GEMVs that read W as it is stored; more rows through cuBLASLt on bf16 W (a
// quantized W is first expanded into the scratch buffer: reserve_dequantized). Heuristic
// choices are cached per shape.
#pragma once

#include <cublasLt.h>

#include <map>
#include <mutex>
#include <tuple>

#include "cuda_util.h"
#include "ops.h"

namespace kl::cuda {

class Gemm {
public:
    Gemm();
    ~Gemm();
    Gemm(const Gemm&) = delete;
    Gemm& operator=(const Gemm&) = delete;

    void run(const bf16* x, size_t n, size_t in, const QMatrix& w, size_t out, float* y, size_t ldy,
             cudaStream_t stream);
    // Room for the bf16 values of the largest quantized W run with more than a few rows
    // (allocated before any graph capture, which the expansion then joins).
    void reserve_dequantized(size_t values);

private:
    struct Plan {
        cublasLtMatmulDesc_t op = nullptr;
        cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
        cublasLtMatmulAlgo_t algo{};
    };
    const Plan& plan(size_t n, size_t in, size_t out, size_t ldy);

    cublasLtHandle_t handle_ = nullptr;
    DeviceBuffer workspace_;
    DeviceBuffer dequantized_;             // bf16 of a quantized W (calls are serialised per model)
    std::mutex mutex_;  // the plan cache; sessions on several threads share a model
    std::map<std::tuple<size_t, size_t, size_t, size_t>, Plan> plans_;
};

}  // namespace kl::cuda
