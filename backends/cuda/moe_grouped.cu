// Prefill MoE experts with no host round trip. The n * top_k (token, expert) slots are
// grouped by expert on the device (a counting sort, stable in slot order so that every run
// computes the same thing), each expert's rows are cut into tiles of tile_m rows, and two
// grouped tensor-core GEMMs (mma.sync m16n8k16 bf16, fp32 accumulation, cp.async multi-stage
// pipeline) cover all experts in one launch each: gate and up together with silu(g) * u in
// the epilogue (bf16 act), then down with the slot weight in the epilogue (fp32 y, slot
// order). A per-token combine adds each token's top_k rows in a fixed order: no float atomics,
// so results do not depend on scheduling.
// FP8 experts run W8A8 on the FP8 tensor cores (mma.sync m16n8k32 e4m3): x and act are
// quantized per row and 128 columns (quantize_activations_fp8), a pipeline stage covers one
// 128-column scale block, and each stage's fp32 partial sums are scaled by the row's and the
// weight block's scales before they join the accumulators. INT4 experts are dequantized to
// bf16 as their tiles are loaded: the weight tile of the next stage is fetched into registers
// before the current stage's MMAs and converted into shared memory after them, so the MMAs
// see the same bf16 tiles as a bf16 expert holding those values.
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "cuda_util.h"
#include "moe_grouped_tuning.h"
#include "ops.h"
#include "tensor_core.cuh"
#include "wgmma.cuh"

namespace kl::cuda {
namespace {

constexpr int kBK = 64;        // K per pipeline stage: 128-byte smem rows = 8 chunks of 16 B
constexpr int kMinTileM = 32;  // the smallest tile height; sizes the tile table
constexpr int kPlanThreads = 1024;
constexpr int kScatterThreads = 1024;

// Device views into the caller's workspace.
struct Layout {
    size_t expert_count, expert_begin, num_tiles, tile_expert, tile_begin, tile_end, sorted_slot,
        act, y, x_codes, x_scales, act_codes, act_scales, total;
};

size_t align_up(size_t bytes) {
    return (bytes + 255) & ~size_t(255);
}

// Row tiles of `tile_m` over all experts: sum_e ceil(c_e / tile_m) <= used + (n k) / tile_m.
size_t max_row_tiles(size_t slots, size_t experts, size_t tile_m) {
    return std::min(experts, slots) + slots / tile_m;
}

Layout layout(size_t n, size_t hidden, size_t inter, size_t experts, size_t top_k) {
    const size_t slots = n * top_k, tiles = max_row_tiles(slots, experts, kMinTileM);
    Layout l{};
    size_t at = 0;
    auto take = [&](size_t bytes) {
        const size_t here = at;
        at += align_up(bytes);
        return here;
    };
    l.expert_count = take(experts * 4);
    l.expert_begin = take(experts * 4);
    l.num_tiles = take(4);
    l.tile_expert = take(tiles * 4);
    l.tile_begin = take(tiles * 4);
    l.tile_end = take(tiles * 4);
    l.sorted_slot = take(slots * 4);
    l.act = take(slots * inter * sizeof(bf16));
    l.y = take(slots * hidden * sizeof(float));
    // FP8 experts' activations (W8A8): codes and per-row scales of x and of act.
    l.x_codes = take(n * hidden);
    l.x_scales = take(n * quant_scale_cols(hidden) * sizeof(float));
    l.act_codes = take(slots * inter);
    l.act_scales = take(slots * quant_scale_cols(inter) * sizeof(float));
    l.total = at;
    return l;
}

// ---- grouping ----------------------------------------------------------------------------

// One block: per-expert counts (shared-memory histogram), exclusive scans of rows and of row
// tiles, and the tile table (expert, first row, end row) in expert order. Slots whose expert
// id is out of range are left out (they contribute nothing).
__global__ void plan_kernel(const int32_t* chosen, int slots, int experts, int tile_m,
                            int32_t* expert_count, int32_t* expert_begin, int32_t* num_tiles,
                            int32_t* tile_expert, int32_t* tile_begin, int32_t* tile_end) {
    extern __shared__ int32_t counts[];  // [experts]
    __shared__ int32_t warp_rows[32], warp_tiles[32];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    for (int e = tid; e < experts; e += blockDim.x) counts[e] = 0;
    __syncthreads();
    // Lanes with the same expert add once together: skewed routing (every slot to one
    // expert) would otherwise serialise n * top_k atomics on one counter.
    for (int base = 0; base < slots; base += blockDim.x) {
        const int e = base + tid < slots ? chosen[base + tid] : -1;
        const unsigned peers = __match_any_sync(0xffffffffu, e);
        if (e >= 0 && e < experts && lane == __ffs(peers) - 1) atomicAdd(&counts[e], __popc(peers));
    }
    __syncthreads();
    // Each thread owns a contiguous run of experts, so the scan is one pass per thread plus
    // a block scan of the per-thread totals.
    const int per = (experts + blockDim.x - 1) / blockDim.x;
    const int lo = min(experts, tid * per), hi = min(experts, lo + per);
    int rows = 0, tiles = 0;
    for (int e = lo; e < hi; ++e) {
        rows += counts[e];
        tiles += (counts[e] + tile_m - 1) / tile_m;
    }
    int rows_incl = rows, tiles_incl = tiles;
    for (int d = 1; d < 32; d <<= 1) {
        const int r = __shfl_up_sync(0xffffffffu, rows_incl, d);
        const int t = __shfl_up_sync(0xffffffffu, tiles_incl, d);
        if (lane >= d) rows_incl += r, tiles_incl += t;
    }
    if (lane == 31) warp_rows[warp] = rows_incl, warp_tiles[warp] = tiles_incl;
    __syncthreads();
    int row = rows_incl - rows, tile = tiles_incl - tiles;
    for (int w = 0; w < warp; ++w) row += warp_rows[w], tile += warp_tiles[w];
    for (int e = lo; e < hi; ++e) {
        const int count = counts[e];
        expert_count[e] = count;
        expert_begin[e] = row;
        for (int r = 0; r < count; r += tile_m, ++tile) {
            tile_expert[tile] = e;
            tile_begin[tile] = row + r;
            tile_end[tile] = row + min(count, r + tile_m);
        }
        row += count;
    }
    if (tid == blockDim.x - 1) *num_tiles = tile;
}

// Block e: the slots routed to expert e, in slot order, at expert_begin[e] onwards. Each
// thread owns 4 consecutive slots of a chunk, so a block scan of the per-thread hit counts
// ranks them in slot order; chunks are taken in order.
__global__ void __launch_bounds__(kScatterThreads)
    scatter_kernel(const int32_t* chosen, int slots, const int32_t* expert_count,
                   const int32_t* expert_begin, int32_t* sorted_slot) {
    constexpr int kPerThread = 4, kChunk = kScatterThreads * kPerThread;
    __shared__ int32_t warp_totals[kScatterThreads / 32];
    const int e = blockIdx.x, count = expert_count[e];
    if (count == 0) return;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int32_t* out = sorted_slot + expert_begin[e];
    int done = 0;  // the same in every thread: the loop bound below is block-uniform
    for (int base = 0; base < slots && done < count; base += kChunk) {
        const int first = base + threadIdx.x * kPerThread;
        bool hit[kPerThread];
        int mine = 0;
#pragma unroll
        for (int j = 0; j < kPerThread; ++j) {
            hit[j] = first + j < slots && chosen[first + j] == e;
            mine += hit[j];
        }
        int inclusive = mine;
        for (int d = 1; d < 32; d <<= 1) {
            const int v = __shfl_up_sync(0xffffffffu, inclusive, d);
            if (lane >= d) inclusive += v;
        }
        if (lane == 31) warp_totals[warp] = inclusive;
        __syncthreads();
        int at = done + inclusive - mine, total = 0;
        for (int w = 0; w < kScatterThreads / 32; ++w) {
            const int t = warp_totals[w];
            at += w < warp ? t : 0;
            total += t;
        }
#pragma unroll
        for (int j = 0; j < kPerThread; ++j)
            if (hit[j]) out[at++] = first + j;
        done += total;
        __syncthreads();  // warp_totals is rewritten by the next chunk
    }
}

// ---- grouped GEMM ---------------------------------------------------------------------------

// Element offset of (row, 16-byte chunk) in a [rows, kBK] bf16 tile: chunks are XOR-swizzled
// by row so that ldmatrix's 8 rows and cp.async's stores hit distinct banks.
__device__ __forceinline__ int swizzle(int row, int chunk) {
    return row * kBK + ((chunk ^ (row & 7)) << 3);
}

// ---- weight formats ----------------------------------------------------------------------

// Row stride of an INT4 matrix in 32-bit words (the last word of a row padded).
__host__ __device__ constexpr int int4_row_words(int cols) {
    return (cols + 7) / 8;
}

// The fp32 scale of weight (row, col) of a [rows, cols] quantized matrix (ops.h).
template <WeightCode kCode>
__device__ __forceinline__ float scale_at(const float* scales, int row, int col, int cols) {
    const int scale_cols = (cols + kQuantBlock - 1) / kQuantBlock;
    const int scale_row = kCode == WeightCode::Fp8 ? row / kQuantBlock : row;
    return __ldg(scales + size_t(scale_row) * scale_cols + col / kQuantBlock);
}

// The exact float of an INT4 nibble (held as q + 8): 2^23 + nibble has the nibble as its low
// mantissa bits, and subtracting 2^23 + 8 is exact.
__device__ __forceinline__ float int4_value(uint32_t word, int shift) {
    return __uint_as_float(0x4B000000u | ((word >> shift) & 0xFu)) - 8388616.0f;
}

// Two FP8 e4m3 codes (low byte first) as floats: the hardware conversion to half is exact for
// every finite e4m3 value, and half to float is exact.
__device__ __forceinline__ float2 fp8x2_values(uint32_t pair) {
    const __half2_raw h =
        __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(pair & 0xFFFFu), __NV_E4M3);
    return __half22float2(__half2(h));
}

// Weight (row, col) of one expert matrix [rows, cols] as bf16: the format's value (code *
// scale in fp32, ops.h) rounded to nearest, the same bf16 the tensor-core path's tiles hold.
template <WeightCode kCode>
__device__ __forceinline__ float weight_at(const void* w, const float* scales, int row, int col,
                                           int cols) {
    if constexpr (kCode == WeightCode::Bf16) {
        return __bfloat162float(static_cast<const bf16*>(w)[size_t(row) * cols + col]);
    } else if constexpr (kCode == WeightCode::Fp8) {
        const uint8_t code = static_cast<const uint8_t*>(w)[size_t(row) * cols + col];
        const float value = fp8x2_values(code).x * scale_at<kCode>(scales, row, col, cols);
        return __bfloat162float(__float2bfloat16_rn(value));
    } else {
        const uint32_t word =
            static_cast<const uint32_t*>(w)[size_t(row) * int4_row_words(cols) + col / 8];
        const float value =
            int4_value(word, 4 * (col % 8)) * scale_at<kCode>(scales, row, col, cols);
        return __bfloat162float(__float2bfloat16_rn(value));
    }
}

// The codes of one 16-byte weight-tile chunk (8 consecutive k of one row: one word of INT4
// nibbles) and their scale, held in registers between the global load and the conversion
// into shared memory.
struct QuantChunk {
    uint32_t codes;
    float scale;
};

// Loads chunk (row, k .. k + 7) of an INT4 [N, K] matrix, K % 8 == 0. Out-of-range chunks
// get codes of zero and scale 0, so they convert to +0 as cp.async's zero fill does.
__device__ __forceinline__ QuantChunk fetch_chunk(const void* w, const float* scales, int row,
                                                  int k, int N, int K) {
    QuantChunk q;
    if (row < N && k < K) {
        q.codes = __ldg(static_cast<const uint32_t*>(w) + size_t(row) * (K / 8) + k / 8);
        q.scale = scale_at<WeightCode::Int4>(scales, row, k, K);
    } else {
        q.codes = 0x88888888u;
        q.scale = 0.0f;
    }
    return q;
}

__device__ __forceinline__ uint32_t bf16x2_bits(float a, float b) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<const uint32_t*>(&v);
}

// The chunk's 8 values (code * scale, fp32) rounded to bf16, stored as one 16-byte chunk.
__device__ __forceinline__ void store_chunk(bf16* dst, const QuantChunk& q) {
    uint32_t out[4];
#pragma unroll
    for (int p = 0; p < 4; ++p)
        out[p] = bf16x2_bits(int4_value(q.codes, 8 * p) * q.scale,
                             int4_value(q.codes, 8 * p + 4) * q.scale);
    *reinterpret_cast<uint4*>(dst) = make_uint4(out[0], out[1], out[2], out[3]);
}

// Zeroes a thread's accumulator fragments ([M][N][4] registers).
template <int M, int N>
__device__ __forceinline__ void zero_fragments(float (&f)[M][N][4]) {
#pragma unroll
    for (int i = 0; i < M; ++i)
#pragma unroll
        for (int j = 0; j < N; ++j)
#pragma unroll
            for (int v = 0; v < 4; ++v) f[i][j][v] = 0.0f;
}

struct GemmArgs {
    const void* a;             // gate/up: x [n, K] (rows gathered by token); down: act [rows, K]
    const float* a_scales;     // FP8: a's scales [rows of a, ceil(K / 128)] (W8A8)
    const void* const* w;      // gate/up: w1; down: w2 ([N, K] per expert, in the kernel's code)
    const void* const* w_up;   // gate/up: w3; down: unused
    const float* const* s;     // scales of w (quantized codes only)
    const float* const* s_up;  // scales of w_up
    int K, N, top_k, col_tiles;
    const int32_t *num_tiles, *tile_expert, *tile_begin, *tile_end, *sorted_slot;
    const float* weights;  // down: per slot
    bf16* act;             // gate/up output [rows, N], grouped order
    float* y;              // down output [slots, N], slot order, weighted
};

// One CTA per (row tile, column tile); the column tile varies fastest, so CTAs that run
// together share a row tile (A from L2) and a few experts' weights (B from L2).
// kGateUp: the B tile interleaves 8-row blocks of w1 and w3 (gate, up, gate, up, ...), so
// each thread holds gate and up accumulators of the same (row, column) for the epilogue;
// a CTA then produces BN / 2 act columns.
// kCode: the weights' format. Bf16: A and B tiles go global -> shared by cp.async. Fp8 (W8A8):
// so do A's and B's e4m3 codes, 128 of K per stage (the same 128-byte smem rows), and each
// stage's MMAs sum into `part`, which joins `acc` scaled by the row's and the weight block's
// scales; needs K % 16 == 0. Int4: B goes through registers (fetch_chunk before the current
// stage's MMAs, store_chunk after), which needs K % 8 == 0.
// kWgmma (bf16 or W8A8 on sm_90a): each warpgroup's 64 rows x the 128 B rows of a stage run as
// four wgmma (m64n128k16 bf16 / k32 e4m3) from the stage's tiles as they are (the swizzle above
// is wgmma's 128-byte swizzle once the tiles start 1024-byte aligned), into `acc` (bf16) or
// `part` (W8A8), whose registers are the mma.sync path's [0][0..15][4] for a 16 x 128 warp
// tile (wgmma.cuh): the scaling and the epilogue are the same code.
// kProducerWarps > 0 (with kWgmma): warp-specialized. That many more warps only load the
// stages (cp.async, each stage's landing signalled on an mbarrier) while the warpgroups only
// multiply, each at its own pace: no barrier of the whole CTA per stage (the mainloop below).
// Otherwise every thread loads and multiplies, and each stage ends in a CTA barrier.
template <int BM, int BN, int WARPS_M, int WARPS_N, int STAGES, bool kGateUp, WeightCode kCode,
          bool kWgmma, int kProducerWarps>
__global__ void __launch_bounds__((WARPS_M * WARPS_N + kProducerWarps) * 32)
    grouped_gemm_kernel(const GemmArgs args) {
    constexpr int kMathThreads = WARPS_M * WARPS_N * 32;
    constexpr int kBlockThreads = kMathThreads + kProducerWarps * 32;
    constexpr bool kSpecialized = kProducerWarps > 0;
    constexpr int kLoaders = kSpecialized ? kProducerWarps * 32 : kMathThreads;  // load a stage
    constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N, MF = WM / 16, NF = WN / 8;
    constexpr bool kW8A8 = kCode == WeightCode::Fp8;
    constexpr bool kQuant = kCode == WeightCode::Int4;  // B dequantized through registers
    constexpr int kBytes = kW8A8 ? 1 : 2;               // per element of A and of bf16/FP8 B
    constexpr int kStageK = kBK * 2 / kBytes;           // K per stage: 64 bf16 or 128 FP8
    constexpr int kChunkK = kStageK / 8;                // K per 16-byte chunk
    constexpr int kBChunks = BN * 8 / kLoaders;         // B chunks per loader per stage
    static_assert(WM % 16 == 0 && WN % 16 == 0, "warp tile: m16 and pairs of n8 fragments");
    static_assert((BM * 8) % kLoaders == 0 && (BN * 8) % kLoaders == 0, "whole chunks per loader");
    static_assert(!kW8A8 || kStageK == kQuantBlock, "an FP8 stage is one scale block of K");
    static_assert(!kWgmma || (!kQuant && BN == 128 && WARPS_N == 1 && WM == 16 && BM % 64 == 0),
                  "wgmma: bf16 or FP8, warpgroups of 64 rows by 128 columns");
    static_assert(!kSpecialized || kWgmma, "the warp-specialized mainloop is wgmma's");
    const int tile = blockIdx.x / args.col_tiles, col_tile = blockIdx.x % args.col_tiles;
    if (tile >= *args.num_tiles) return;  // the grid is sized for the worst case

    extern __shared__ uint4 smem[];
    // wgmma reads whole swizzle atoms: the tiles start 1024-byte aligned (1 KB of slack).
    const uint32_t misalign = kWgmma ? (1024 - (smem_u32(smem) & 1023)) & 1023 : 0;
    // FP8 tiles: the same bytes, 2 codes each.
    bf16* a_tiles = reinterpret_cast<bf16*>(reinterpret_cast<char*>(smem) + misalign);
    bf16* b_tiles = a_tiles + STAGES * BM * kBK;
    __shared__ const char* a_rows[BM];  // source row of each tile row, null for padding
    __shared__ const float* a_scale_rows[kW8A8 ? BM : 1];  // W8A8: each row's scales
    __shared__ int row_slot[BM];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int warp_m = warp / WARPS_N, warp_n = warp % WARPS_N;
    const int expert = args.tile_expert[tile];
    const int row_begin = args.tile_begin[tile], row_end = args.tile_end[tile];
    const int K = args.K, N = args.N;
    const int scale_cols = (K + kQuantBlock - 1) / kQuantBlock;
    for (int r = tid; r < BM; r += kBlockThreads) {
        const int p = row_begin + r;
        const bool real = p < row_end;
        const int slot = real ? args.sorted_slot[p] : -1;
        row_slot[r] = slot;
        const size_t src_row = kGateUp ? size_t(slot / args.top_k) : size_t(p);
        a_rows[r] = real ? static_cast<const char*>(args.a) + src_row * K * kBytes : nullptr;
        if constexpr (kW8A8)
            a_scale_rows[r] = real ? args.a_scales + src_row * scale_cols : nullptr;
    }
    __syncthreads();

    const void* wq = args.w[expert];  // the weights as stored
    const void* wq_up = kGateUp ? args.w_up[expert] : nullptr;
    const char* w = static_cast<const char*>(wq);
    const char* w_up = static_cast<const char*>(wq_up);
    const float* s = kCode != WeightCode::Bf16 ? args.s[expert] : nullptr;
    const float* s_up = kCode != WeightCode::Bf16 && kGateUp ? args.s_up[expert] : nullptr;
    const int n0 = col_tile * (kGateUp ? BN / 2 : BN);  // first output column

    // B tile row r: its weight row and matrix (gate/up interleaved in 8-row blocks).
    auto b_row = [&](int r, int& w_row, bool& up) {
        if (kGateUp) {
            const int block = r >> 3;
            w_row = n0 + (block >> 1) * 8 + (r & 7);
            up = block & 1;
        } else {
            w_row = n0 + r;
            up = false;
        }
    };
    // A always, B too for bf16 and FP8 weights (cp.async); INT4 B goes through fetch_b/store_b.
    // `loader`: this thread's index among the kLoaders threads that load.
    auto load_stage = [&](int stage, int kt, int loader) {
        const int k0 = kt * kStageK;
        bf16* as = a_tiles + stage * BM * kBK;
        bf16* bs = b_tiles + stage * BN * kBK;
#pragma unroll
        for (int it = 0; it < BM * 8 / kLoaders; ++it) {
            const int c = loader + it * kLoaders, r = c >> 3, chunk = c & 7;
            const int k = k0 + chunk * kChunkK;
            const char* src = a_rows[r];
            const bool ok = src != nullptr && k < K;
            cp_async16(as + swizzle(r, chunk), ok ? src + size_t(k) * kBytes : w, ok);
        }
        if constexpr (!kQuant) {
#pragma unroll
            for (int it = 0; it < kBChunks; ++it) {
                const int c = loader + it * kLoaders, r = c >> 3, chunk = c & 7;
                const int k = k0 + chunk * kChunkK;
                int w_row;
                bool up;
                b_row(r, w_row, up);
                const char* base = up ? w_up : w;
                const bool ok = w_row < N && k < K;
                cp_async16(bs + swizzle(r, chunk), ok ? base + (size_t(w_row) * K + k) * kBytes : w,
                           ok);
            }
        }
    };
    // A thread's INT4 chunks (tile rows tid / 8 + it * kLoaders / 8) are, by b_row, weight
    // rows q_row0 + it * kRowStep of one matrix: the gate/up blocks alternate every 8 tile
    // rows, and kLoaders / 8 tile rows is an even number of blocks. Stepping from one row
    // keeps fewer addresses live than resolving each chunk's row.
    static_assert(!kQuant || (!kSpecialized && kLoaders % 128 == 0),
                  "a thread's chunks stay in one matrix");
    constexpr int kRowStep = kGateUp ? kLoaders / 16 : kLoaders / 8;
    int q_row0;
    bool q_up;
    b_row(tid >> 3, q_row0, q_up);
    const void* qw = q_up ? wq_up : wq;
    const float* qs = q_up ? s_up : s;
    QuantChunk pending[kQuant ? kBChunks : 1];  // stage `next`'s B codes, between fetch and store
    auto fetch_b = [&](int kt) {
        const int k = kt * kStageK + (tid & 7) * 8;
#pragma unroll
        for (int it = 0; it < kBChunks; ++it)
            pending[it] = fetch_chunk(qw, qs, q_row0 + it * kRowStep, k, N, K);
    };
    auto store_b = [&](int stage) {
        bf16* bs = b_tiles + stage * BN * kBK;
#pragma unroll
        for (int it = 0; it < kBChunks; ++it) {
            const int c = tid + it * kLoaders;
            store_chunk(bs + swizzle(c >> 3, c & 7), pending[it]);
        }
    };

    float acc[MF][NF][4];
    float part[kW8A8 ? MF : 1][kW8A8 ? NF : 1][4];  // W8A8: a stage's sums, unscaled
    zero_fragments(acc);
    // W8A8: the weight scales of this CTA's columns, one 128-row block of w (and of w_up).
    const float* s_block = kW8A8 ? s + size_t(n0 / kQuantBlock) * scale_cols : nullptr;
    const float* s_up_block =
        kW8A8 && kGateUp ? s_up + size_t(n0 / kQuantBlock) * scale_cols : nullptr;

    // W8A8: stage kt's scales, loaded before its MMAs so that their latency hides.
    struct StageScales {
        float row[kW8A8 ? MF : 1][2];
        float w, w_up;
    };
    auto stage_scales = [&](int kt) {
        StageScales sc{};
        if constexpr (kW8A8) {
#pragma unroll
            for (int i = 0; i < MF; ++i)
#pragma unroll
                for (int half = 0; half < 2; ++half) {
                    const float* rs = a_scale_rows[warp_m * WM + i * 16 + (lane >> 2) + half * 8];
                    sc.row[i][half] = rs ? __ldg(rs + kt) : 0.0f;
                }
            sc.w = __ldg(s_block + kt);
            sc.w_up = kGateUp ? __ldg(s_up_block + kt) : sc.w;
        }
        return sc;
    };
    // W8A8: a stage's sums join the accumulators, scaled by the row's and the weight block's
    // scales. Fragment j is weight rows of block warp_n * WN / 8 + j: gate for even j, up for
    // odd (WN / 8 is even).
    auto add_scaled = [&](const float(&p)[kW8A8 ? MF : 1][kW8A8 ? NF : 1][4],
                          const StageScales& sc) {
        if constexpr (kW8A8) {
#pragma unroll
            for (int i = 0; i < MF; ++i)
#pragma unroll
                for (int j = 0; j < NF; ++j) {
                    const float ws = kGateUp && (j & 1) ? sc.w_up : sc.w;
#pragma unroll
                    for (int v = 0; v < 4; ++v)
                        acc[i][j][v] += p[i][j][v] * (sc.row[i][v >> 1] * ws);
                }
        }
    };
    // wgmma: this warpgroup's 64 rows of stage `stage` times its 128 B rows into d (bf16: the
    // accumulators; W8A8: a stage's sums, overwritten by the first k-step), committed as one
    // group.
    auto wgmma_stage = [&](int stage, float(&d)[64]) {
        const bf16* as_group = a_tiles + stage * BM * kBK + (warp_m / 4) * 64 * kBK;
        const bf16* bs = b_tiles + stage * BN * kBK;
        wgmma_fence();
#pragma unroll
        for (int step = 0; step < 4; ++step) {  // 32 bytes of K per step
            const uint64_t da = wgmma_desc_sw128(as_group, step * 32);
            const uint64_t db = wgmma_desc_sw128(bs, step * 32);
            if constexpr (kW8A8)
                wgmma_m64n128k32_e4m3(d, da, db, step > 0);
            else  // acc starts at zero: accumulating from the first step is exact
                wgmma_m64n128k16_bf16(d, da, db, true);
        }
        wgmma_commit();
    };
    // acc or part as wgmma's 64 registers (wgmma tiles: MF = 1, NF = 16).
    auto as_wgmma = [](auto& r) -> float(&)[64] {
        static_assert(sizeof(r) == 64 * sizeof(float), "a wgmma tile's 64 registers");
        return *reinterpret_cast<float(*)[64]>(&r[0][0][0]);
    };

    const int k_tiles = (K + kStageK - 1) / kStageK;
    if constexpr (kSpecialized) {
        // Warp-specialized. The producer warps fill the ring of STAGES slots in order: stage kt
        // goes to slot kt % STAGES once the warpgroups have released the stage that held it
        // (kt - STAGES: phase kt / STAGES - 1 of empty[slot]), and each producer thread's
        // cp.async.mbarrier arrival on full[slot] comes when its copies have landed. Each
        // warpgroup waits for full[slot], multiplies and releases the slot: bf16 keeps one
        // wgmma group in flight (stage kt - 1 is released after stage kt's MMAs are issued);
        // W8A8 waits for each stage's group, as its sums are scaled into the accumulators at
        // once (ptxas serializes wgmma when other instructions read a group's registers while
        // a later group is in flight), and relies on the other warpgroup, which no CTA barrier
        // holds in step, to keep the tensor cores busy meanwhile.
        // A warpgroup whose 64 rows are all padding (an expert's last tile holding 64 rows or
        // fewer) neither multiplies nor releases: the empty barriers count only the others.
        constexpr int kGroups = WARPS_M / 4;
        const int active_groups = min(kGroups, (row_end - row_begin + 63) / 64);
        __shared__ uint64_t full[STAGES], empty[STAGES];
        if (tid == 0) {
#pragma unroll
            for (int st = 0; st < STAGES; ++st) {
                mbarrier_init(&full[st], kLoaders);
                mbarrier_init(&empty[st], active_groups * 128);
            }
        }
        __syncthreads();  // the barriers initialized; the last barrier of the whole CTA
        if (warp >= WARPS_M * WARPS_N) {  // a producer
            const int loader = tid - kMathThreads;
            for (int kt = 0; kt < k_tiles; ++kt) {
                const int slot = kt % STAGES;
                if (kt >= STAGES) mbarrier_wait(&empty[slot], (kt / STAGES - 1) & 1);
                load_stage(slot, kt, loader);
                cp_async_arrive_noinc(&full[slot]);
            }
            cp_async_wait_all();  // leave no copy behind
            return;
        }
        if (warp / 4 >= active_groups) return;  // only padding rows: nothing to compute
        for (int kt = 0; kt < k_tiles; ++kt) {
            const int slot = kt % STAGES;
            const StageScales sc = stage_scales(kt);  // its loads overlap the wait
            mbarrier_wait(&full[slot], (kt / STAGES) & 1);
            fence_async_shared();  // the producers' copies, to wgmma's proxy
            if constexpr (kW8A8) {
                wgmma_stage(slot, as_wgmma(part));
                wgmma_wait<0>();
                wgmma_fence_operands(as_wgmma(part));
                mbarrier_arrive(&empty[slot]);
                add_scaled(part, sc);
            } else {
                wgmma_stage(slot, as_wgmma(acc));
                wgmma_wait<1>();  // stage kt - 1's group has completed
                if (kt > 0) mbarrier_arrive(&empty[(kt - 1) % STAGES]);
            }
        }
        wgmma_wait<0>();
        wgmma_fence_operands(as_wgmma(acc));
    } else {
#pragma unroll
        for (int st = 0; st < STAGES - 1; ++st) {
            if (st < k_tiles) {
                load_stage(st, st, tid);
                if constexpr (kQuant) fetch_b(st), store_b(st);
            }
            cp_async_commit();  // always commit, so the wait counts below stay aligned
        }
        for (int kt = 0; kt < k_tiles; ++kt) {
            cp_async_wait<STAGES - 2>();
            if constexpr (kWgmma) fence_async_shared();  // this thread's copies, to wgmma's proxy
            // Stage kt has landed for every thread, and everyone is done with stage kt - 1,
            // which the prefetch below overwrites.
            __syncthreads();
            // INT4 B of stage `next` is stored after this stage's MMAs; its slot, stage
            // kt - 1's, is free (the barrier above), and the barrier at the top of iteration
            // `next` publishes the stores before anyone reads them.
            const int next = kt + STAGES - 1;
            if (next < k_tiles) {
                load_stage(next % STAGES, next, tid);
                if constexpr (kQuant) fetch_b(next);
            }
            cp_async_commit();
            const StageScales sc = stage_scales(kt);
            if constexpr (kWgmma) {
                float(&d)[64] = [&]() -> float(&)[64] {
                    if constexpr (kW8A8)
                        return as_wgmma(part);
                    else
                        return as_wgmma(acc);
                }();
                wgmma_stage(kt % STAGES, d);
                wgmma_wait<0>();
                wgmma_fence_operands(d);
            } else {
                const bf16* as = a_tiles + (kt % STAGES) * BM * kBK;
                const bf16* bs = b_tiles + (kt % STAGES) * BN * kBK;
                if constexpr (kW8A8) zero_fragments(part);
#pragma unroll
                for (int kk = 0; kk < kBK / 16; ++kk) {  // 32 bytes of K per step
                    uint32_t af[MF][4], bfrag[NF][2];
#pragma unroll
                    for (int i = 0; i < MF; ++i) {
                        const int row = warp_m * WM + i * 16 + (lane & 15);
                        ldmatrix_x4(af[i], as + swizzle(row, kk * 2 + (lane >> 4)));
                    }
#pragma unroll
                    for (int j = 0; j < NF / 2; ++j) {
                        const int row = warp_n * WN + j * 16 + (lane & 7) + ((lane >> 4) << 3);
                        uint32_t r[4];
                        ldmatrix_x4(r, bs + swizzle(row, kk * 2 + ((lane >> 3) & 1)));
                        bfrag[2 * j][0] = r[0], bfrag[2 * j][1] = r[1];
                        bfrag[2 * j + 1][0] = r[2], bfrag[2 * j + 1][1] = r[3];
                    }
#pragma unroll
                    for (int i = 0; i < MF; ++i)
#pragma unroll
                        for (int j = 0; j < NF; ++j) {
                            if constexpr (kW8A8)
                                mma_e4m3(part[i][j], af[i], bfrag[j][0], bfrag[j][1]);
                            else
                                mma_bf16(acc[i][j], af[i], bfrag[j][0], bfrag[j][1]);
                        }
                }
            }
            add_scaled(part, sc);
            if constexpr (kQuant)
                if (next < k_tiles) store_b(next % STAGES);
        }
    }

    // Accumulator (i, j): rows lane/4 and lane/4 + 8 of the m16 block, columns 2 (lane % 4)
    // and + 1 of the n8 block.
#pragma unroll
    for (int i = 0; i < MF; ++i)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            const int r = warp_m * WM + i * 16 + (lane >> 2) + half * 8;
            const int slot = row_slot[r];
            if (slot < 0) continue;
            if (kGateUp) {
                bf16* dst = args.act + size_t(row_begin + r) * N;
#pragma unroll
                for (int j = 0; j < NF; j += 2) {
                    const int col = n0 + (warp_n * WN / 16 + j / 2) * 8 + 2 * (lane & 3);
                    if (col >= N) continue;
                    const float g0 = acc[i][j][2 * half], g1 = acc[i][j][2 * half + 1];
                    const float u0 = acc[i][j + 1][2 * half], u1 = acc[i][j + 1][2 * half + 1];
                    *reinterpret_cast<__nv_bfloat162*>(dst + col) = __floats2bfloat162_rn(
                        g0 / (1.0f + __expf(-g0)) * u0, g1 / (1.0f + __expf(-g1)) * u1);
                }
            } else {
                const float weight = args.weights[slot];
                float* dst = args.y + size_t(slot) * N;
#pragma unroll
                for (int j = 0; j < NF; ++j) {
                    const int col = n0 + warp_n * WN + j * 8 + 2 * (lane & 3);
                    if (col >= N) continue;
                    *reinterpret_cast<float2*>(dst + col) =
                        make_float2(weight * acc[i][j][2 * half], weight * acc[i][j][2 * half + 1]);
                }
            }
        }
}

// ---- simple path and combine ----------------------------------------------------------------

__device__ float warp_dot(const bf16* a, const bf16* b, int len) {
    float acc = 0.0f;
    for (int c = threadIdx.x & 31; c < len; c += 32)
        acc += __bfloat162float(a[c]) * __bfloat162float(b[c]);
    for (int offset = 16; offset > 0; offset >>= 1)
        acc += __shfl_xor_sync(0xffffffffu, acc, offset);
    return acc;
}

// Row `row` of weight matrix w [rows, cols] (in kCode) dotted with x [cols] by one warp, the
// weights dequantized one at a time (weight_at); bf16 weights as warp_dot.
template <WeightCode kCode>
__device__ float warp_dot_row(const void* w, const float* scales, int row, int cols,
                              const bf16* x) {
    if constexpr (kCode == WeightCode::Bf16) {
        return warp_dot(static_cast<const bf16*>(w) + size_t(row) * cols, x, cols);
    } else {
        float acc = 0.0f;
        for (int c = threadIdx.x & 31; c < cols; c += 32)
            acc += weight_at<kCode>(w, scales, row, c, cols) * __bfloat162float(x[c]);
        for (int offset = 16; offset > 0; offset >>= 1)
            acc += __shfl_xor_sync(0xffffffffu, acc, offset);
        return acc;
    }
}

// Shapes the tensor-core path does not take (a dimension not a multiple of 8, or x not 16-byte
// aligned): warp per output, scalar loads, the same bf16 act and fp32 y in slot order.
// s1/s3/s2: the scale tables (quantized codes only).
template <WeightCode kCode>
__global__ void simple_gate_up_kernel(const bf16* x, int hidden, int inter, int top_k, int experts,
                                      const int32_t* chosen, const void* const* w1,
                                      const void* const* w3, const float* const* s1,
                                      const float* const* s3, bf16* act) {
    const int slot = blockIdx.x, row = blockIdx.y * 8 + (threadIdx.x >> 5);
    const int e = chosen[slot];
    if (row >= inter || e < 0 || e >= experts) return;
    const bf16* xt = x + size_t(slot / top_k) * hidden;
    constexpr bool kQuant = kCode != WeightCode::Bf16;
    const float g = warp_dot_row<kCode>(w1[e], kQuant ? s1[e] : nullptr, row, hidden, xt);
    const float u = warp_dot_row<kCode>(w3[e], kQuant ? s3[e] : nullptr, row, hidden, xt);
    if ((threadIdx.x & 31) == 0)
        act[size_t(slot) * inter + row] = __float2bfloat16(g / (1.0f + __expf(-g)) * u);
}

template <WeightCode kCode>
__global__ void simple_down_kernel(const bf16* act, int hidden, int inter, int experts,
                                   const int32_t* chosen, const float* weights,
                                   const void* const* w2, const float* const* s2, float* y) {
    const int slot = blockIdx.x, row = blockIdx.y * 8 + (threadIdx.x >> 5);
    const int e = chosen[slot];
    if (row >= hidden || e < 0 || e >= experts) return;
    const float* scales = kCode != WeightCode::Bf16 ? s2[e] : nullptr;
    const float v = warp_dot_row<kCode>(w2[e], scales, row, inter, act + size_t(slot) * inter);
    if ((threadIdx.x & 31) == 0) y[size_t(slot) * hidden + row] = weights[slot] * v;
}

// out[t, c] += sum_i y[t k + i, c] for i = 0 .. k-1 in order (y already weighted); slots with
// an out-of-range expert id were never computed and are skipped.
__global__ void combine_kernel(const float* y, const int32_t* chosen, int hidden, int top_k,
                               int experts, float* out) {
    const int t = blockIdx.x;
    const int32_t* ids = chosen + size_t(t) * top_k;
    float* row = out + size_t(t) * hidden;
    if (hidden % 4 == 0) {
        const int c = 4 * (blockIdx.y * blockDim.x + threadIdx.x);
        if (c >= hidden) return;
        float4 sum = *reinterpret_cast<float4*>(row + c);
        float4 part = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        for (int i = 0; i < top_k; ++i) {
            if (ids[i] < 0 || ids[i] >= experts) continue;
            const float4 v =
                *reinterpret_cast<const float4*>(y + (size_t(t) * top_k + i) * hidden + c);
            part.x += v.x, part.y += v.y, part.z += v.z, part.w += v.w;
        }
        sum.x += part.x, sum.y += part.y, sum.z += part.z, sum.w += part.w;
        *reinterpret_cast<float4*>(row + c) = sum;
    } else {
        for (int c = blockIdx.y * blockDim.x + threadIdx.x; c < hidden;
             c += gridDim.y * blockDim.x) {
            float part = 0.0f;
            for (int i = 0; i < top_k; ++i)
                if (ids[i] >= 0 && ids[i] < experts)
                    part += y[(size_t(t) * top_k + i) * hidden + c];
            row[c] += part;
        }
    }
}

// ---- launch ---------------------------------------------------------------------------------

template <int BM, int BN, int WARPS_M, int WARPS_N, int STAGES, bool kWgmma = false,
          int kProducerWarps = 0>
struct TileConfig {
    static constexpr int kThreads = (WARPS_M * WARPS_N + kProducerWarps) * 32;
    static constexpr size_t kSmem =
        size_t(STAGES) * (BM + BN) * kBK * sizeof(bf16) + (kWgmma ? 1024 : 0);

    template <bool kGateUp, WeightCode kCode>
    static void launch(GemmArgs args, size_t max_tiles, cudaStream_t stream) {
        auto kernel = grouped_gemm_kernel<BM, BN, WARPS_M, WARPS_N, STAGES, kGateUp, kCode, kWgmma,
                                          kProducerWarps>;
        allow_dynamic_shared(reinterpret_cast<const void*>(kernel), kSmem, "moe grouped gemm smem");
        const int out_cols = kGateUp ? BN / 2 : BN;
        args.col_tiles = (args.N + out_cols - 1) / out_cols;
        const size_t grid = max_tiles * size_t(args.col_tiles);
        if (grid > size_t(INT_MAX))
            fail(Status::Unsupported, "moe_experts_grouped: grid of " + std::to_string(grid) +
                                          " tiles is too large; split the tokens");
        kernel<<<static_cast<unsigned>(grid), kThreads, kSmem, stream>>>(args);
        check_launch(kGateUp ? "moe grouped gate_up" : "moe grouped down");
    }
};

// Tile heights: 32 when experts see few rows (weight-bandwidth bound, little padding),
// 128 when they see many (math bound: 64x64 warp tiles keep ldmatrix traffic below the MMA
// rate); 64 between.
using SmallTiles = TileConfig<32, 128, 1, 4, 4>;
using MediumTiles = TileConfig<64, 128, 2, 2, 4>;
using LargeTiles = TileConfig<128, 128, 2, 2, 3>;
// W8A8 holds each stage's sums beside the accumulators: 32 x 64 warp tiles keep both in
// registers. Slower than 64-row tiles at every size measured (moe_bench on the H200, 4096
// tokens: 3.05 vs 2.72 ms), so only taken when asked for.
using LargeTilesW8A8 = TileConfig<128, 128, 4, 2, 3>;
// bf16 and W8A8 on sm_90a: wgmma, one warpgroup per 64 rows of the tile.
using MediumTilesWgmma = TileConfig<64, 128, 4, 1, 4, true>;
using LargeTilesWgmma = TileConfig<128, 128, 8, 1, 4, true>;
// Warp-specialized wgmma: 128-row tiles with 6 stages (193 KB, one CTA per SM; 4 producer
// warps, 16 copies each per stage), 64-row tiles with 4 (97 KB, two CTAs per SM; 2 producer
// warps, 24 copies each). The W8A8 default; bf16 keeps the stage-wise mainloop, which was the
// faster one there (docs/perf/prefill.md, H100 2026-12-05: whole-model FP8 prefill 1-2% faster
// specialized, bf16 5-7% slower).
using MediumTilesSpecialized = TileConfig<64, 128, 4, 1, 4, true, 2>;
using LargeTilesSpecialized = TileConfig<128, 128, 8, 1, 6, true, 4>;

// wgmma runs on compute capability 9.0 only, from this build's sm_90a code (KL_CUDA_SM90A:
// "90a" among KL_CUDA_ARCHITECTURES; the portable PTX has no wgmma). KL_CUDA_WGMMA picks the
// mainloop for A/B runs: 0 the mma.sync kernels, "stagewise" or "specialized" that wgmma
// mainloop for every format; unset, each format its faster one (ByFormat).
enum class WgmmaMode { Off, ByFormat, Stagewise, Specialized };

WgmmaMode wgmma_mode() {
#if defined(KL_CUDA_SM90A)
    static const WgmmaMode asked = [] {
        const char* v = std::getenv("KL_CUDA_WGMMA");
        const std::string value = v ? v : "";
        if (value == "0") return WgmmaMode::Off;
        if (value == "stagewise") return WgmmaMode::Stagewise;
        if (value == "specialized") return WgmmaMode::Specialized;
        return WgmmaMode::ByFormat;
    }();
    return compute_capability() == 90 ? asked : WgmmaMode::Off;
#else
    return WgmmaMode::Off;
#endif
}

bool specialized_mainloop(bool w8a8) {
    const WgmmaMode mode = wgmma_mode();
    return mode == WgmmaMode::Specialized || (mode == WgmmaMode::ByFormat && w8a8);
}

bool wgmma_usable() {
    return wgmma_mode() != WgmmaMode::Off;
}

// With wgmma (moe_bench at the real shapes, H200): 64-row tiles are the fastest for W8A8 at
// every size (256 tokens: 0.58 ms against 0.65 for 32 rows; 4096: 1.55 against 1.70 for 128)
// and for bf16 past 24 rows per expert (4096 tokens: 1.87 against 2.16 for mma.sync's 128).
// KL_CUDA_MOE_TILE=32|64|128 overrides the choice below (A/B runs of the whole model with
// each tile height; 0 when unset or anything else).
int forced_tile_m() {
    static const int forced = [] {
        const char* v = std::getenv("KL_CUDA_MOE_TILE");
        const std::string value = v ? v : "";
        return value == "32" ? 32 : value == "64" ? 64 : value == "128" ? 128 : 0;
    }();
    return forced;
}

int pick_tile_m(size_t slots, size_t experts, bool w8a8, bool wgmma) {
    if (const int forced = forced_tile_m()) return forced;
    const size_t rows_per_expert = slots / std::max<size_t>(1, experts);
    if (wgmma && w8a8) return 64;
    if (rows_per_expert <= 24) return 32;
    if (rows_per_expert <= 96 || w8a8 || wgmma) return 64;
    return 128;
}

}  // namespace

size_t moe_grouped_workspace_bytes(size_t n, size_t hidden, size_t inter, size_t experts,
                                   size_t top_k) {
    return layout(n, hidden, inter, experts, top_k).total;
}

// Tuning hook (declared by tools/bench/moe_bench.cu and tests/gpu/test_gpu_moe_grouped.cpp, not
// part of ops.h): tile_m 0 picks by shape, 32/64/128 forces a tile height, -1 forces the
// simple path; phases is a bit mask (1 grouping, 2 gate/up, 4 down, 8 combine) so that the
// benchmark can time each phase on an already-grouped workspace.
void moe_experts_grouped_tuned(const bf16* x, size_t n, size_t hidden, size_t inter, size_t experts,
                               size_t top_k, const int32_t* chosen, const float* weights,
                               const ExpertWeights& expert_weights, void* workspace, float* out,
                               cudaStream_t stream, int tile_m, unsigned phases) {
    if (n == 0 || top_k == 0) return;
    if (experts == 0 || hidden == 0 || inter == 0)
        fail(Status::InvalidArgument, "moe_experts_grouped: experts, hidden and inter must be > 0");
    const ExpertWeights& ew = expert_weights;
    if (!x || !chosen || !weights || !ew.w1 || !ew.w3 || !ew.w2 || !workspace || !out)
        fail(Status::InvalidArgument, "moe_experts_grouped: null pointer argument");
    const WeightCode code = ew.code;
    if (code != WeightCode::Bf16 && code != WeightCode::Fp8 && code != WeightCode::Int4)
        fail(Status::InvalidArgument,
             "moe_experts_grouped: unknown weight code " + std::to_string(static_cast<int>(code)));
    if (code != WeightCode::Bf16 && (!ew.s1 || !ew.s3 || !ew.s2))
        fail(Status::InvalidArgument, "moe_experts_grouped: quantized experts need scale tables");
    if (reinterpret_cast<uintptr_t>(workspace) % 16 != 0)
        fail(Status::InvalidArgument, "moe_experts_grouped: workspace must be 16-byte aligned");
    const size_t slots = n * top_k;
    if (slots > size_t(INT_MAX) / 2 || experts > size_t(INT_MAX) / 2 || hidden > size_t(INT_MAX) ||
        inter > size_t(INT_MAX))
        fail(Status::Unsupported, "moe_experts_grouped: n * top_k = " + std::to_string(slots) +
                                      " or a dimension exceeds the int range");
    if (tile_m != 0 && tile_m != -1 && tile_m != 32 && tile_m != 64 && tile_m != 128)
        fail(Status::InvalidArgument, "moe_experts_grouped: tile_m " + std::to_string(tile_m) +
                                          " is not 0, -1, 32, 64, 128");
    const Layout l = layout(n, hidden, inter, experts, top_k);
    char* base = static_cast<char*>(workspace);
    auto at = [&](size_t offset) { return reinterpret_cast<int32_t*>(base + offset); };
    bf16* act = reinterpret_cast<bf16*>(base + l.act);
    float* y = reinterpret_cast<float*>(base + l.y);
    const int H = static_cast<int>(hidden), I = static_cast<int>(inter);
    const int k = static_cast<int>(top_k), E = static_cast<int>(experts);

    // Also what INT4 tiles need (whole words per chunk). W8A8 needs whole 16-byte chunks of
    // codes (dimensions divisible by 16) and FP8 tensor cores.
    const bool w8a8 = code == WeightCode::Fp8;
    const size_t multiple = w8a8 ? 16 : 8;
    const bool fast_shape = hidden % multiple == 0 && inter % multiple == 0 &&
                            reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                            (!w8a8 || fp8_tensor_cores_available());
    if (tile_m == 0)
        tile_m = fast_shape
                     ? pick_tile_m(slots, experts, w8a8, code != WeightCode::Int4 && wgmma_usable())
                     : -1;
    if (tile_m > 0 && !fast_shape)
        fail(Status::Unsupported,
             "moe_experts_grouped: the tensor-core path needs hidden (" + std::to_string(hidden) +
                 ") and inter (" + std::to_string(inter) + ") divisible by " +
                 std::to_string(multiple) + " and x 16-byte aligned" +
                 (w8a8 ? ", and FP8 experts a device with FP8 tensor cores" : ""));

    // The experts' GEMMs for one weight code (a compile-time tag).
    auto experts_for = [&](auto code_tag) {
        constexpr WeightCode kCode = decltype(code_tag)::value;
        if (tile_m < 0) {
            if (phases & 2u) {
                simple_gate_up_kernel<kCode>
                    <<<dim3(unsigned(slots), unsigned((inter + 7) / 8)), 256, 0, stream>>>(
                        x, H, I, k, E, chosen, ew.w1, ew.w3, ew.s1, ew.s3, act);
                check_launch("moe simple gate_up");
            }
            if (phases & 4u) {
                simple_down_kernel<kCode>
                    <<<dim3(unsigned(slots), unsigned((hidden + 7) / 8)), 256, 0, stream>>>(
                        act, H, I, E, chosen, weights, ew.w2, ew.s2, y);
                check_launch("moe simple down");
            }
            return;
        }
        GemmArgs args{};
        args.top_k = k;
        args.num_tiles = at(l.num_tiles);
        args.tile_expert = at(l.tile_expert);
        args.tile_begin = at(l.tile_begin);
        args.tile_end = at(l.tile_end);
        args.sorted_slot = at(l.sorted_slot);
        args.weights = weights;
        args.act = act;
        args.y = y;
        const size_t max_tiles = max_row_tiles(slots, experts, size_t(tile_m));
        constexpr bool kW8A8 = kCode == WeightCode::Fp8;
        auto* x_codes = reinterpret_cast<uint8_t*>(base + l.x_codes);
        auto* act_codes = reinterpret_cast<uint8_t*>(base + l.act_codes);
        auto* x_scales = reinterpret_cast<float*>(base + l.x_scales);
        auto* act_scales = reinterpret_cast<float*>(base + l.act_scales);
        auto run = [&](auto config) {
            using Config = decltype(config);
            if (phases & 2u) {
                GemmArgs g = args;
                g.a = x, g.w = ew.w1, g.w_up = ew.w3, g.s = ew.s1, g.s_up = ew.s3;
                g.K = H, g.N = I;
                if (kW8A8) {
                    quantize_activations_fp8(x, n, hidden, x_codes, x_scales,
                                             quant_scale_cols(hidden), 1, stream);
                    g.a = x_codes, g.a_scales = x_scales;
                }
                Config::template launch<true, kCode>(g, max_tiles, stream);
            }
            if (phases & 4u) {
                GemmArgs d = args;
                d.a = act, d.w = ew.w2, d.s = ew.s2, d.K = I, d.N = H;
                if (kW8A8) {  // every grouped row; those past the routed ones are never read
                    quantize_activations_fp8(act, slots, inter, act_codes, act_scales,
                                             quant_scale_cols(inter), 1, stream);
                    d.a = act_codes, d.a_scales = act_scales;
                }
                Config::template launch<false, kCode>(d, max_tiles, stream);
            }
        };
        if (tile_m == 32) {
            run(SmallTiles{});
        } else if constexpr (kCode != WeightCode::Int4) {
            if (specialized_mainloop(kW8A8))
                tile_m == 64 ? run(MediumTilesSpecialized{}) : run(LargeTilesSpecialized{});
            else if (wgmma_usable())
                tile_m == 64 ? run(MediumTilesWgmma{}) : run(LargeTilesWgmma{});
            else if (kW8A8)
                tile_m == 64 ? run(MediumTiles{}) : run(LargeTilesW8A8{});
            else
                tile_m == 64 ? run(MediumTiles{}) : run(LargeTiles{});
        } else {
            tile_m == 64 ? run(MediumTiles{}) : run(LargeTiles{});
        }
    };

    if (tile_m > 0 && (phases & 1u)) {  // the tile table of the tensor-core path
        const size_t plan_smem = experts * sizeof(int32_t);
        if (plan_smem > 48 * 1024)
            fail(Status::Unsupported, "moe_experts_grouped: " + std::to_string(experts) +
                                          " experts exceed the planner's shared memory");
        plan_kernel<<<1, kPlanThreads, plan_smem, stream>>>(
            chosen, int(slots), E, tile_m, at(l.expert_count), at(l.expert_begin), at(l.num_tiles),
            at(l.tile_expert), at(l.tile_begin), at(l.tile_end));
        check_launch("moe plan");
        scatter_kernel<<<E, kScatterThreads, 0, stream>>>(chosen, int(slots), at(l.expert_count),
                                                          at(l.expert_begin), at(l.sorted_slot));
        check_launch("moe scatter");
    }
    using Code = WeightCode;
    if (code == Code::Fp8)
        experts_for(std::integral_constant<Code, Code::Fp8>{});
    else if (code == Code::Int4)
        experts_for(std::integral_constant<Code, Code::Int4>{});
    else
        experts_for(std::integral_constant<Code, Code::Bf16>{});
    if (phases & 8u) {
        const unsigned threads = 128;
        const unsigned col_blocks = unsigned((((hidden + 3) / 4) + threads - 1) / threads);
        combine_kernel<<<dim3(unsigned(n), col_blocks), threads, 0, stream>>>(y, chosen, H, k, E,
                                                                              out);
        check_launch("moe combine");
    }
}

void moe_experts_grouped(const bf16* x, size_t n, size_t hidden, size_t inter, size_t experts,
                         size_t top_k, const int32_t* chosen, const float* weights,
                         const ExpertWeights& expert_weights, void* workspace, float* out,
                         cudaStream_t stream) {
    moe_experts_grouped_tuned(x, n, hidden, inter, experts, top_k, chosen, weights, expert_weights,
                              workspace, out, stream, 0, 0xFu);
}

}  // namespace kl::cuda
