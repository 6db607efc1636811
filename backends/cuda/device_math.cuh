// Scalar activations of the model (docs/design/model.md) for device code, one definition each.
#pragma once

namespace kl::cuda {
namespace {

__device__ __forceinline__ float silu(float x) {
    return x / (1.0f + expf(-x));
}
__device__ __forceinline__ float sigmoid(float x) {
    return 1.0f / (1.0f + expf(-x));
}
// log(1 + e^x), exact enough and finite for large x.
__device__ __forceinline__ float softplus(float x) {
    return x > 20.0f ? x : log1pf(expf(x));
}

}  // namespace
}  // namespace kl::cuda
