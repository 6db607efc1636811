// The fused KDA decode step: one kernel per layer and call (docs/design/kernels.md, "KDA decode
// step"). A head's state S [K, V] is split by value columns over the CS CTAs of one thread-
// block cluster, so that B=1 still puts H*CS CTAs on the SMs; each CTA keeps its [D, D/CS]
// block of S in registers for all n tokens and reads and writes it once.
//
// What a CTA needs beyond its own columns, and how it gets it:
//  - q and k over all D channels (the norms and k^T S, q^T S sum over K): every CTA
//    recomputes their conv (D channels each, cheap) rather than exchanging them;
//  - the decay exp(g) over all D key rows: each CTA computes D/CS rows of f_b (so f_b is
//    read once per head) and pulls the other rows from its siblings' shared memory;
//  - the gated RMSNorm's sum of o^2 over all D columns: each CTA pushes its partial sum into
//    every sibling's shared memory.
// That costs two cluster barriers per call, independent of n.
#include <cooperative_groups.h>

#include <string>

#include "chained_launch.cuh"
#include "cuda_util.h"
#include "device_math.cuh"
#include "ops.h"

namespace kl::cuda {
namespace {

namespace cg = cooperative_groups;

constexpr int kMaxTokens = 8;
constexpr int kMaxConv = 16;

// Thread layout of a CTA owning Vc = D/CS value columns: a thread holds 4 adjacent columns
// (one 16-byte access) of RT key rows; the lanes of a warp cover RW rows x Vc columns, so a
// warp's access to one row block is contiguous, and the column sums over K reduce first
// across lanes (shuffles), then across warps (shared memory).
template <int D, int CS>
struct Layout {
    static constexpr int Vc = D / CS;
    static constexpr int CG = Vc / 4;  // float4 column groups
    static constexpr int RW = 32 / CG;
    static constexpr int W = D / RW < 8 ? D / RW : 8;
    static constexpr int RT = D / (RW * W);
    static constexpr int NT = 32 * W;
    static_assert(Vc >= 8 && Vc <= 128 && RT >= 1 && RT * RW * W == D, "unsupported split");
    static_assert(NT % Vc == 0, "a thread's output column is fixed");
};

template <int D, int CS>
struct alignas(16) Shared {
    using L = Layout<D, CS>;
    float q[kMaxTokens][D];      // L2-normalised and scaled q
    float k[kMaxTokens][D];      // L2-normalised k
    float decay[kMaxTokens][D];  // exp(g) per key row
    alignas(16) float v[kMaxTokens][L::Vc];
    float gate[kMaxTokens][L::Vc];           // sigmoid(g_b(g_low))
    alignas(16) float o[kMaxTokens][L::Vc];  // q^T S before the gated norm
    float beta[kMaxTokens];
    float qk[kMaxTokens];              // scale * q.k, normalised
    float sumsq[kMaxTokens][CS];       // per-CTA partial sums of o^2
    union alignas(16) {                // low is read before the recurrence, red during it
        float low[2][kMaxTokens][D];   // f_low, g_low
        float red[2][L::W][2][L::Vc];  // per-warp column sums (k^T S, q^T S), two tokens
    } u;
};

struct Args {
    const float* proj;
    size_t proj_stride;
    int n;
    int kernel;
    size_t H;
    float scale;
    KdaDecodeWeights w;
    const float* state_in;
    const float* conv_in;
    float* state_out;
    float* conv_out;
    bf16* o;
    // A batch (kda_decode_step_batch): grid row b is a session of n tokens whose state lies
    // in rows_in[b] / rows_out[b] at state_offset (S) and conv_offset (conv); its proj and o
    // rows follow row b-1's. Null for one session (the pointers above).
    const float* const* rows_in;
    float* const* rows_out;
    size_t state_offset, conv_offset;
};

__device__ float4 operator*(float4 a, float s) {
    return make_float4(a.x * s, a.y * s, a.z * s, a.w * s);
}
__device__ void fma4(float4& acc, float s, float4 x) {
    acc.x = fmaf(s, x.x, acc.x), acc.y = fmaf(s, x.y, acc.y);
    acc.z = fmaf(s, x.z, acc.z), acc.w = fmaf(s, x.w, acc.w);
}
__device__ void add4(float4& acc, float4 x) {
    acc.x += x.x, acc.y += x.y, acc.z += x.z, acc.w += x.w;
}
__device__ float4 shfl_xor4(float4 x, int offset) {
    return make_float4(
        __shfl_xor_sync(0xffffffffu, x.x, offset), __shfl_xor_sync(0xffffffffu, x.y, offset),
        __shfl_xor_sync(0xffffffffu, x.z, offset), __shfl_xor_sync(0xffffffffu, x.w, offset));
}

template <int CS>
__device__ void cluster_barrier() {
    if constexpr (CS > 1)
        cg::this_cluster().sync();
    else
        __syncthreads();
}

// Conv staging, xs[slot][channel] in dynamic shared memory: slots 0..kernel-2 hold the conv
// state (oldest first), slot kernel-1+t token t's projection. Channels: q (D), k (D), then
// this CTA's Vc v channels. The new conv state is slots n..n+kernel-2.
template <int D, int CS>
__device__ int channel_of(int ch, int col0, int& group) {
    group = ch < D ? 0 : ch < 2 * D ? 1 : 2;
    return group < 2 ? ch - group * D : col0 + ch - 2 * D;
}

template <int D, int CS>
__global__ void __cluster_dims__(CS, 1, 1) __launch_bounds__(Layout<D, CS>::NT)
    kda_decode_kernel(const Args a) {
    using L = Layout<D, CS>;
    constexpr int Vc = L::Vc, CG = L::CG, RW = L::RW, W = L::W, RT = L::RT, NT = L::NT;
    constexpr int NC = 2 * D + Vc;
    __shared__ Shared<D, CS> sm;
    extern __shared__ float xs[];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int rank = static_cast<int>(blockIdx.x % CS);  // cluster rank: clusters tile x
    const size_t h = blockIdx.x / CS;
    const int col0 = rank * Vc;
    const int n = a.n, hist = a.kernel - 1;
    const size_t HD = a.H * D;
    // This grid row's session: its projections, outputs and state buffers.
    const size_t b = blockIdx.y;
    const float* const proj = a.proj + b * n * a.proj_stride;
    bf16* const o_rows = a.o + b * n * HD;
    const float* state_in = a.state_in;
    const float* conv_in = a.conv_in;
    float* state_out = a.state_out;
    float* conv_out = a.conv_out;
    if (a.rows_in) {
        state_in = a.rows_in[b] + a.state_offset, conv_in = a.rows_in[b] + a.conv_offset;
        state_out = a.rows_out[b] + a.state_offset, conv_out = a.rows_out[b] + a.conv_offset;
    }

    // Every load that depends on nothing is issued first, so that the whole call waits for
    // memory about once: the state block, this thread's f_b/g_b pieces, conv taps, dt_bias
    // and o_norm (registers), and the conv inputs, f_low, g_low and b (shared memory).
    const int group4 = lane % CG, rsub = lane / CG;
    auto row_of = [&](int i) { return i * (W * RW) + warp * RW + rsub; };
    float4 S[RT];
    {
        const float* src = state_in + h * D * D + col0 + group4 * 4;
#pragma unroll
        for (int i = 0; i < RT; ++i)
            S[i] = __ldcs(reinterpret_cast<const float4*>(src + row_of(i) * D));
    }
    // f_b and g_b rows of this CTA's slice: Vc rows each of D bf16, one 16-byte piece per
    // thread and pass, the D/8 pieces of a row in adjacent lanes (summed by shuffles).
    constexpr int kPieces = D / 8, kPasses = 2 * Vc * kPieces / NT;
    static_assert(kPasses * NT == 2 * Vc * kPieces, "every lane takes part in each pass");
    uint4 gate_w[kPasses];
    float dt_bias[kPasses];
#pragma unroll
    for (int p = 0; p < kPasses; ++p) {
        const int row = (p * NT + tid) / kPieces, piece = (p * NT + tid) % kPieces;
        const int which = row / Vc, i = row % Vc;  // which: 0 f_b, 1 g_b
        const bf16* wrow = (which == 0 ? a.w.f_b : a.w.g_b) + (h * D + col0 + i) * D;
        gate_w[p] = *reinterpret_cast<const uint4*>(wrow + piece * 8);
        dt_bias[p] = which == 0 && piece == 0 ? a.w.dt_bias[h * D + col0 + i] : 0.0f;
    }
    const float neg_a = -expf(a.w.a_log[h]);
    const float o_norm = __bfloat162float(a.w.o_norm[col0 + tid % Vc]);  // NT % Vc == 0
    constexpr int kConvPasses = (NC + NT - 1) / NT;
    float conv_w[kConvPasses][kMaxConv];
#pragma unroll
    for (int p = 0; p < kConvPasses; ++p) {
        const int ch = p * NT + tid;
        int group;
        const int c = channel_of<D, CS>(ch < NC ? ch : 0, col0, group);
        const bf16* wrow = (group == 0   ? a.w.conv_q
                            : group == 1 ? a.w.conv_k
                                         : a.w.conv_v) +
                           (h * D + c) * a.kernel;
#pragma unroll
        for (int j = 0; j < kMaxConv; ++j)
            conv_w[p][j] = ch < NC && j <= hist ? __bfloat162float(wrow[j]) : 0.0f;
    }
    // The projections are the previous kernel's output (chained_launch.cuh); the state and
    // conv inputs were written by an earlier call, complete before this one started.
    wait_for_previous();
    release_next();
    const int slots = hist + n;
    for (int idx = tid; idx < slots * NC; idx += NT) {
        const int slot = idx / NC, ch = idx % NC;
        int group;
        const size_t c = h * D + channel_of<D, CS>(ch, col0, group);
        xs[idx] = slot < hist ? conv_in[(group * hist + slot) * HD + c]
                              : proj[(slot - hist) * a.proj_stride + group * HD + c];
    }
    for (int idx = tid; idx < n * 2 * D; idx += NT) {
        const int t = idx / (2 * D), i = idx % (2 * D);
        sm.u.low[i / D][t][i % D] = proj[t * a.proj_stride + 3 * HD + i];
    }
    if (tid < n) sm.beta[tid] = sigmoid(proj[tid * a.proj_stride + 3 * HD + 2 * D + h]);
    __syncthreads();

    // Depthwise causal conv + SiLU, one thread per channel.
#pragma unroll
    for (int p = 0; p < kConvPasses; ++p) {
        const int ch = p * NT + tid;
        if (ch >= NC) break;
        int group;
        const int c = channel_of<D, CS>(ch, col0, group);
        for (int t = 0; t < n; ++t) {
            float acc = 0.0f;
#pragma unroll
            for (int j = 0; j < kMaxConv; ++j)
                if (j <= hist) acc = fmaf(conv_w[p][j], xs[(t + j) * NC + ch], acc);
            const float y = silu(acc);
            if (group == 0)
                sm.q[t][c] = y;
            else if (group == 1)
                sm.k[t][c] = y;
            else
                sm.v[t][c - col0] = y;
        }
    }

    // The gate rows: decay = exp(g) for f_b's rows, sigmoid(g_b(g_low)) for g_b's.
#pragma unroll
    for (int p = 0; p < kPasses; ++p) {
        const int row = (p * NT + tid) / kPieces, piece = (p * NT + tid) % kPieces;
        const int which = row / Vc, i = row % Vc;
        const __nv_bfloat162* w2 = reinterpret_cast<const __nv_bfloat162*>(&gate_w[p]);
        float acc[kMaxTokens];
#pragma unroll
        for (int t = 0; t < kMaxTokens; ++t) {
            acc[t] = 0.0f;
            if (t < n) {
                const float* x = &sm.u.low[which][t][piece * 8];
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const float2 wf = __bfloat1622float2(w2[e]);
                    acc[t] = fmaf(wf.x, x[2 * e], acc[t]);
                    acc[t] = fmaf(wf.y, x[2 * e + 1], acc[t]);
                }
            }
        }
#pragma unroll
        for (int t = 0; t < kMaxTokens; ++t)
#pragma unroll
            for (int offset = kPieces / 2; offset > 0; offset >>= 1)
                acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], offset);
        if (piece == 0) {
#pragma unroll
            for (int t = 0; t < kMaxTokens; ++t) {
                if (t >= n) break;
                if (which == 0)
                    sm.decay[t][col0 + i] = expf(neg_a * softplus(acc[t] + dt_bias[p]));
                else
                    sm.gate[t][i] = sigmoid(acc[t]);
            }
        }
    }
    __syncthreads();

    // L2 norms of q and k per token; the scale folds into q, and q.k is kept for o.
    for (int t = warp; t < n; t += W) {
        float qq = 0.0f, kk = 0.0f, qk = 0.0f;
        for (int c = lane; c < D; c += 32) {
            const float qc = sm.q[t][c], kc = sm.k[t][c];
            qq = fmaf(qc, qc, qq), kk = fmaf(kc, kc, kk), qk = fmaf(qc, kc, qk);
        }
        for (int offset = 16; offset > 0; offset >>= 1) {
            qq += __shfl_xor_sync(0xffffffffu, qq, offset);
            kk += __shfl_xor_sync(0xffffffffu, kk, offset);
            qk += __shfl_xor_sync(0xffffffffu, qk, offset);
        }
        const float inv_q = 1.0f / sqrtf(qq + 1e-6f), inv_k = 1.0f / sqrtf(kk + 1e-6f);
        for (int c = lane; c < D; c += 32) {
            sm.q[t][c] *= inv_q * a.scale;
            sm.k[t][c] *= inv_k;
        }
        if (lane == 0) sm.qk[t] = qk * inv_q * inv_k * a.scale;
    }

    // Every CTA of the cluster has now read its conv inputs and computed its decay rows.
    cluster_barrier<CS>();
    if constexpr (CS > 1) {
        cg::cluster_group cluster = cg::this_cluster();
        for (int idx = tid; idx < n * D; idx += NT) {
            const int t = idx / D, c = idx % D, owner = c / Vc;
            if (owner != rank) sm.decay[t][c] = *cluster.map_shared_rank(&sm.decay[t][c], owner);
        }
    }
    // New conv state of this CTA's channels: q and k columns [col0, col0+Vc), its v channels.
    for (int idx = tid; idx < hist * 3 * Vc; idx += NT) {
        const int slot = idx / (3 * Vc), group = idx % (3 * Vc) / Vc, j = idx % Vc;
        const int ch = group < 2 ? group * D + col0 + j : 2 * D + j;
        conv_out[(group * hist + slot) * HD + h * D + col0 + j] = xs[(n + slot) * NC + ch];
    }
    __syncthreads();

    // The recurrence, token by token: S *= decay (rows); kS = k^T S, qS = q^T S;
    // u = beta (v - kS); S += k u^T; o = q^T S = qS + (q.k) u.
    for (int t = 0; t < n; ++t) {
        float4 kS = make_float4(0.f, 0.f, 0.f, 0.f), qS = kS;
#pragma unroll
        for (int i = 0; i < RT; ++i) {
            const int row = row_of(i);
            S[i] = S[i] * sm.decay[t][row];
            fma4(kS, sm.k[t][row], S[i]);
            fma4(qS, sm.q[t][row], S[i]);
        }
#pragma unroll
        for (int offset = CG; offset < 32; offset <<= 1) {
            add4(kS, shfl_xor4(kS, offset));
            add4(qS, shfl_xor4(qS, offset));
        }
        float(*red)[2][Vc] = sm.u.red[t & 1];  // alternating buffers: one barrier per token
        if (rsub == 0) {
            *reinterpret_cast<float4*>(&red[warp][0][group4 * 4]) = kS;
            *reinterpret_cast<float4*>(&red[warp][1][group4 * 4]) = qS;
        }
        __syncthreads();
        kS = make_float4(0.f, 0.f, 0.f, 0.f), qS = kS;
#pragma unroll
        for (int w = 0; w < W; ++w) {
            add4(kS, *reinterpret_cast<const float4*>(&red[w][0][group4 * 4]));
            add4(qS, *reinterpret_cast<const float4*>(&red[w][1][group4 * 4]));
        }
        const float4 v4 = *reinterpret_cast<const float4*>(&sm.v[t][group4 * 4]);
        const float beta = sm.beta[t];
        const float4 u = make_float4(beta * (v4.x - kS.x), beta * (v4.y - kS.y),
                                     beta * (v4.z - kS.z), beta * (v4.w - kS.w));
        if (warp == 0 && rsub == 0) {
            fma4(qS, sm.qk[t], u);
            *reinterpret_cast<float4*>(&sm.o[t][group4 * 4]) = qS;
        }
#pragma unroll
        for (int i = 0; i < RT; ++i) fma4(S[i], sm.k[t][row_of(i)], u);
    }
    {
        float* dst = state_out + h * D * D + col0 + group4 * 4;
#pragma unroll
        for (int i = 0; i < RT; ++i) __stcs(reinterpret_cast<float4*>(dst + row_of(i) * D), S[i]);
    }
    __syncthreads();

    // Gated RMSNorm over the head's D outputs: partial sums of o^2 go to every CTA.
    for (int t = warp; t < n; t += W) {
        float sum = 0.0f;
        for (int j = lane; j < Vc; j += 32) sum = fmaf(sm.o[t][j], sm.o[t][j], sum);
        for (int offset = 16; offset > 0; offset >>= 1)
            sum += __shfl_xor_sync(0xffffffffu, sum, offset);
        if (lane < CS) {
            if constexpr (CS > 1)
                *cg::this_cluster().map_shared_rank(&sm.sumsq[t][rank], lane) = sum;
            else
                sm.sumsq[t][rank] = sum;
        }
    }
    cluster_barrier<CS>();  // also keeps this CTA's shared memory alive for its siblings
    for (int idx = tid; idx < n * Vc; idx += NT) {
        const int t = idx / Vc, j = idx % Vc;
        float total = 0.0f;
#pragma unroll
        for (int r = 0; r < CS; ++r) total += sm.sumsq[t][r];
        const float inv = 1.0f / sqrtf(total / D + a.w.eps);
        const float y = sm.o[t][j] * inv * o_norm * sm.gate[t][j];
        o_rows[t * HD + h * D + col0 + j] = __float2bfloat16(y);
    }
}

template <int D, int CS>
void launch(const Args& a, size_t rows, cudaStream_t stream) {
    using L = Layout<D, CS>;
    const size_t dynamic = (a.kernel - 1 + a.n) * (2 * D + L::Vc) * sizeof(float);
    constexpr size_t kDefaultLimit = 48 * 1024;
    if (sizeof(Shared<D, CS>) + dynamic > kDefaultLimit)
        allow_dynamic_shared(reinterpret_cast<const void*>(kda_decode_kernel<D, CS>), dynamic,
                             "kda_decode shared memory");
    const dim3 grid(static_cast<unsigned>(a.H * CS), static_cast<unsigned>(rows));
    launch_chained("kda_decode_step", kda_decode_kernel<D, CS>, grid, L::NT, dynamic, stream, a);
}

template <int D>
void launch_split(const Args& a, size_t rows, size_t ctas_per_head, cudaStream_t stream) {
    switch (ctas_per_head) {
        case 1:
            return launch<D, 1>(a, rows, stream);
        case 2:
            return launch<D, 2>(a, rows, stream);
        case 4:
            if constexpr (D >= 32) return launch<D, 4>(a, rows, stream);
            break;
        case 8:
            if constexpr (D >= 64) return launch<D, 8>(a, rows, stream);
            break;
    }
    fail(Status::InvalidArgument, "kda_decode_step: ctas_per_head " +
                                      std::to_string(ctas_per_head) + " is not supported for D " +
                                      std::to_string(D) + " (1, 2, 4, 8 with D/ctas >= 8)");
}

// The smallest split that gives every SM a CTA, as far as D allows (at least 8 columns);
// `heads` counts the heads of all rows of a batch.
// Measured on the H100 at H=32, D=128, n=1 in a graph (L2-hot): 8 CTAs/head 9.6 us,
// 4: 10.4, 2: 14.7, 1: 26.5 -- per-CTA latency, not bandwidth, sets the time.
size_t default_split(size_t heads, size_t D) {
    const int sms = multiprocessors();
    size_t split = 1;
    while (split < 8 && D / (2 * split) >= 8 && heads * split < static_cast<size_t>(sms))
        split *= 2;
    return split;
}

bool overlaps_partly(const void* a, const void* b, size_t bytes) {
    const char *x = static_cast<const char*>(a), *y = static_cast<const char*>(b);
    return x != y && x < y + bytes && y < x + bytes;
}

bool aligned16(const void* p) {
    return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// The checks both entry points share (sizes, weights, projections), then the launch of
// `rows` grid rows.
void run(const Args& a, size_t rows, size_t D, size_t ctas_per_head, cudaStream_t stream) {
    const std::string what = "kda_decode_step: ";
    const size_t n = a.n, H = a.H;
    if (!kda_decode_supported(D))
        fail(Status::Unsupported,
             what + "head_dim " + std::to_string(D) + " is not one of 16, 32, 64, 128");
    if (n > kMaxTokens)
        fail(Status::Unsupported,
             what + std::to_string(n) + " tokens exceed " + std::to_string(kMaxTokens));
    if (a.w.kernel < 1 || a.w.kernel > kMaxConv)
        fail(Status::Unsupported,
             what + "short_conv_kernel_size " + std::to_string(a.w.kernel) + " is outside 1..16");
    if (H == 0 || H > (1u << 24)) fail(Status::InvalidArgument, what + "H " + std::to_string(H));
    if (rows > 65535) fail(Status::InvalidArgument, what + std::to_string(rows) + " rows");
    const size_t HD = H * D;
    if (a.proj_stride < 3 * HD + 2 * D + H)
        fail(Status::InvalidArgument,
             what + "proj_stride " + std::to_string(a.proj_stride) +
                 " < 3*H*D + 2*D + H = " + std::to_string(3 * HD + 2 * D + H));
    if (n == 0 || rows == 0) return;
    const KdaDecodeWeights& w = a.w;
    if (!a.proj || !a.o || !w.f_b || !w.g_b || !w.a_log || !w.dt_bias || !w.o_norm || !w.conv_q ||
        !w.conv_k || !w.conv_v)
        fail(Status::InvalidArgument, what + "null pointer");
    if (!aligned16(w.f_b) || !aligned16(w.g_b))
        fail(Status::InvalidArgument, what + "f_b/g_b must be 16-byte aligned");
    if (ctas_per_head == 0) ctas_per_head = default_split(H * rows, D);
    switch (D) {
        case 16:
            return launch_split<16>(a, rows, ctas_per_head, stream);
        case 32:
            return launch_split<32>(a, rows, ctas_per_head, stream);
        case 64:
            return launch_split<64>(a, rows, ctas_per_head, stream);
        default:
            return launch_split<128>(a, rows, ctas_per_head, stream);
    }
}

}  // namespace

bool kda_decode_supported(size_t D) {
    return D == 16 || D == 32 || D == 64 || D == 128;
}

void kda_decode_step_with_split(const float* proj, size_t proj_stride, size_t n, size_t H, size_t D,
                                float scale, const KdaDecodeWeights& w, const float* state_in,
                                const float* conv_in, float* state_out, float* conv_out, bf16* o,
                                size_t ctas_per_head, cudaStream_t stream) {
    const std::string what = "kda_decode_step: ";
    const bool has_conv = w.kernel > 1;
    if (n > 0 && (!state_in || !state_out || (has_conv && (!conv_in || !conv_out))))
        fail(Status::InvalidArgument, what + "null pointer");
    if (n > 0 && (!aligned16(state_in) || !aligned16(state_out)))
        fail(Status::InvalidArgument, what + "state_in/state_out must be 16-byte aligned");
    const size_t HD = H * D;
    if (overlaps_partly(state_in, state_out, HD * D * sizeof(float)) ||
        (has_conv && w.kernel <= kMaxConv &&
         overlaps_partly(conv_in, conv_out, 3 * (w.kernel - 1) * HD * sizeof(float))))
        fail(Status::InvalidArgument, what + "outputs must equal their inputs or not overlap them");
    const Args a{proj,
                 proj_stride,
                 static_cast<int>(std::min<size_t>(n, kMaxTokens + 1)),
                 static_cast<int>(w.kernel),
                 H,
                 scale,
                 w,
                 state_in,
                 conv_in,
                 state_out,
                 conv_out,
                 o,
                 nullptr,
                 nullptr,
                 0,
                 0};
    run(a, 1, D, ctas_per_head, stream);
}

void kda_decode_step(const float* proj, size_t proj_stride, size_t n, size_t H, size_t D,
                     float scale, const KdaDecodeWeights& w, const float* state_in,
                     const float* conv_in, float* state_out, float* conv_out, bf16* o,
                     cudaStream_t stream) {
    kda_decode_step_with_split(proj, proj_stride, n, H, D, scale, w, state_in, conv_in, state_out,
                               conv_out, o, 0, stream);
}

void kda_decode_step_batch(const float* proj, size_t proj_stride, size_t rows, size_t H, size_t D,
                           float scale, const KdaDecodeWeights& w, const float* const* rows_in,
                           float* const* rows_out, size_t state_offset, size_t conv_offset, bf16* o,
                           size_t ctas_per_head, cudaStream_t stream) {
    const std::string what = "kda_decode_step_batch: ";
    if (rows > 0 && (!rows_in || !rows_out))
        fail(Status::InvalidArgument, what + "null pointer array");
    if (state_offset % 4 != 0 || conv_offset % 4 != 0)
        fail(Status::InvalidArgument, what + "state offsets must be multiples of 4 floats");
    const Args a{proj,
                 proj_stride,
                 1,
                 static_cast<int>(w.kernel),
                 H,
                 scale,
                 w,
                 nullptr,
                 nullptr,
                 nullptr,
                 nullptr,
                 o,
                 rows_in,
                 rows_out,
                 state_offset,
                 conv_offset};
    run(a, rows, D, ctas_per_head, stream);
}

}  // namespace kl::cuda
