// Dynamic FP8 activations for W8A8 prefill (docs/design/kernels.md, "FP8 prefill"): each
// token's row is cut into groups of 128 columns, the group's largest magnitude maps to e4m3's
// largest finite value (448), and the codes are rounded to nearest with saturation, as
// kl::quantize rounds FP8 weights. One warp
// per (token, group), 4 columns per lane, so a group is one 256-byte load and one shuffle
// reduction; no state, so any stream or graph can run it.
#include <cuda_fp8.h>

#include <climits>
#include <string>

#include "cuda_util.h"
#include "ops.h"

namespace kl::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr float kE4m3Max = 448.0f;

__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    quantize_activations_kernel(const bf16* x, int n, int in, uint8_t* codes, float* scales,
                                size_t token_stride, size_t group_stride) {
    const int groups = (in + kQuantBlock - 1) / kQuantBlock;
    const long long unit = static_cast<long long>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
    if (unit >= static_cast<long long>(n) * groups) return;
    const int t = static_cast<int>(unit / groups), g = static_cast<int>(unit % groups);
    const int lane = threadIdx.x & 31, col = g * kQuantBlock + lane * 4;
    const bf16* row = x + size_t(t) * in;
    float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (col < in) {  // in % 4 == 0: a lane's 4 columns are all in or all out
        const uint2 raw = *reinterpret_cast<const uint2*>(row + col);
        const __nv_bfloat162 lo = *reinterpret_cast<const __nv_bfloat162*>(&raw.x);
        const __nv_bfloat162 hi = *reinterpret_cast<const __nv_bfloat162*>(&raw.y);
        v[0] = __low2float(lo), v[1] = __high2float(lo), v[2] = __low2float(hi),
        v[3] = __high2float(hi);
    }
    float amax = fmaxf(fmaxf(fabsf(v[0]), fabsf(v[1])), fmaxf(fabsf(v[2]), fabsf(v[3])));
    for (int offset = 16; offset > 0; offset >>= 1)
        amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
    // kl::quantize's rule for a 1 x 128 block (core/quantize.h), so the host can check it
    // bit for bit: scale = amax / 448 (1 for an all-zero group), code = e4m3(x / scale).
    const float scale = amax > 0.0f ? amax / kE4m3Max : 1.0f;
    if (lane == 0) scales[size_t(t) * token_stride + size_t(g) * group_stride] = scale;
    if (col < in) {
        const __nv_fp8x2_storage_t a = __nv_cvt_float2_to_fp8x2(
            make_float2(v[0] / scale, v[1] / scale), __NV_SATFINITE, __NV_E4M3);
        const __nv_fp8x2_storage_t b = __nv_cvt_float2_to_fp8x2(
            make_float2(v[2] / scale, v[3] / scale), __NV_SATFINITE, __NV_E4M3);
        *reinterpret_cast<uint32_t*>(codes + size_t(t) * in + col) =
            uint32_t(a) | (uint32_t(b) << 16);
    }
}

}  // namespace

bool fp8_tensor_cores_available() {
    return compute_capability() >= 89;
}

void quantize_activations_fp8(const bf16* x, size_t n, size_t in, uint8_t* codes, float* scales,
                              size_t token_stride, size_t group_stride, cudaStream_t stream) {
    if (n == 0 || in == 0) return;
    if (in % 16 != 0)
        fail(Status::InvalidArgument,
             "quantize_activations_fp8: in (" + std::to_string(in) + ") must be a multiple of 16");
    if (n > size_t(INT_MAX) || in > size_t(INT_MAX))
        fail(Status::Unsupported, "quantize_activations_fp8: a dimension exceeds the int range");
    const size_t units = n * quant_scale_cols(in);
    const size_t blocks = (units + kWarpsPerBlock - 1) / kWarpsPerBlock;
    if (blocks > size_t(INT_MAX))
        fail(Status::Unsupported, "quantize_activations_fp8: too many rows");
    quantize_activations_kernel<<<static_cast<unsigned>(blocks), kWarpsPerBlock * 32, 0, stream>>>(
        x, static_cast<int>(n), static_cast<int>(in), codes, scales, token_stride, group_stride);
    check_launch("quantize_activations_fp8");
}

}  // namespace kl::cuda
