// KDA on the GPU, first version: short conv, L2 norms, gates, the recurrence (prefill and
// decode), the gated RMSNorm. The chunked tensor-core prefill and the fused decode step
// replace the recurrence kernel in the performance work (docs/design/kernels.md).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "cuda_util.h"
#include "device_math.cuh"
#include "ops.h"
#include "reduce.cuh"

namespace kl::cuda {
namespace {

constexpr int kThreads = 256;


// One thread per (token, channel): y[t, c] = silu(sum_j w[c, j] in[t - h + j, c]), where
// rows before the first token come from the state (the last h = kernel - 1 inputs of the
// previous call, oldest first). Token-parallel: a prefill piece has thousands of tokens.
__global__ void short_conv_kernel(const float* x, size_t T, size_t channels, const bf16* weight,
                                  int kernel, const float* state, float* y) {
    const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (i >= T * channels) return;
    const size_t t = i / channels, c = i % channels;
    const long h = kernel - 1;
    float acc = 0.0f;
    for (int j = 0; j < kernel; ++j) {
        const long src = static_cast<long>(t) - h + j;
        const float in = src >= 0 ? x[src * channels + c] : state[(h + src) * channels + c];
        acc += __bfloat162float(weight[c * kernel + j]) * in;
    }
    y[i] = silu(acc);
}

// After the conv has read it: the state becomes the last h inputs (from the old state when
// T < h; ascending rows read only rows not yet overwritten).
__global__ void conv_state_shift_kernel(const float* x, size_t T, size_t channels, int kernel,
                                        float* state) {
    const size_t c = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (c >= channels) return;
    const long h = kernel - 1;
    for (long r = 0; r < h; ++r) {
        const long src = static_cast<long>(T) - h + r;
        state[r * channels + c] =
            src >= 0 ? x[src * channels + c] : state[(r + static_cast<long>(T)) * channels + c];
    }
}

__global__ void l2_norm_kernel(float* x, size_t dim) {
    float* v = x + blockIdx.x * dim;
    float sum = 0.0f;
    for (size_t i = threadIdx.x; i < dim; i += blockDim.x) sum += v[i] * v[i];
    const float inv = rsqrtf(block_sum(sum) + 1e-6f);
    for (size_t i = threadIdx.x; i < dim; i += blockDim.x) v[i] *= inv;
}

__global__ void gate_kernel(float* g, const float* a_log, const float* dt_bias, size_t T, size_t H,
                            size_t D) {
    const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (i >= T * H * D) return;
    const size_t hd = i % (H * D);
    g[i] = -expf(a_log[hd / D]) * softplus(g[i] + dt_bias[hd]);
}

__global__ void sigmoid_kernel(float* x, size_t n) {
    const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (i < n) x[i] = sigmoid(x[i]);
}

// Block h, thread j owns column j of head h's state S [K, V] in registers; the step's q, k
// and decay are shared. Per token: S *= e^g (rows); u = beta (v - k^T S); S += k u^T;
// o = scale q^T S.
template <int D>
__global__ void kda_recurrent_kernel(const float* q, const float* k, const float* v, const float* g,
                                     const float* beta, size_t T, size_t H, float scale,
                                     float* state, float* o) {
    const size_t h = blockIdx.x;
    const int j = threadIdx.x;
    float* Sh = state + h * D * D;
    float S[D];
#pragma unroll
    for (int c = 0; c < D; ++c) S[c] = Sh[c * D + j];
    __shared__ float sq[D], sk[D], sdecay[D];
    for (size_t t = 0; t < T; ++t) {
        const size_t at = (t * H + h) * D;
        sq[j] = q[at + j];
        sk[j] = k[at + j];
        sdecay[j] = expf(g[at + j]);
        __syncthreads();
        float kS = 0.0f;
#pragma unroll
        for (int c = 0; c < D; ++c) {
            S[c] *= sdecay[c];
            kS += sk[c] * S[c];
        }
        const float u = beta[t * H + h] * (v[at + j] - kS);
        float out = 0.0f;
#pragma unroll
        for (int c = 0; c < D; ++c) {
            S[c] += sk[c] * u;
            out += sq[c] * S[c];
        }
        o[at + j] = out * scale;
        __syncthreads();
    }
#pragma unroll
    for (int c = 0; c < D; ++c) Sh[c * D + j] = S[c];
}

__global__ void gated_norm_kernel(const float* o, const float* gate, const bf16* o_norm, size_t D,
                                  float eps, bf16* out) {
    const size_t base = blockIdx.x * D;  // one (token, head) per block
    float sum = 0.0f;
    for (size_t c = threadIdx.x; c < D; c += blockDim.x) sum += o[base + c] * o[base + c];
    const float inv = rsqrtf(block_sum(sum) / static_cast<float>(D) + eps);
    for (size_t c = threadIdx.x; c < D; c += blockDim.x)
        out[base + c] = __float2bfloat16(o[base + c] * inv * __bfloat162float(o_norm[c]) *
                                         sigmoid(gate[base + c]));
}

unsigned blocks_for(size_t n) {
    return static_cast<unsigned>((n + kThreads - 1) / kThreads);
}

// ---- prefill, one warp per (token, head) ----------------------------------------------------
// A lane owns float4 groups lane, lane + 32, ... of the head's D channels (D % 4 == 0, D <=
// kMaxHeadDim), so a head's reductions are one warp's shuffles and every access is 16 bytes.
constexpr int kHeadWarps = 8;
constexpr int kMaxHeadDim = 512;
constexpr int kMaxGroups = kMaxHeadDim / 128;

__device__ __forceinline__ float warp_total(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// y = silu(conv(x)) for the head's channels, as short_conv_kernel computes each (the taps in
// the same order), then, with kNorm, divided by its L2 norm (l2_norm_kernel's rule).
template <bool kNorm>
__global__ void __launch_bounds__(kHeadWarps * 32)
    conv_silu_heads_kernel(const float* x, int T, int H, int D, const bf16* weight, int kernel,
                           const float* state, float* y) {
    const int lane = threadIdx.x & 31;
    const long long vector = (long long)blockIdx.x * kHeadWarps + (threadIdx.x >> 5);
    if (vector >= (long long)T * H) return;
    const int t = int(vector / H), h = int(vector % H), hist = kernel - 1;
    const size_t channels = size_t(H) * D;
    float4 out[kMaxGroups];
    float sumsq = 0.0f;
#pragma unroll
    for (int i = 0; i < kMaxGroups; ++i) {
        const int c = h * D + (lane + 32 * i) * 4;
        if ((lane + 32 * i) * 4 >= D) continue;
        float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int j = 0; j < kernel; ++j) {
            const int src = t - hist + j;
            const float* row =
                src >= 0 ? x + size_t(src) * channels : state + size_t(hist + src) * channels;
            const float4 in = *reinterpret_cast<const float4*>(row + c);
            const float values[4] = {in.x, in.y, in.z, in.w};
#pragma unroll
            for (int e = 0; e < 4; ++e)
                acc[e] += __bfloat162float(weight[size_t(c + e) * kernel + j]) * values[e];
        }
        out[i] = make_float4(silu(acc[0]), silu(acc[1]), silu(acc[2]), silu(acc[3]));
        sumsq +=
            out[i].x * out[i].x + out[i].y * out[i].y + out[i].z * out[i].z + out[i].w * out[i].w;
    }
    const float inv = kNorm ? rsqrtf(warp_total(sumsq) + 1e-6f) : 1.0f;
    float* dst = y + size_t(t) * channels;
#pragma unroll
    for (int i = 0; i < kMaxGroups; ++i) {
        const int c = h * D + (lane + 32 * i) * 4;
        if ((lane + 32 * i) * 4 >= D) continue;
        *reinterpret_cast<float4*>(dst + c) =
            make_float4(out[i].x * inv, out[i].y * inv, out[i].z * inv, out[i].w * inv);
    }
}

// gated_norm_kernel's rule, a warp per (token, head).
__global__ void __launch_bounds__(kHeadWarps * 32)
    gated_norm_heads_kernel(const float* o, const float* gate, const bf16* o_norm,
                            long long vectors, int D, float eps, bf16* out) {
    const int lane = threadIdx.x & 31;
    const long long vector = (long long)blockIdx.x * kHeadWarps + (threadIdx.x >> 5);
    if (vector >= vectors) return;
    const size_t base = size_t(vector) * D;
    float4 v[kMaxGroups];
    float sumsq = 0.0f;
#pragma unroll
    for (int i = 0; i < kMaxGroups; ++i) {
        const int c = (lane + 32 * i) * 4;
        if (c >= D) continue;
        v[i] = *reinterpret_cast<const float4*>(o + base + c);
        sumsq += v[i].x * v[i].x + v[i].y * v[i].y + v[i].z * v[i].z + v[i].w * v[i].w;
    }
    const float inv = rsqrtf(warp_total(sumsq) / static_cast<float>(D) + eps);
#pragma unroll
    for (int i = 0; i < kMaxGroups; ++i) {
        const int c = (lane + 32 * i) * 4;
        if (c >= D) continue;
        const float4 g = *reinterpret_cast<const float4*>(gate + base + c);
        const float values[4] = {v[i].x, v[i].y, v[i].z, v[i].w};
        const float gates[4] = {g.x, g.y, g.z, g.w};
        __nv_bfloat16 r[4];
#pragma unroll
        for (int e = 0; e < 4; ++e)
            r[e] = __float2bfloat16(values[e] * inv * __bfloat162float(o_norm[c + e]) *
                                    sigmoid(gates[e]));
        uint2 packed;
        packed.x = uint32_t(__bfloat16_as_ushort(r[0])) | uint32_t(__bfloat16_as_ushort(r[1]))
                                                              << 16;
        packed.y = uint32_t(__bfloat16_as_ushort(r[2])) | uint32_t(__bfloat16_as_ushort(r[3]))
                                                              << 16;
        *reinterpret_cast<uint2*>(out + base + c) = packed;
    }
}

bool aligned16(const void* p) {
    return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// The warp-per-head kernels take head widths of whole float4 groups up to kMaxHeadDim.
bool heads_fit(size_t D) {
    return D % 4 == 0 && D > 0 && D <= size_t(kMaxHeadDim);
}

unsigned head_blocks(size_t vectors) {
    return static_cast<unsigned>((vectors + kHeadWarps - 1) / kHeadWarps);
}

}  // namespace

void short_conv_silu(const float* x, size_t T, size_t channels, const bf16* weight, size_t kernel,
                     float* state, float* y, cudaStream_t stream) {
    if (kernel < 1 || kernel > 16)
        fail(Status::Unsupported, "short_conv_kernel_size " + std::to_string(kernel) +
                                      " is outside 1..16 on the CUDA backend");
    if (T == 0) return;
    short_conv_kernel<<<blocks_for(T * channels), kThreads, 0, stream>>>(
        x, T, channels, weight, static_cast<int>(kernel), state, y);
    check_launch("short_conv");
    conv_state_shift_kernel<<<blocks_for(channels), kThreads, 0, stream>>>(
        x, T, channels, static_cast<int>(kernel), state);
    check_launch("short_conv state");
}

bool kda_fused_prefill_ops() {
    static const bool on = env_switch("KL_CUDA_KDA_FUSED", true);
    return on;
}

void short_conv_silu_heads(const float* x, size_t T, size_t H, size_t D, const bf16* weight,
                           size_t kernel, float* state, float* y, bool l2_normalize,
                           cudaStream_t stream) {
    const bool fits = heads_fit(D) && kernel >= 1 && kernel <= 16 && aligned16(x) && aligned16(y) &&
                      (kernel == 1 || aligned16(state)) && T * H <= size_t(INT32_MAX) &&
                      H * D <= size_t(INT32_MAX);
    if (!fits) {  // the general kernels
        short_conv_silu(x, T, H * D, weight, kernel, state, y, stream);
        if (l2_normalize) l2_normalize_heads(y, T * H, D, stream);
        return;
    }
    if (T == 0) return;
    const unsigned blocks = head_blocks(T * H);
    if (l2_normalize)
        conv_silu_heads_kernel<true><<<blocks, kHeadWarps * 32, 0, stream>>>(
            x, int(T), int(H), int(D), weight, int(kernel), state, y);
    else
        conv_silu_heads_kernel<false><<<blocks, kHeadWarps * 32, 0, stream>>>(
            x, int(T), int(H), int(D), weight, int(kernel), state, y);
    check_launch("short_conv_silu_heads");
    conv_state_shift_kernel<<<blocks_for(H * D), kThreads, 0, stream>>>(
        x, T, H * D, static_cast<int>(kernel), state);
    check_launch("short_conv state");
}

void l2_normalize_heads(float* x, size_t vectors, size_t dim, cudaStream_t stream) {
    if (vectors == 0) return;
    l2_norm_kernel<<<static_cast<unsigned>(vectors), 128, 0, stream>>>(x, dim);
    check_launch("l2_normalize_heads");
}

void kda_gate(float* g, const float* a_log, const float* dt_bias, size_t T, size_t H, size_t D,
              cudaStream_t stream) {
    if (T == 0) return;
    gate_kernel<<<blocks_for(T * H * D), kThreads, 0, stream>>>(g, a_log, dt_bias, T, H, D);
    check_launch("kda_gate");
}

void sigmoid_inplace(float* x, size_t n, cudaStream_t stream) {
    if (n == 0) return;
    sigmoid_kernel<<<blocks_for(n), kThreads, 0, stream>>>(x, n);
    check_launch("sigmoid");
}

void kda_recurrent(const float* q, const float* k, const float* v, const float* g,
                   const float* beta, size_t T, size_t H, size_t D, float scale, float* state,
                   float* o, cudaStream_t stream) {
    if (T == 0) return;
    const unsigned blocks = static_cast<unsigned>(H);
    switch (D) {
        case 16:
            kda_recurrent_kernel<16>
                <<<blocks, 16, 0, stream>>>(q, k, v, g, beta, T, H, scale, state, o);
            break;
        case 32:
            kda_recurrent_kernel<32>
                <<<blocks, 32, 0, stream>>>(q, k, v, g, beta, T, H, scale, state, o);
            break;
        case 64:
            kda_recurrent_kernel<64>
                <<<blocks, 64, 0, stream>>>(q, k, v, g, beta, T, H, scale, state, o);
            break;
        case 128:
            kda_recurrent_kernel<128>
                <<<blocks, 128, 0, stream>>>(q, k, v, g, beta, T, H, scale, state, o);
            break;
        default:
            fail(Status::Unsupported, "KDA head_dim " + std::to_string(D) +
                                          " is not one of 16, 32, 64, 128 on the CUDA backend");
    }
    check_launch("kda_recurrent");
}

void kda_gated_norm(const float* o, const float* gate, const bf16* o_norm, size_t T, size_t H,
                    size_t D, float eps, bf16* out, cudaStream_t stream) {
    if (T == 0) return;
    if (kda_fused_prefill_ops() && heads_fit(D) && aligned16(o) && aligned16(gate) &&
        reinterpret_cast<uintptr_t>(out) % 8 == 0) {
        gated_norm_heads_kernel<<<head_blocks(T * H), kHeadWarps * 32, 0, stream>>>(
            o, gate, o_norm, static_cast<long long>(T * H), int(D), eps, out);
        check_launch("kda_gated_norm");
        return;
    }
    gated_norm_kernel<<<static_cast<unsigned>(T * H), 128, 0, stream>>>(o, gate, o_norm, D, eps,
                                                                        out);
    check_launch("kda_gated_norm");
}

}  // namespace kl::cuda
