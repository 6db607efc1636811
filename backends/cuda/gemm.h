// Dense GEMMs through cuBLASLt: y[n, out] (fp32) = x[n, in] (bf16) · W^T, W bf16 [out, in]
// row-major (PyTorch Linear), fp32 accumulation. Heuristic choices are cached per shape.
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

    void run(const bf16* x, size_t n, size_t in, const bf16* w, size_t out, float* y,
             cudaStream_t stream);

private:
    struct Plan {
        cublasLtMatmulDesc_t op = nullptr;
        cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
        cublasLtMatmulAlgo_t algo{};
    };
    const Plan& plan(size_t n, size_t in, size_t out);

    cublasLtHandle_t handle_ = nullptr;
    DeviceBuffer workspace_;
    std::mutex mutex_;  // the plan cache; sessions on several threads share a model
    std::map<std::tuple<size_t, size_t, size_t>, Plan> plans_;
};

}  // namespace kl::cuda
