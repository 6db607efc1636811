// MLA attention of a prefill piece in the expanded form (model.md "MLA layer"): the cache's
// latents are decompressed by the caller (kv = kv_b · c, per head k_nope and v, bf16), and
// each head attends with keys [k_nope, k_pe] (qk = nope + rope wide) and values v. That costs
// 2 * heads * (nope + rope + v) FLOPs per (query, key) pair, ~3.4x fewer than the absorbed
// form's 2 * heads * (rank + rope + rank) at the real shapes, plus the decompression, which
// is a GEMM of rows * rank * heads * (nope + v) and pays off once a piece has a few hundred
// queries (docs/design/kernels.md, "MLA prefill").
//
// The caller walks the keys in chunks (its decompression buffer holds one chunk); each chunk
// is one launch of mla_prefill_kernel, which keeps every query row's running softmax state
// (unnormalised output in `out`, max and sum in `state`) from chunk to chunk and normalises
// at the last one.
//
// The kernel is FlashAttention-2 shaped: a CTA owns BM = 64 query rows of one head (4 warps
// of 16 rows); per block of BN = 64 keys, K and V arrive by cp.async (two stages, zero-filled
// past the chunk), S = Q·K^T on mma.sync m16n8k16 stays in registers, the base-2 online
// softmax runs on the quads that share a row, and the probabilities become the A fragments
// of O += P·V directly, without a trip through shared memory.
#include <algorithm>
#include <cmath>
#include <string>

#include "chained_launch.cuh"
#include "cuda_util.h"
#include "mla_prefill.cuh"
#include "ops.h"
#include "tensor_core.cuh"

namespace kl::cuda {
namespace {

constexpr int kWarps = 4, kRowsPerWarp = 16, kBM = kWarps * kRowsPerWarp, kBN = 64;
constexpr int kThreads = kWarps * 32;
constexpr float kLog2e = 1.4426950408889634f;

// Shared memory: Q [BM][QK + 8], two stages of K [BN][QK + 8] and V [BN][V + 8] (bf16; the
// 16 extra bytes per row keep ldmatrix's 8 row addresses in different banks).
template <int QK, int V>
constexpr size_t prefill_smem_bytes() {
    return (size_t(kBM) * (QK + 8) + 2 * size_t(kBN) * (QK + 8) + 2 * size_t(kBN) * (V + 8)) * 2;
}

using mla_prefill::pack_bf16;
using mla_prefill::PrefillParams;
using mla_prefill::probabilities_a;
using mla_prefill::Rows;

// QK: nope + rope rounded up to 16 (zero columns past it); V: the value width.
template <int QK, int V>
__global__ void __launch_bounds__(kThreads) mla_prefill_kernel(PrefillParams p) {
    static_assert(QK % 16 == 0 && V % 16 == 0, "tile widths");
    constexpr int LDQ = QK + 8, LDV = V + 8, KS = QK / 16, NT = kBN / 8, VT = V / 8;
    extern __shared__ uint4 prefill_smem[];
    bf16* q_s = reinterpret_cast<bf16*>(prefill_smem);
    bf16* k_s = q_s + kBM * LDQ;      // [2][BN][LDQ]
    bf16* v_s = k_s + 2 * kBN * LDQ;  // [2][BN][LDV]

    wait_for_previous();  // q, the cache rows and kv are the previous kernels' outputs
    release_next();

    const int tile = gridDim.x - 1 - blockIdx.x;  // the tiles with the most keys start first
    const int h = blockIdx.y, q0 = tile * kBM;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t4 = lane & 3;
    const int qk = p.nope + p.rope, kv_width = p.nope + V, width = p.rank + p.rope;

    // Keys this tile sees in the chunk: up to its last query's position.
    const long long last_query = p.pos + min(q0 + kBM, p.T) - 1;
    const int visible = int(max(0LL, min((long long)p.keys, last_query - p.key_begin + 1)));
    const int blocks = (visible + kBN - 1) / kBN;

    auto load_block = [&](int b, int stage) {
        bf16* kd = k_s + stage * kBN * LDQ;
        bf16* vd = v_s + stage * kBN * LDV;
        constexpr int kChunks = QK / 8, vChunks = V / 8;
        for (int i = threadIdx.x; i < kBN * (kChunks + vChunks); i += kThreads) {
            const int r = i / (kChunks + vChunks), c = i - r * (kChunks + vChunks);
            const int key = b * kBN + r;
            const bool in_chunk = key < p.keys;
            const bf16* row = p.kv + (size_t(in_chunk ? key : 0) * p.heads + h) * kv_width;
            if (c < kChunks) {
                const int col = c * 8;
                const bf16* src = row;
                bool ok = in_chunk && col < qk;
                if (col < p.nope)
                    src = row + col;
                else if (ok)
                    src = p.cache + size_t(p.key_begin + key) * width + p.rank + (col - p.nope);
                cp_async16(kd + r * LDQ + col, src, ok);
            } else {
                const int col = (c - kChunks) * 8;
                cp_async16(vd + r * LDV + col, row + p.nope + col, in_chunk);
            }
        }
        cp_async_commit();
    };
    if (blocks > 0) load_block(0, 0);

    // Q tile: fp32 -> bf16 with the softmax scale folded in; zeros past qk and past T.
    for (int i = threadIdx.x; i < kBM * (QK / 2); i += kThreads) {
        const int r = i / (QK / 2), col = (i - r * (QK / 2)) * 2;
        float2 v = make_float2(0.0f, 0.0f);
        if (q0 + r < p.T && col < qk)
            v = *reinterpret_cast<const float2*>(p.q + (size_t(q0 + r) * p.heads + h) * qk + col);
        *reinterpret_cast<uint32_t*>(q_s + r * LDQ + col) = pack_bf16(v.x * p.scale, v.y * p.scale);
    }

    Rows<VT> rows;
    rows.begin(p, h, q0 + warp * kRowsPerWarp, g, t4);

    uint32_t qa[KS][4];
    for (int b = 0; b < blocks; ++b) {
        if (b + 1 < blocks) {
            load_block(b + 1, (b + 1) & 1);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (b == 0)
            for (int ks = 0; ks < KS; ++ks)
                ldmatrix_x4(qa[ks], q_s + (warp * kRowsPerWarp + (lane & 15)) * LDQ + ks * 16 +
                                        (lane >> 4) * 8);
        const bf16* kb = k_s + (b & 1) * kBN * LDQ;
        const bf16* vb = v_s + (b & 1) * kBN * LDV;

        // S = Q·K^T: 16 rows x 64 keys per warp.
        float s[NT][4];
        for (int n = 0; n < NT; ++n)
            for (int e = 0; e < 4; ++e) s[n][e] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < KS; ++ks)
#pragma unroll
            for (int n = 0; n < NT; n += 2) {
                // Matrices: keys n*8.. / n*8+8.. (lane / 16) x dims ks*16 / +8 (lane / 8 % 2).
                uint32_t kf[4];
                ldmatrix_x4(kf, kb + (n * 8 + (lane >> 4) * 8 + (lane & 7)) * LDQ + ks * 16 +
                                    ((lane >> 3) & 1) * 8);
                mma_bf16(s[n], qa[ks], kf[0], kf[1]);
                mma_bf16(s[n + 1], qa[ks], kf[2], kf[3]);
            }

        // Causal and chunk-end mask: only blocks reaching past some row's last key need it.
        const long long block_first = p.key_begin + b * kBN;
        const bool mask = block_first + kBN - 1 > p.pos + q0 || b * kBN + kBN > p.keys;
        if (mask) rows.mask(s, p, b * kBN, t4);

        rows.softmax(s);  // the 4 threads of a quad share a row

        // O += P·V: key steps of 16 (S tiles 2j, 2j + 1 are P's A fragment), value tiles in
        // pairs (ldmatrix.trans of V rows: keys 16j.. / +8 (lane / 8 % 2) x dims 16d / +8).
#pragma unroll
        for (int j = 0; j < kBN / 16; ++j) {
            uint32_t pa[4];
            probabilities_a(s, j, pa);
#pragma unroll
            for (int d = 0; d < VT; d += 2) {
                uint32_t vf[4];
                ldmatrix_x4_trans(vf, vb + (j * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * LDV +
                                          d * 8 + (lane >> 4) * 8);
                mma_bf16(rows.o[d], pa, vf[0], vf[1]);
                mma_bf16(rows.o[d + 1], pa, vf[2], vf[3]);
            }
        }
        __syncthreads();  // this stage is refilled two blocks on
    }

    rows.finish(p, h, t4);
}

template <int QK, int V>
void launch_prefill(const PrefillParams& params, cudaStream_t stream) {
    auto kernel = mla_prefill_kernel<QK, V>;
    constexpr size_t smem = prefill_smem_bytes<QK, V>();
    allow_dynamic_shared(reinterpret_cast<const void*>(kernel), smem,
                         "cudaFuncSetAttribute(mla_prefill_kernel)");
    const unsigned tiles = unsigned((params.T + kBM - 1) / kBM);
    launch_chained("mla_prefill_kernel", kernel, dim3(tiles, unsigned(params.heads)), kThreads,
                   smem, stream, params);
}

// The (nope + rope, v) pairs built: the released model's and the test presets'.
int shape_index(size_t nope, size_t rope, size_t v_dim) {
    const size_t qk = nope + rope;
    if (v_dim == 128 && qk <= 192 && qk > 176) return 3;
    if (v_dim == 64 && qk <= 96 && qk > 80) return 2;
    if (v_dim == 32 && qk <= 48 && qk > 32) return 1;
    if (v_dim == 16 && qk <= 32 && qk > 16) return 0;
    return -1;
}

}  // namespace

bool mla_prefill_supported(size_t T, size_t heads, size_t nope, size_t rope, size_t v_dim,
                           size_t rank) {
    return T >= kMlaPrefillMinTokens && T <= size_t(INT32_MAX) / 2 && heads > 0 && heads <= 65535 &&
           nope % 8 == 0 && rope % 8 == 0 && rank % 8 == 0 && shape_index(nope, rope, v_dim) >= 0;
}

MlaPrefillBuffers mla_prefill_buffers(void* workspace, size_t T, size_t heads, size_t nope,
                                      size_t rope, size_t v_dim, size_t rank) {
    const auto round = [](size_t b) { return (b + 255) / 256 * 256; };
    const size_t kv_values = kMlaPrefillChunkKeys * heads * (nope + v_dim);
    const bool vt = mla_prefill_wgmma_usable(nope, rope, v_dim);
    const size_t parts[5] = {round(kMlaPrefillChunkKeys * rank * sizeof(bf16)),
                             round(kv_values * sizeof(float)), round(kv_values * sizeof(bf16)),
                             round(T * heads * sizeof(float2)),
                             vt ? heads * v_dim * kMlaPrefillChunkKeys * sizeof(bf16) : 0};
    MlaPrefillBuffers b;
    char* base = static_cast<char*>(workspace);  // null: only the size is wanted
    if (base) {
        b.latent = reinterpret_cast<bf16*>(base);
        b.kv_f32 = reinterpret_cast<float*>(base + parts[0]);
        b.kv = reinterpret_cast<bf16*>(base + parts[0] + parts[1]);
        b.state = reinterpret_cast<float2*>(base + parts[0] + parts[1] + parts[2]);
        if (vt) b.vt = reinterpret_cast<bf16*>(base + parts[0] + parts[1] + parts[2] + parts[3]);
    }
    b.bytes = parts[0] + parts[1] + parts[2] + parts[3] + parts[4];
    return b;
}

void mla_prefill_chunk(const float* q, size_t T, uint64_t pos, const bf16* cache, const bf16* kv,
                       uint64_t key_begin, size_t keys, bool first, bool last, size_t heads,
                       size_t nope, size_t rope, size_t v_dim, size_t rank, float2* state,
                       float* out, cudaStream_t stream, bf16* vt) {
    if (!mla_prefill_supported(T, heads, nope, rope, v_dim, rank))
        fail(Status::InvalidArgument, "mla_prefill_chunk: unsupported shape");
    if (!q || !cache || !kv || !state || !out || keys == 0 || keys > kMlaPrefillChunkKeys ||
        key_begin + keys > pos + T)
        fail(Status::InvalidArgument, "mla_prefill_chunk: bad arguments");
    PrefillParams params{q,
                         cache,
                         kv,
                         nullptr,
                         state,
                         out,
                         float(1.0 / std::sqrt(double(nope + rope))) * kLog2e,
                         int(T),
                         int(heads),
                         int(nope),
                         int(rope),
                         int(rank),
                         static_cast<long long>(pos),
                         static_cast<long long>(key_begin),
                         int(keys),
                         first,
                         last};
    if (vt && mla_prefill_wgmma_usable(nope, rope, v_dim)) {
        mla_prefill_chunk_wgmma(params, vt, stream);
        return;
    }
    switch (shape_index(nope, rope, v_dim)) {
        case 0:
            launch_prefill<32, 16>(params, stream);
            break;
        case 1:
            launch_prefill<48, 32>(params, stream);
            break;
        case 2:
            launch_prefill<96, 64>(params, stream);
            break;
        default:
            launch_prefill<192, 128>(params, stream);
            break;
    }
}

}  // namespace kl::cuda
