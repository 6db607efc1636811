// The expanded MLA prefill on Hopper's wgmma (sm_90a), for the released shapes (nope 128,
// rope 64, v 128): the same work as mla_prefill.cu's mma.sync kernel, row for row (the
// masking, the base-2 online softmax and the chunk-to-chunk state are mla_prefill.cuh's), with
// the products on wgmma.
//
// A CTA owns 128 query rows of one head: two warpgroups of 64. Per block of 64 keys, all
// 256 threads copy K [64 keys, 192] and V^T [128, 64 keys] into a ring of 3 stages (cp.async,
// two blocks ahead), then each warpgroup computes S = Q·K^T (12 m64n64k16 steps, Q and K from
// shared memory), softmaxes it in registers, and adds P·V (4 m64n128k16 steps, P from
// registers in the accumulator layout, V^T from shared memory). wgmma's B operand is K-major:
// the values are given by column (V^T, [heads, v, keys]), which the caller writes beside the
// chunk's decompressed rows (mla_prefill_transpose_values below), zero past the chunk's keys
// up to the next 64.
//
// Tiles in shared memory are 128-byte-swizzled slabs (wgmma.cuh): Q of a warpgroup and a K
// stage are 3 slabs of [64 rows, 64 dims], a V^T stage one slab of [128 dims, 64 keys].
//
// Checked and measured on an H100 (2026-12-05: tests/gpu/test_gpu_mla_prefill.cpp; the
// 48B shapes' prefill of 16384 tokens 12-13% faster than with the mma.sync kernel,
// docs/perf/prefill.md); KL_CUDA_MLA_WGMMA=0 selects that kernel instead (the test runs
// whichever is selected).
#include <algorithm>
#include <cstdlib>
#include <string>

#include "chained_launch.cuh"
#include "cuda_util.h"
#include "mla_prefill.cuh"
#include "ops.h"
#include "tensor_core.cuh"
#include "wgmma.cuh"

namespace kl::cuda {
namespace {

using mla_prefill::PrefillParams;
using mla_prefill::probabilities_a;
using mla_prefill::Rows;

constexpr int kNope = 128, kRope = 64, kQK = kNope + kRope, kV = 128;
constexpr int kBM = 128, kBN = 64, kStages = 3, kThreads = 256;
constexpr int kSlabBytes = 64 * kSwizzleRowBytes;    // [64 rows, 128 bytes]
constexpr int kQBytes = (kQK / 64) * kSlabBytes;     // one warpgroup's Q: 3 slabs
constexpr int kKBytes = (kQK / 64) * kSlabBytes;     // a K stage: 3 slabs
constexpr int kVBytes = kV * kSwizzleRowBytes;       // a V^T stage: [128 dims, 64 keys]
constexpr size_t kSmemBytes = 2 * kQBytes + kStages * (kKBytes + kVBytes) + 1024;
static_assert(kBN * 2 == kSwizzleRowBytes, "a V^T row is one 128-byte slab row of keys");

// Byte offset of element pair (row, col) (col even) in a tile of 64-column slabs.
__device__ __forceinline__ uint32_t slab_offset(int row, int col, int rows_per_slab) {
    return (col / 64) * rows_per_slab * kSwizzleRowBytes +
           swizzle128_offset(row, (col % 64) / 8) + (col % 8) * 2;
}

__global__ void __launch_bounds__(kThreads) mla_prefill_wgmma_kernel(PrefillParams p) {
    extern __shared__ uint4 smem_raw[];
    char* smem = reinterpret_cast<char*>(smem_raw);
    smem += (1024 - (smem_u32(smem) & 1023)) & 1023;  // slabs 1024-byte aligned
    char* q_s = smem;                                 // [2][kQBytes]
    char* k_s = q_s + 2 * kQBytes;                    // [kStages][kKBytes]
    char* v_s = k_s + kStages * kKBytes;              // [kStages][kVBytes]

    wait_for_previous();  // q, the cache rows, kv and vt are the previous kernels' outputs
    release_next();

    const int tile = gridDim.x - 1 - blockIdx.x;  // the tiles with the most keys start first
    const int h = blockIdx.y, q0 = tile * kBM;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int group = warp / 4, g = lane >> 2, t4 = lane & 3;
    const int kv_width = kNope + kV, width = p.rank + kRope;

    const long long last_query = p.pos + min(q0 + kBM, p.T) - 1;
    const int visible = int(max(0LL, min((long long)p.keys, last_query - p.key_begin + 1)));
    const int blocks = (visible + kBN - 1) / kBN;

    // K rows: 16 chunks of nope from kv, 8 of rope from the cache; V^T rows: 8 chunks of keys.
    // Keys past the chunk load as zeros (K; their scores are masked) or are the caller's zeros
    // (V^T).
    auto load_block = [&](int b, int stage) {
        char* kd = k_s + stage * kKBytes;
        char* vd = v_s + stage * kVBytes;
        for (int i = tid; i < kBN * (kQK / 8); i += kThreads) {
            const int r = i / (kQK / 8), c = i - r * (kQK / 8);
            const int key = b * kBN + r;
            const bool ok = key < p.keys;
            const bf16* src =
                c < kNope / 8
                    ? p.kv + (size_t(ok ? key : 0) * p.heads + h) * kv_width + c * 8
                    : p.cache + size_t(p.key_begin + (ok ? key : 0)) * width + p.rank +
                          (c - kNope / 8) * 8;
            cp_async16(kd + (c / 8) * kSlabBytes + swizzle128_offset(r, c % 8), src, ok);
        }
        for (int i = tid; i < kV * 8; i += kThreads) {
            const int d = i >> 3, c = i & 7;
            const bf16* src =
                p.vt + (size_t(h) * kV + d) * kMlaPrefillChunkKeys + b * kBN + c * 8;
            cp_async16(vd + swizzle128_offset(d, c), src);
        }
        cp_async_commit();
    };
#pragma unroll
    for (int st = 0; st < kStages - 1; ++st) {
        if (st < blocks) load_block(st, st);
        else cp_async_commit();  // empty groups keep the wait counts aligned
    }

    // Q: fp32 -> bf16 with the softmax scale folded in; zeros past T.
    for (int i = tid; i < kBM * (kQK / 2); i += kThreads) {
        const int r = i / (kQK / 2), col = (i - r * (kQK / 2)) * 2;
        float2 v = make_float2(0.0f, 0.0f);
        if (q0 + r < p.T)
            v = *reinterpret_cast<const float2*>(p.q + (size_t(q0 + r) * p.heads + h) * kQK + col);
        *reinterpret_cast<uint32_t*>(q_s + (r / 64) * kQBytes + slab_offset(r % 64, col, 64)) =
            mla_prefill::pack_bf16(v.x * p.scale, v.y * p.scale);
    }
    fence_async_shared();  // Q's stores, to wgmma's proxy (the barrier below publishes them)

    Rows<kV / 8> rows;
    rows.begin(p, h, q0 + warp * 16, g, t4);
    const char* q_group = q_s + group * kQBytes;

    for (int b = 0; b < blocks; ++b) {
        cp_async_wait<kStages - 2>();
        fence_async_shared();  // this thread's copies, to wgmma's proxy
        // Block b has landed for every thread; every warpgroup's MMAs of block b - 1 are done
        // (each waits for its own), so its slot may be refilled.
        __syncthreads();
        if (b + kStages - 1 < blocks)
            load_block(b + kStages - 1, (b + kStages - 1) % kStages);
        else
            cp_async_commit();
        const char* kb = k_s + (b % kStages) * kKBytes;
        const char* vb = v_s + (b % kStages) * kVBytes;

        // S = Q·K^T: this warpgroup's 64 rows x 64 keys, 16 dims per step.
        float s[kBN / 8][4];
        float(&s_flat)[32] = *reinterpret_cast<float(*)[32]>(&s[0][0]);
        wgmma_fence();
#pragma unroll
        for (int step = 0; step < kQK / 16; ++step) {
            const uint32_t slab = (step / 4) * kSlabBytes, k_bytes = (step % 4) * 32;
            wgmma_m64n64k16_bf16(s_flat, wgmma_desc_sw128(q_group + slab, k_bytes),
                                 wgmma_desc_sw128(kb + slab, k_bytes), step > 0);
        }
        wgmma_commit();
        wgmma_wait<0>();
        wgmma_fence_operands(s_flat);

        // Causal and chunk-end mask: only blocks reaching past some row's last key need it.
        const long long block_first = p.key_begin + b * kBN;
        if (block_first + kBN - 1 > p.pos + q0 || b * kBN + kBN > p.keys)
            rows.mask(s, p, b * kBN, t4);
        rows.softmax(s);

        // O += P·V: 16 keys per step, P from registers.
        float(&o_flat)[64] = *reinterpret_cast<float(*)[64]>(&rows.o[0][0]);
        uint32_t pa[kBN / 16][4];
#pragma unroll
        for (int j = 0; j < kBN / 16; ++j) probabilities_a(s, j, pa[j]);
        wgmma_fence();  // o was rescaled, pa written: both by ordinary instructions
#pragma unroll
        for (int j = 0; j < kBN / 16; ++j)
            wgmma_m64n128k16_bf16_rs(o_flat, pa[j], wgmma_desc_sw128(vb, j * 32), true);
        wgmma_commit();
        wgmma_wait<0>();
        wgmma_fence_operands(o_flat);
    }
    cp_async_wait<0>();

    rows.finish(p, h, t4);
}

// kv [keys, heads, nope + v] -> vt [heads, v, kMlaPrefillChunkKeys]: a block transposes 64
// keys of one head through shared memory; keys past `keys` up to the next 64 become zeros.
constexpr int kTransposeKeys = 64, kTransposeThreads = 256;

__global__ void __launch_bounds__(kTransposeThreads)
    transpose_values_kernel(const bf16* kv, int keys, int heads, bf16* vt) {
    __shared__ bf16 tile[kTransposeKeys][kV + 8];
    wait_for_previous();  // kv is the previous kernel's output
    release_next();
    const int key0 = blockIdx.x * kTransposeKeys, h = blockIdx.y;
    for (int i = threadIdx.x; i < kTransposeKeys * (kV / 8); i += kTransposeThreads) {
        const int r = i / (kV / 8), c = i % (kV / 8);
        uint4 v = make_uint4(0, 0, 0, 0);
        if (key0 + r < keys)
            v = *reinterpret_cast<const uint4*>(
                kv + (size_t(key0 + r) * heads + h) * (kNope + kV) + kNope + c * 8);
        *reinterpret_cast<uint4*>(&tile[r][c * 8]) = v;
    }
    __syncthreads();
    // Consecutive threads take consecutive dims of one row of the tile: no bank conflicts.
    for (int i = threadIdx.x; i < kV * (kTransposeKeys / 8); i += kTransposeThreads) {
        const int d = i % kV, c = i / kV;
        uint32_t packed[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const __nv_bfloat162 pair{tile[c * 8 + 2 * k][d], tile[c * 8 + 2 * k + 1][d]};
            packed[k] = *reinterpret_cast<const uint32_t*>(&pair);
        }
        *reinterpret_cast<uint4*>(vt + (size_t(h) * kV + d) * kMlaPrefillChunkKeys + key0 +
                                  c * 8) = make_uint4(packed[0], packed[1], packed[2], packed[3]);
    }
}

// The default; KL_CUDA_MLA_WGMMA=0 takes the mma.sync kernel instead (A/B runs).
bool wgmma_prefill_asked() {
    static const bool asked = env_switch("KL_CUDA_MLA_WGMMA", true);
    return asked;
}

}  // namespace

bool mla_prefill_wgmma_usable(size_t nope, size_t rope, size_t v_dim) {
#if defined(KL_CUDA_SM90A)
    return nope == size_t(kNope) && rope == size_t(kRope) && v_dim == size_t(kV) &&
           wgmma_prefill_asked() && compute_capability() == 90;
#else
    (void)nope, (void)rope, (void)v_dim;
    return false;
#endif
}

void mla_prefill_chunk_wgmma(const mla_prefill::PrefillParams& params, bf16* vt,
                             cudaStream_t stream) {
    const unsigned key_blocks = unsigned((params.keys + kTransposeKeys - 1) / kTransposeKeys);
    launch_chained("mla_transpose_values", transpose_values_kernel,
                   dim3(key_blocks, unsigned(params.heads)), kTransposeThreads, 0, stream,
                   params.kv, params.keys, params.heads, vt);
    mla_prefill::PrefillParams p = params;
    p.vt = vt;
    allow_dynamic_shared(reinterpret_cast<const void*>(mla_prefill_wgmma_kernel), kSmemBytes,
                         "cudaFuncSetAttribute(mla_prefill_wgmma_kernel)");
    const unsigned tiles = unsigned((p.T + kBM - 1) / kBM);
    launch_chained("mla_prefill_wgmma_kernel", mla_prefill_wgmma_kernel,
                   dim3(tiles, unsigned(p.heads)), kThreads, kSmemBytes, stream, p);
}

}  // namespace kl::cuda
