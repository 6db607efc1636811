// Dense GEMMs: y[n, out] (fp32, rows ldy apart) = x[n, in] (bf16) · W^T, W [out, in]
// row-major (PyTorch Linear) in any format of ops.h, fp32 accumulation. A few rows (decode)
// run as GEMVs that read W as it is stored. More rows run through cuBLASLt: bf16 W as it is;
// FP8 W on the FP8 tensor cores (W8A8: x quantized per token and 128 columns, cuBLASLt's
// 128x128 block scaling on W, both prepared by prepare_fp8/reserve_fp8_activations); INT4 W
// (and FP8 W of shapes the FP8 kernels do not take) expanded to bf16 in a scratch buffer
// first (reserve_dequantized). Heuristic choices are cached per shape.
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

    // Whether an FP8 W [out, in] runs on the FP8 tensor cores (the device has them, and
    // cuBLASLt wants both dimensions multiples of 16); others are expanded like INT4.
    static bool fp8_tensor_cores(size_t out, size_t in);
    // At load, before any graph capture (all allocate): the padded copy of an FP8 W's block
    // scales that cuBLASLt reads (each row of ceil(in/128) scales padded to 16 bytes) ...
    void prepare_fp8(const QMatrix& w, size_t out, size_t in);
    // ... room for x's FP8 codes and scales for up to `rows` rows of `in` columns, and for
    // products of up to `out` columns ...
    void reserve_fp8_activations(size_t rows, size_t in, size_t out);
    // ... and for the bf16 values of the largest expanded W.
    void reserve_dequantized(size_t values);
    // Whether run() with these arguments takes the FP8 tensor cores (W prepared, room
    // reserved, both dimensions large enough to gain from it, cuBLASLt has algorithms for the
    // shape); else an FP8 W is expanded.
    bool runs_fp8(const QMatrix& w, size_t n, size_t in, size_t out, size_t ldy);

private:
    struct Plan {
        cublasLtMatmulDesc_t op = nullptr;
        cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
        cublasLtMatmulAlgo_t algo{};
    };
    // code: Bf16 (bf16 W and x) or Fp8 (block-scaled e4m3 W and x, scale pointers set per
    // call; cuBLASLt picks an algorithm only once they are set, so the first call's are;
    // null where it has no FP8 algorithm for the shape).
    const Plan* plan(WeightCode code, size_t n, size_t in, size_t out, size_t ldy,
                     const float* w_scales, const float* x_scales);
    void run_fp8(const bf16* x, size_t n, size_t in, const QMatrix& w, size_t out, float* y,
                 size_t ldy, cudaStream_t stream);

    cublasLtHandle_t handle_ = nullptr;
    DeviceBuffer workspace_;
    // Scratch (calls are serialised per model): bf16 of an expanded W, FP8 x and its scales,
    // the product of x's last rows (run_fp8).
    DeviceBuffer dequantized_, x_codes_, x_scales_, tail_y_;
    std::map<const float*, DeviceBuffer> fp8_scales_;  // W's scales -> the padded copy
    std::mutex mutex_;  // the plan cache; sessions on several threads share a model
    std::map<std::tuple<int, size_t, size_t, size_t, size_t>, Plan> plans_;
};

}  // namespace kl::cuda
