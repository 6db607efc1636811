// KDA chunked prefill on tensor cores (docs/design/kernels.md "KDA chunked prefill"; the math is
// the CPU kda_chunked in backends/cpu/kda.cpp, with C = 16 tokens per chunk). Two kernels:
//
//  1. prep, one CTA per (chunk, head), all chunks in parallel: the cumulative log decay G,
//     the per-chunk matrices Qg = scale q ⊙ e^G, Kg = k ⊙ e^G, Kd = k ⊙ e^{G_last - G}
//     (fp16), decay = e^{G_last}, the UT transform Tb = (I + diag(beta) A)^{-1} diag(beta)
//     and Bm = scale · lower(B) (fp16), with A_ij, B_ij the pairwise decayed k·k and q·k.
//  2. recurrence, one CTA per (column block of S, head), chunks in order: with S0 the state
//     at the chunk start, d = Tb (V - Kg S0), o = Qg S0 + Bm d, S = decay ⊙ S0 + Kd^T d, as
//     fp16 mma.sync with the state held in fp32 accumulator registers (its transpose S^T, so
//     that each product's result is already the next product's A operand).
//
// Operands are fp16, not bf16: 3 more mantissa bits bring the error vs the fp64 recurrence
// from ~5e-3 (measured with bf16) to well under it. The chunk matrices are bounded by
// construction (|Qg|, |Kg|, |Kd|, |Bm| <= 1; |Tb| <= 2^15 for a unit-triangular inverse with
// entries <= 1), and S, V - Kg S and d are scaled by a power of two per row before rounding
// (RowScale), so fp16's range never limits the inputs.
//
// Strong decay: with C = 16 every factor above is e^{x} with x <= 0 except inside A and B.
// There A_ij = sum_c k_i k_j e^{G_i - G_j}; a channel whose total decay over the chunk is
// within 2^{±kHalfSpan} is split around the midpoint of its range, so both factors stay
// finite in fp32 and the sum is one small matrix product; a channel that decays more than
// that (g far below -10 per token) takes the exact pairwise exponent instead.
#include <cuda_fp16.h>

#include <algorithm>
#include <string>

#include "cuda_util.h"
#include "kda_chunk_mma.cuh"
#include "ops.h"

namespace kl::cuda {
namespace {

using namespace kda_chunk_detail;

constexpr int C = 16;  // tokens per chunk
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kHalfSpan = 120.0f;  // log2 units: 2^±120 is finite and normal in fp32

// Per (head, chunk) intermediates written by prep and read by the recurrence.
struct ChunkTensors {
    __half* qg;    // [H][chunks][C][D]
    __half* kg;    // [H][chunks][C][D]
    __half* kd;    // [H][chunks][C][D]
    __half* tb;    // [H][chunks][C][C]
    __half* bm;    // [H][chunks][C][C]
    float* decay;  // [H][chunks][D]
};

size_t round256(size_t bytes) {
    return (bytes + 255) / 256 * 256;
}

struct Layout {
    size_t mat, small, decay;  // bytes of one [C][D] array set, one [C][C], the decay
    size_t total() const { return 3 * mat + 2 * small + decay; }
};

Layout layout(size_t chunks, size_t H, size_t D) {
    const size_t n = chunks * H;
    return {round256(n * C * D * sizeof(__half)), round256(n * C * C * sizeof(__half)),
            round256(n * D * sizeof(float))};
}

ChunkTensors carve(void* workspace, const Layout& l) {
    char* p = static_cast<char*>(workspace);
    ChunkTensors t;
    t.qg = reinterpret_cast<__half*>(p);
    t.kg = reinterpret_cast<__half*>(p + l.mat);
    t.kd = reinterpret_cast<__half*>(p + 2 * l.mat);
    t.tb = reinterpret_cast<__half*>(p + 3 * l.mat);
    t.bm = reinterpret_cast<__half*>(p + 3 * l.mat + l.small);
    t.decay = reinterpret_cast<float*>(p + 3 * l.mat + 2 * l.small);
    return t;
}

// ---- kernel 1: per-chunk matrices -----------------------------------------------------------

constexpr int kPrepThreads = 128;  // the pair phase maps 16 rows × 8 column pairs onto them

template <int D>
__global__ void __launch_bounds__(kPrepThreads)
    kda_chunk_prep_kernel(const float* q, const float* k, const float* g, const float* beta,
                          size_t T, size_t H, size_t chunks, float scale, ChunkTensors out) {
    constexpr int P = D + 4;  // padded rows: 8 rows read as float4 hit distinct banks
    __shared__ __align__(16) float sG[C][P];   // cumulative decay, log2 units
    __shared__ __align__(16) float sQf[C][P];  // q_i 2^{G_i - mid}
    __shared__ __align__(16) float sKf[C][P];  // k_i 2^{G_i - mid}
    __shared__ __align__(16) float sKb[C][P];  // k_j 2^{mid - G_j}
    __shared__ float sA[C][C + 1];
    __shared__ float sB[C][C + 1];
    __shared__ float sBeta[C];
    __shared__ int strong[D];
    __shared__ int n_strong;

    __shared__ float sTotal[2][D];  // each half chunk's decay per channel

    const size_t chunk = blockIdx.x, h = blockIdx.y;
    const size_t t0 = chunk * C;
    const int n = static_cast<int>(min(static_cast<size_t>(C), T - t0));
    const int tid = threadIdx.x;
    const size_t stride = H * D;
    const size_t head_chunk = h * chunks + chunk;
    auto at = [&](int i, int c) { return (t0 + i) * stride + h * D + c; };

    if (tid == 0) n_strong = 0;
    if (tid < C) sBeta[tid] = tid < n ? beta[(t0 + tid) * H + h] : 0.0f;

    // Thread = (channel pair, half of the chunk): all 128 threads busy at D = 128, and
    // 8-byte loads and 4-byte fp16 pair stores. Tokens past the end are padding: zero q, k,
    // beta and no decay, so they change nothing.
    constexpr int kHalf = C / 2;
    const bool active = tid < D;
    const int c2 = 2 * (tid % (D / 2)), half = tid / (D / 2);
    float2 gv[kHalf], qv[kHalf], kv[kHalf];
    float2 G[kHalf];
    if (active) {
#pragma unroll
        for (int ii = 0; ii < kHalf; ++ii) {
            const int i = half * kHalf + ii;
            const bool real = i < n;
            gv[ii] = real ? *reinterpret_cast<const float2*>(&g[at(i, c2)]) : make_float2(0, 0);
            qv[ii] = real ? *reinterpret_cast<const float2*>(&q[at(i, c2)]) : make_float2(0, 0);
            kv[ii] = real ? *reinterpret_cast<const float2*>(&k[at(i, c2)]) : make_float2(0, 0);
        }
        float2 run = make_float2(0.0f, 0.0f);
#pragma unroll
        for (int ii = 0; ii < kHalf; ++ii) {
            run.x += gv[ii].x * kLog2e;
            run.y += gv[ii].y * kLog2e;
            G[ii] = run;
        }
        sTotal[half][c2] = run.x;
        sTotal[half][c2 + 1] = run.y;
    }
    __syncthreads();
    if (active) {
        // The second half starts from the first half's total; `last` is formed the same
        // way in both halves, so G_last - G_15 is exactly 0.
        const float2 first = make_float2(sTotal[0][c2], sTotal[0][c2 + 1]);
        const float2 last = make_float2(first.x + sTotal[1][c2], first.y + sTotal[1][c2 + 1]);
        if (half == 1) {
#pragma unroll
            for (int ii = 0; ii < kHalf; ++ii) {
                G[ii].x = first.x + G[ii].x;
                G[ii].y = first.y + G[ii].y;
            }
        }
        const bool strong0 = last.x < -2.0f * kHalfSpan, strong1 = last.y < -2.0f * kHalfSpan;
        if (half == 0) {
            *reinterpret_cast<float2*>(&out.decay[head_chunk * D + c2]) =
                make_float2(fast_exp2(last.x), fast_exp2(last.y));
            if (strong0) strong[atomicAdd(&n_strong, 1)] = c2;
            if (strong1) strong[atomicAdd(&n_strong, 1)] = c2 + 1;
        }
        const float2 mid = make_float2(0.5f * last.x, 0.5f * last.y);
#pragma unroll
        for (int ii = 0; ii < kHalf; ++ii) {
            const int i = half * kHalf + ii;
            const float2 Gi = G[ii], qi = qv[ii], ki = kv[ii];
            const float e0 = fast_exp2(Gi.x), e1 = fast_exp2(Gi.y);
            const size_t row = (head_chunk * C + i) * D + c2;
            *reinterpret_cast<__half2*>(&out.qg[row]) =
                __floats2half2_rn(scale * qi.x * e0, scale * qi.y * e1);
            *reinterpret_cast<__half2*>(&out.kg[row]) = __floats2half2_rn(ki.x * e0, ki.y * e1);
            *reinterpret_cast<__half2*>(&out.kd[row]) =
                __floats2half2_rn(ki.x * fast_exp2(last.x - Gi.x), ki.y * fast_exp2(last.y - Gi.y));
            const float f0 = strong0 ? 0.0f : fast_exp2(Gi.x - mid.x);
            const float f1 = strong1 ? 0.0f : fast_exp2(Gi.y - mid.y);
            const float b0 = strong0 ? 0.0f : fast_exp2(mid.x - Gi.x);
            const float b1 = strong1 ? 0.0f : fast_exp2(mid.y - Gi.y);
            *reinterpret_cast<float2*>(&sG[i][c2]) = Gi;
            *reinterpret_cast<float2*>(&sQf[i][c2]) = make_float2(qi.x * f0, qi.y * f1);
            *reinterpret_cast<float2*>(&sKf[i][c2]) = make_float2(ki.x * f0, ki.y * f1);
            *reinterpret_cast<float2*>(&sKb[i][c2]) = make_float2(ki.x * b0, ki.y * b1);
        }
    }
    __syncthreads();

    // A_ij = sum_c k_i k_j 2^{G_i - G_j}, B_ij likewise with q_i; thread: row i, columns j0, j0+8.
    {
        const int i = tid / 8, j0 = tid % 8, j1 = j0 + 8;
        float a0 = 0.0f, a1 = 0.0f, b0 = 0.0f, b1 = 0.0f;
#pragma unroll 4
        for (int c = 0; c < D; c += 4) {
            const float4 kf = *reinterpret_cast<const float4*>(&sKf[i][c]);
            const float4 qf = *reinterpret_cast<const float4*>(&sQf[i][c]);
            const float4 k0 = *reinterpret_cast<const float4*>(&sKb[j0][c]);
            const float4 k1 = *reinterpret_cast<const float4*>(&sKb[j1][c]);
            a0 += kf.x * k0.x + kf.y * k0.y + kf.z * k0.z + kf.w * k0.w;
            a1 += kf.x * k1.x + kf.y * k1.y + kf.z * k1.z + kf.w * k1.w;
            b0 += qf.x * k0.x + qf.y * k0.y + qf.z * k0.z + qf.w * k0.w;
            b1 += qf.x * k1.x + qf.y * k1.y + qf.z * k1.z + qf.w * k1.w;
        }
        // Channels too strong to split: the exact exponent, only where j <= i (else it could
        // overflow; those entries are masked below anyway).
        if (i < n) {
            for (int s = 0; s < n_strong; ++s) {
                const int c = strong[s];
                const float qi = q[at(i, c)], ki = k[at(i, c)], Gi = sG[i][c];
                if (j0 <= i) {
                    const float w = k[at(j0, c)] * fast_exp2(Gi - sG[j0][c]);
                    a0 += ki * w;
                    b0 += qi * w;
                }
                if (j1 <= i) {
                    const float w = k[at(j1, c)] * fast_exp2(Gi - sG[j1][c]);
                    a1 += ki * w;
                    b1 += qi * w;
                }
            }
        }
        sA[i][j0] = j0 < i ? sBeta[i] * a0 : 0.0f;
        sA[i][j1] = j1 < i ? sBeta[i] * a1 : 0.0f;
        sB[i][j0] = j0 <= i ? scale * b0 : 0.0f;
        sB[i][j1] = j1 <= i ? scale * b1 : 0.0f;
    }
    __syncthreads();

    const size_t mat = head_chunk * C * C;
    if (tid < C) {
        // Forward substitution: lane l owns column l of T = (I + diag(beta) A)^{-1}, fp32.
        const int l = tid;
        float t[C];
#pragma unroll
        for (int i = 0; i < C; ++i) {
            float acc = i == l ? 1.0f : 0.0f;
#pragma unroll
            for (int j = 0; j < i; ++j) acc -= sA[i][j] * t[j];
            t[i] = acc;
        }
        const float bl = sBeta[l];
#pragma unroll
        for (int i = 0; i < C; ++i) out.tb[mat + i * C + l] = __float2half_rn(t[i] * bl);
    } else if (tid >= 32) {
        for (int e = tid - 32; e < C * C; e += kPrepThreads - 32)
            out.bm[mat + e] = __float2half_rn(sB[e / C][e % C]);
    }
}

// ---- kernel 2: the recurrence over chunks -------------------------------------------------

template <int D>
struct Tile {
    static constexpr int kWarps = D >= 32 ? 2 : 1;
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kCols = 16 * kWarps;  // columns of S (value dims) per CTA
    static constexpr int kStages = 3;          // chunks in flight: 2 loading, 1 computing
    // Padded rows: ldmatrix reads 8 rows of 16 B each, which then fall in distinct banks.
    struct __align__(16) Stage {
        __half qg[C][D + 8];
        __half kg[C][D + 8];
        __half kd[C][D + 8];
        __half tb[C][C + 8];
        __half bm[C][C + 8];
        float decay[D];
        float v[C][kCols + 4];
    };
};

template <int D>
__device__ void load_stage(typename Tile<D>::Stage& st, const ChunkTensors& in, size_t head_chunk,
                           const float* v, size_t t0, size_t T, size_t H, size_t h, int col0) {
    using Tl = Tile<D>;
    const int tid = threadIdx.x;
    constexpr int kRowPieces = D / 8;  // 16-byte pieces in an fp16 row of D
    const size_t base = head_chunk * C * D;
    for (int p = tid; p < C * kRowPieces; p += Tl::kThreads) {
        const int row = p / kRowPieces, col = (p % kRowPieces) * 8;
        cp_async16(&st.qg[row][col], in.qg + base + row * D + col);
        cp_async16(&st.kg[row][col], in.kg + base + row * D + col);
        cp_async16(&st.kd[row][col], in.kd + base + row * D + col);
    }
    for (int p = tid; p < C * 2; p += Tl::kThreads) {
        const int row = p / 2, col = (p % 2) * 8;
        cp_async16(&st.tb[row][col], in.tb + head_chunk * C * C + row * C + col);
        cp_async16(&st.bm[row][col], in.bm + head_chunk * C * C + row * C + col);
    }
    for (int p = tid; p < D / 4; p += Tl::kThreads)
        cp_async16(&st.decay[p * 4], in.decay + head_chunk * D + p * 4);
    constexpr int kVPieces = Tl::kCols / 4;
    for (int p = tid; p < C * kVPieces; p += Tl::kThreads) {
        const int row = p / kVPieces, col = (p % kVPieces) * 4;
        const bool real = t0 + row < T;
        const float* src = real ? v + ((t0 + row) * H + h) * D + col0 + col : v;
        cp_async16(&st.v[row][col], src, real);
    }
}

template <int D>
__global__ void __launch_bounds__(Tile<D>::kThreads)
    kda_chunk_recurrence_kernel(const float* v, size_t T, size_t H, size_t chunks, ChunkTensors in,
                                float* state, float* o) {
    using Tl = Tile<D>;
    using Stage = typename Tl::Stage;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    Stage* stages = reinterpret_cast<Stage*>(smem_raw);

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int gq = lane / 4, tq = lane % 4;  // fragment row group / column pair
    const int lm = lane / 8, lr = lane % 8;  // ldmatrix: matrix and row of this lane
    const size_t h = blockIdx.y;
    const int col0 = blockIdx.x * Tl::kCols;  // this CTA's first column of S
    const int wcol = 16 * warp;               // this warp's columns within the CTA
    float* Sh = state + h * D * D;            // [K][V]

    // S^T (rows: this warp's 16 value columns; columns: the D key rows) as accumulators.
    float s[D / 8][4];
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) {
        const int c = nt * 8 + 2 * tq, vc = col0 + wcol + gq;
        s[nt][0] = Sh[c * D + vc];
        s[nt][1] = Sh[(c + 1) * D + vc];
        s[nt][2] = Sh[c * D + vc + 8];
        s[nt][3] = Sh[(c + 1) * D + vc + 8];
    }

    for (int st = 0; st < Tl::kStages - 1; ++st) {
        if (st < static_cast<int>(chunks))
            load_stage<D>(stages[st], in, h * chunks + st, v, st * C, T, H, h, col0);
        cp_async_commit();
    }

    for (size_t chunk = 0; chunk < chunks; ++chunk) {
        cp_async_wait<Tl::kStages - 2>();
        __syncthreads();  // this chunk's stage is in; everyone is done with the one reused next
        const Stage& st = stages[chunk % Tl::kStages];

        float m0, m1;
        row_max(s, m0, m1);
        const RowScale ss = row_scale(m0, m1);
        uint32_t sa[D / 16][4];
#pragma unroll
        for (int ks = 0; ks < D / 16; ++ks) accum_to_a(s[2 * ks], s[2 * ks + 1], ss, sa[ks]);

        // X^T = S^T Kg^T and O^T = S^T Qg^T over the D key rows; X in two interleaved
        // accumulator chains, since it is on the path to the next chunk.
        float xe[2][4] = {}, xo[2][4] = {}, out[2][4] = {};
#pragma unroll
        for (int ks = 0; ks < D / 16; ++ks) {
            uint32_t kb[4], qb[4];
            ldmatrix_x4(kb, &st.kg[(lm >> 1) * 8 + lr][ks * 16 + (lm & 1) * 8]);
            ldmatrix_x4(qb, &st.qg[(lm >> 1) * 8 + lr][ks * 16 + (lm & 1) * 8]);
            float(&x)[2][4] = (ks & 1) ? xo : xe;
            mma_f16(x[0], sa[ks], kb[0], kb[1]);
            mma_f16(x[1], sa[ks], kb[2], kb[3]);
            mma_f16(out[0], sa[ks], qb[0], qb[1]);
            mma_f16(out[1], sa[ks], qb[2], qb[3]);
        }
        // X^T = V^T - S^T Kg^T, then d^T = X^T Tb^T.
        float x[2][4];
#pragma unroll
        for (int nt = 0; nt < 2; ++nt)
#pragma unroll
            for (int r = 0; r < 4; ++r)
                x[nt][r] = st.v[nt * 8 + 2 * tq + (r & 1)][wcol + gq + 8 * (r >> 1)] -
                           (xe[nt][r] + xo[nt][r]) * ss.inverse[r >> 1];
        row_max(x, m0, m1);
        const RowScale xs = row_scale(m0, m1);
        uint32_t xa[4], tb[4], bm[4], da[4];
        accum_to_a(x[0], x[1], xs, xa);
        ldmatrix_x4(tb, &st.tb[(lm >> 1) * 8 + lr][(lm & 1) * 8]);
        float d[2][4] = {};
        mma_f16(d[0], xa, tb[0], tb[1]);
        mma_f16(d[1], xa, tb[2], tb[3]);
#pragma unroll
        for (int nt = 0; nt < 2; ++nt)
#pragma unroll
            for (int r = 0; r < 4; ++r) d[nt][r] *= xs.inverse[r >> 1];
        row_max(d, m0, m1);
        const RowScale ds = row_scale(m0, m1);
        accum_to_a(d[0], d[1], ds, da);

        // S^T = S^T ⊙ decay (per key column) + d^T Kd, with the accumulator in d's scale
        // for the product and back after it.
#pragma unroll
        for (int np = 0; np < D / 16; ++np) {
            uint32_t kd[4];
            ldmatrix_x4_trans(kd, &st.kd[(lm & 1) * 8 + lr][(2 * np + (lm >> 1)) * 8]);
#pragma unroll
            for (int half = 0; half < 2; ++half) {
                const int nt = 2 * np + half, c = nt * 8 + 2 * tq;
                const float2 dec = *reinterpret_cast<const float2*>(&st.decay[c]);
                s[nt][0] *= dec.x * ds.scale[0];
                s[nt][1] *= dec.y * ds.scale[0];
                s[nt][2] *= dec.x * ds.scale[1];
                s[nt][3] *= dec.y * ds.scale[1];
                mma_f16(s[nt], da, kd[2 * half], kd[2 * half + 1]);
            }
        }
#pragma unroll
        for (int nt = 0; nt < D / 8; ++nt)
#pragma unroll
            for (int r = 0; r < 4; ++r) s[nt][r] *= ds.inverse[r >> 1];

        // O^T = S^T Qg^T + d^T Bm^T; write the real tokens.
        ldmatrix_x4(bm, &st.bm[(lm >> 1) * 8 + lr][(lm & 1) * 8]);
        float od[2][4] = {};
        mma_f16(od[0], da, bm[0], bm[1]);
        mma_f16(od[1], da, bm[2], bm[3]);
        const size_t t0 = chunk * C;
#pragma unroll
        for (int nt = 0; nt < 2; ++nt)
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                const size_t t = t0 + nt * 8 + 2 * tq + (r & 1);
                if (t < T)
                    o[(t * H + h) * D + col0 + wcol + gq + 8 * (r >> 1)] =
                        out[nt][r] * ss.inverse[r >> 1] + od[nt][r] * ds.inverse[r >> 1];
            }

        // Only now the copies for a later chunk: issued here, they wait behind the state
        // update instead of in front of it. Their stage was last read in the previous
        // iteration, before this iteration's barrier.
        const size_t next = chunk + Tl::kStages - 1;
        if (next < chunks)
            load_stage<D>(stages[next % Tl::kStages], in, h * chunks + next, v, next * C, T, H, h,
                          col0);
        cp_async_commit();
    }
    cp_async_wait<0>();

#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) {
        const int c = nt * 8 + 2 * tq, vc = col0 + wcol + gq;
        Sh[c * D + vc] = s[nt][0];
        Sh[(c + 1) * D + vc] = s[nt][1];
        Sh[c * D + vc + 8] = s[nt][2];
        Sh[(c + 1) * D + vc + 8] = s[nt][3];
    }
}

template <int D>
void launch(const float* q, const float* k, const float* v, const float* g, const float* beta,
            size_t T, size_t H, float scale, float* state, float* o, void* workspace,
            cudaStream_t stream) {
    using Tl = Tile<D>;
    const size_t chunks = (T + C - 1) / C;
    const ChunkTensors tensors = carve(workspace, layout(chunks, H, D));
    kda_chunk_prep_kernel<D>
        <<<dim3(static_cast<unsigned>(chunks), static_cast<unsigned>(H)), kPrepThreads, 0,
           stream>>>(q, k, g, beta, T, H, chunks, scale, tensors);
    check_launch("kda_chunk_prep");

    const size_t smem = Tl::kStages * sizeof(typename Tl::Stage);
    allow_dynamic_shared(reinterpret_cast<const void*>(kda_chunk_recurrence_kernel<D>), smem,
                         "cudaFuncSetAttribute(kda_chunk_recurrence)");
    kda_chunk_recurrence_kernel<D>
        <<<dim3(D / Tl::kCols, static_cast<unsigned>(H)), Tl::kThreads, smem, stream>>>(
            v, T, H, chunks, tensors, state, o);
    check_launch("kda_chunk_recurrence");
}

}  // namespace

bool kda_chunk_supported(size_t D) {
    return D == 16 || D == 32 || D == 64 || D == 128;
}

size_t kda_chunk_workspace_bytes(size_t T, size_t H, size_t D) {
    if (!kda_chunk_supported(D) || T == 0 || H == 0) return 0;
    return layout((T + C - 1) / C, H, D).total();
}

void kda_chunked_prefill(const float* q, const float* k, const float* v, const float* g,
                         const float* beta, size_t T, size_t H, size_t D, float scale, float* state,
                         float* o, void* workspace, cudaStream_t stream) {
    if (!kda_chunk_supported(D))
        fail(Status::Unsupported, "kda_chunked_prefill: head_dim " + std::to_string(D) +
                                      " is not one of 16, 32, 64, 128");
    if (T == 0 || H == 0) return;
    if (H > 65535)
        fail(Status::Unsupported,
             "kda_chunked_prefill: " + std::to_string(H) + " heads exceed the grid limit 65535");
    if ((T + C - 1) / C > 0x7fffffffu)
        fail(Status::Unsupported, "kda_chunked_prefill: T = " + std::to_string(T) + " too long");
    if (!q || !k || !v || !g || !beta || !state || !o)
        fail(Status::InvalidArgument, "kda_chunked_prefill: null tensor pointer");
    if (!workspace)
        fail(Status::InvalidArgument, "kda_chunked_prefill: workspace is null (needs " +
                                          std::to_string(kda_chunk_workspace_bytes(T, H, D)) +
                                          " bytes)");
    // cp.async moves 16-byte pieces of v and of the workspace; q, k, g are read in pairs.
    auto misaligned = [](const void* p, uintptr_t a) { return reinterpret_cast<uintptr_t>(p) % a; };
    if (misaligned(v, 16) || misaligned(workspace, 16) || misaligned(q, 8) || misaligned(k, 8) ||
        misaligned(g, 8))
        fail(Status::InvalidArgument,
             "kda_chunked_prefill: v and workspace must be 16-byte aligned, q, k, g 8-byte");
    switch (D) {
        case 16:
            launch<16>(q, k, v, g, beta, T, H, scale, state, o, workspace, stream);
            break;
        case 32:
            launch<32>(q, k, v, g, beta, T, H, scale, state, o, workspace, stream);
            break;
        case 64:
            launch<64>(q, k, v, g, beta, T, H, scale, state, o, workspace, stream);
            break;
        default:
            launch<128>(q, k, v, g, beta, T, H, scale, state, o, workspace, stream);
            break;
    }
}

}  // namespace kl::cuda
