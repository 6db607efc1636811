// Token sampling on the device: the same token kl::sample_token (core/sampler.cpp) picks.
//
// The CPU defines the token through sequential double sums over the candidates in sorted
// order (softmax total, top-p mass, kept mass, the cumulative walk). A parallel sum cannot
// reproduce their rounding, but that rounding is tiny: at most n * 2^-53 of the sum. So the
// fast path decides each cut and the draw from accurate parallel sums, and whenever a
// decision lies within a safety margin of its threshold (exact ties such as all-equal logits,
// non-finite rows; on real logits about once in 10^9 tokens) one block replays the CPU's
// loops literally on the sorted candidates instead: slower, but the same arithmetic.
//
// Pipeline: scores as sort keys (+ repetition penalty) -> greedy: two-stage argmax;
// otherwise: stable radix sort of (key, id) -> softmax weights per chunk of 1024 sorted
// candidates, with chunk sums and min-p counts -> one block picks the token.
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

#include "cuda_util.h"
#include "ops.h"

namespace kl::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kChunk = 1024;  // sorted candidates per weights block; threads of the pick block
constexpr int kPerThread = kChunk / kThreads;
constexpr int kGreedyChunk = 2048;
constexpr int kMaxGreedyBlocks = 1024;
// Up to this many candidates the literal replay is cheap enough to be the only path.
constexpr int kReplayLimit = 256;
// Relative half-width of the band around a min-p threshold inside which the CPU's rounding
// (a few ulps of probs[n] and of min_p * probs[0]) could decide either way.
constexpr double kMinPBand = 1e-12;
constexpr size_t kMaxVocab = size_t{1} << 30;

// An unsigned key whose ascending order is descending score; -0 and +0 get the same key,
// as they compare equal on the CPU. (NaN logits are not supported: the CPU's order of them
// is not defined either.)
__device__ __forceinline__ uint32_t descending_key(float v) {
    if (v == 0.0f) v = 0.0f;
    const uint32_t bits = __float_as_uint(v);
    const uint32_t ascending = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
    return ~ascending;
}

__device__ __forceinline__ float score_of(uint32_t key) {
    const uint32_t ascending = ~key;
    return __uint_as_float((ascending & 0x80000000u) ? (ascending & 0x7fffffffu) : ~ascending);
}

// CTRL penalty exactly as the CPU rounds it (explicit _rn: no contraction, no fast math).
__device__ __forceinline__ float penalized(float s, float penalty) {
    return s > 0.0f ? __fdiv_rn(s, penalty) : __fmul_rn(s, penalty);
}

// (key << 32) | id: the minimum is the highest score, on ties the lowest id (max_element).
__device__ __forceinline__ uint64_t rank_of(uint32_t key, int id) {
    return (static_cast<uint64_t>(key) << 32) | static_cast<uint32_t>(id);
}

__device__ uint64_t block_min(uint64_t v) {
    __shared__ uint64_t partial[32];
    for (int offset = 16; offset > 0; offset >>= 1) {
        const uint64_t other = __shfl_xor_sync(0xffffffffu, v, offset);
        v = other < v ? other : v;
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < static_cast<int>(blockDim.x >> 5) ? partial[lane] : ~uint64_t{0};
    for (int offset = 16; offset > 0; offset >>= 1) {
        const uint64_t other = __shfl_xor_sync(0xffffffffu, v, offset);
        v = other < v ? other : v;
    }
    return v;
}

// ---- scores ---------------------------------------------------------------------------------

__global__ void keys_kernel(const float* logits, int vocab, uint32_t* keys, int32_t* ids) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < vocab; i += gridDim.x * blockDim.x) {
        keys[i] = descending_key(logits[i]);
        ids[i] = i;
    }
}

// Every occurrence of a token writes the same value computed from the raw logit, so
// duplicates in the window need no deduplication: the penalty lands once per distinct token.
__global__ void penalty_kernel(const float* logits, int vocab, const int32_t* window,
                               int window_len, float penalty, uint32_t* keys) {
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < window_len;
         j += gridDim.x * blockDim.x) {
        const int32_t token = window[j];
        if (token < 0 || token >= vocab) continue;  // the CPU skips ids outside the vocabulary
        keys[token] = descending_key(penalized(logits[token], penalty));
    }
}

// ---- greedy ---------------------------------------------------------------------------------

template <bool kFromKeys>
__global__ void argmax_partial_kernel(const float* logits, const uint32_t* keys, int vocab,
                                      uint64_t* partial) {
    uint64_t best = ~uint64_t{0};
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < vocab; i += gridDim.x * blockDim.x) {
        const uint32_t key = kFromKeys ? keys[i] : descending_key(logits[i]);
        const uint64_t r = rank_of(key, i);
        best = r < best ? r : best;
    }
    best = block_min(best);
    if (threadIdx.x == 0) partial[blockIdx.x] = best;
}

__global__ void argmax_final_kernel(const uint64_t* partial, int n, int32_t* token_out) {
    uint64_t best = ~uint64_t{0};
    for (int i = threadIdx.x; i < n; i += blockDim.x) best = partial[i] < best ? partial[i] : best;
    best = block_min(best);
    if (threadIdx.x == 0) *token_out = static_cast<int32_t>(best & 0xffffffffu);
}

// ---- softmax weights of the sorted candidates -----------------------------------------------

// weights[i] = exp((score_i - top) / T) in double as the CPU computes probs before normalising;
// per chunk of kChunk: the weight sum, and for min-p the candidates surely above the floor and
// those too close to it to call (probs[n] >= min_p * probs[0] is weights[n] >= min_p, up to
// rounding).
__global__ void __launch_bounds__(kThreads)
    weights_kernel(const uint32_t* sorted_keys, int keep, float temperature, float min_p,
                   double* weights, double* chunk_sum, int* chunk_in, int* chunk_unsure) {
    using Reduce = cub::BlockReduce<double, kThreads>;
    using Count = cub::BlockReduce<int, kThreads>;
    __shared__ typename Reduce::TempStorage reduce_storage;
    __shared__ typename Count::TempStorage count_storage;
    const double top = score_of(sorted_keys[0]);
    const double t = temperature;
    const double floor_hi = min_p * (1.0 + kMinPBand), floor_lo = min_p * (1.0 - kMinPBand);
    double sum = 0.0;
    int in = 0, unsure = 0;
#pragma unroll
    for (int k = 0; k < kPerThread; ++k) {
        const int i = blockIdx.x * kChunk + k * kThreads + threadIdx.x;
        if (i >= keep) break;
        const double w = exp((static_cast<double>(score_of(sorted_keys[i])) - top) / t);
        weights[i] = w;
        sum += w;
        if (w >= floor_hi)
            ++in;
        else if (w >= floor_lo)
            ++unsure;
    }
    sum = Reduce(reduce_storage).Sum(sum);
    in = Count(count_storage).Sum(in);
    __syncthreads();
    unsure = Count(count_storage).Sum(unsure);
    if (threadIdx.x == 0) {
        chunk_sum[blockIdx.x] = sum;
        chunk_in[blockIdx.x] = in;
        chunk_unsure[blockIdx.x] = unsure;
    }
}

// ---- the pick (one block of kChunk threads) -------------------------------------------------

struct Crossing {
    int n;         // smallest n in [1, limit] with S(n) >= target, if found
    bool found;
    bool unsure;   // the CPU's rounded sums could fall on the other side
    double at;     // S(n), or S(limit) when not found
};

// S(n) = weights[0] + ... + weights[n-1], from the chunk prefix sums and a block scan of the
// one chunk where the target is crossed. `margin` bounds how far the CPU's sequential sums
// may be from these.
// `sums` is a shared array of kChunk doubles.
__device__ void find_crossing(const double* weights, const double* prefix, int limit,
                              double target, double margin, double* sums, Crossing* out) {
    using Scan = cub::BlockScan<double, kChunk>;
    __shared__ typename Scan::TempStorage scan_storage;
    __shared__ int chunk, first;
    const int chunks = (limit + kChunk - 1) / kChunk;
    if (threadIdx.x == 0) {
        chunk = chunks - 1;
        first = INT_MAX;
    }
    __syncthreads();
    for (int b = threadIdx.x; b < chunks; b += blockDim.x)
        if (prefix[b + 1] >= target) atomicMin(&chunk, b);
    __syncthreads();
    const int b = chunk;
    const int i = b * kChunk + static_cast<int>(threadIdx.x);
    double s;
    Scan(scan_storage).InclusiveSum(i < limit ? weights[i] : 0.0, s);
    s += prefix[b];
    sums[threadIdx.x] = s;
    if (i < limit && s >= target) atomicMin(&first, static_cast<int>(threadIdx.x));
    __syncthreads();
    if (threadIdx.x == 0) {
        if (first != INT_MAX) {
            const double below = first > 0 ? sums[first - 1] : prefix[b];
            out->n = b * kChunk + first + 1;
            out->found = true;
            out->at = sums[first];
            out->unsure = sums[first] - target <= margin || target - below <= margin;
        } else {
            const int last = min(limit - b * kChunk, kChunk) - 1;
            out->n = limit;
            out->found = false;
            out->at = sums[last];
            out->unsure = target - sums[last] <= margin;
        }
    }
    __syncthreads();
}

// Walks weights[0, n) in order on thread 0, a chunk at a time staged in shared memory;
// step(i, w) returns true to stop. All threads must call it; `tile` is a shared array of
// kChunk doubles.
template <typename Step>
__device__ void sequential_walk(const double* weights, int n, double* tile, Step step) {
    __shared__ bool stop;
    __syncthreads();  // the previous walk's readers of `stop` and `tile` are done
    if (threadIdx.x == 0) stop = false;
    for (int base = 0; base < n; base += kChunk) {
        __syncthreads();
        if (base + static_cast<int>(threadIdx.x) < n) tile[threadIdx.x] = weights[base + threadIdx.x];
        __syncthreads();
        if (threadIdx.x == 0) {
            const int count = min(kChunk, n - base);
            for (int j = 0; j < count; ++j)
                if (step(base + j, tile[j])) {
                    stop = true;
                    break;
                }
        }
        __syncthreads();
        if (stop) break;
    }
}

// core/sampler.cpp from the softmax on, statement for statement, over the sorted candidates
// (weights are normalised in place).
__device__ void replay_cpu(const int32_t* ids, double* weights, int keep, float min_p,
                           float top_p, double draw, double* tile, int32_t* token_out) {
    __shared__ double total;
    __shared__ int first_below;
    double sum = 0.0;
    sequential_walk(weights, keep, tile, [&](int, double w) {
        sum = __dadd_rn(sum, w);
        return false;
    });
    if (threadIdx.x == 0) total = sum;
    __syncthreads();
    for (int i = threadIdx.x; i < keep; i += blockDim.x) weights[i] = __ddiv_rn(weights[i], total);
    __syncthreads();
    if (min_p > 0.0f) {
        const double floor = __dmul_rn(static_cast<double>(min_p), weights[0]);
        if (threadIdx.x == 0) first_below = keep;
        __syncthreads();
        for (int i = 1 + threadIdx.x; i < keep; i += blockDim.x)
            if (!(weights[i] >= floor)) atomicMin(&first_below, i);
        __syncthreads();
        keep = first_below;
    }
    if (top_p < 1.0f) {
        double mass = 0.0;
        int n = 0;
        sequential_walk(weights, keep, tile, [&](int, double w) {
            mass = __dadd_rn(mass, w);
            ++n;
            return mass >= static_cast<double>(top_p);
        });
        if (threadIdx.x == 0) first_below = n;
        __syncthreads();
        keep = first_below;
    }
    double kept_mass = 0.0;
    sequential_walk(weights, keep, tile, [&](int, double w) {
        kept_mass = __dadd_rn(kept_mass, w);
        return false;
    });
    const double target = __dmul_rn(draw, kept_mass);
    double cumulative = 0.0;
    int32_t token = -1;
    sequential_walk(weights, keep, tile, [&](int i, double w) {
        cumulative = __dadd_rn(cumulative, w);
        if (target < cumulative) token = ids[i];
        return target < cumulative;
    });
    if (threadIdx.x == 0) *token_out = token >= 0 ? token : ids[keep - 1];
}

__global__ void __launch_bounds__(kChunk)
    pick_kernel(const int32_t* ids, double* weights, const double* chunk_sum,
                const int* chunk_in, const int* chunk_unsure, double* prefix, int keep,
                float min_p, float top_p, double draw, int32_t* token_out) {
    __shared__ bool replay;
    __shared__ int kept_by_min_p;
    __shared__ Crossing crossing;
    __shared__ double tile[kChunk];
    const int chunks = (keep + kChunk - 1) / kChunk;
    // Chunk prefix sums (prefix[b] = S(b * kChunk)) and the min-p counts, a tile of chunks at
    // a time: on the real vocabulary one tile of 160.
    {
        using Scan = cub::BlockScan<double, kChunk>;
        using Count = cub::BlockReduce<int, kChunk>;
        __shared__ typename Scan::TempStorage scan_storage;
        __shared__ typename Count::TempStorage count_storage;
        double carry = 0.0;
        int in = 0, unsure = 0;  // thread 0's
        for (int base = 0; base < chunks; base += kChunk) {
            const int b = base + static_cast<int>(threadIdx.x);
            double inclusive, tile_sum;
            Scan(scan_storage).InclusiveSum(b < chunks ? chunk_sum[b] : 0.0, inclusive, tile_sum);
            if (b < chunks) prefix[b + 1] = carry + inclusive;
            carry += tile_sum;
            in += Count(count_storage).Sum(b < chunks ? chunk_in[b] : 0);
            __syncthreads();
            unsure += Count(count_storage).Sum(b < chunks ? chunk_unsure[b] : 0);
            __syncthreads();
        }
        if (threadIdx.x == 0) {
            prefix[0] = 0.0;
            prefix[chunks] = carry;  // the same total every reader sees
            kept_by_min_p = min_p > 0.0f ? in : keep;
            replay = keep <= kReplayLimit || !isfinite(carry) || !(carry > 0.0) ||
                     (min_p > 0.0f && (unsure > 0 || in < 1));
        }
    }
    __syncthreads();
    if (!replay) {
        const double total = prefix[chunks];
        // The CPU's sums over n terms are within n * 2^-53 of the exact ones; ours far closer.
        const double margin = 1e-9 + 8.0 * keep * 0x1p-53;
        int keep_final = kept_by_min_p;
        double kept_mass = total;
        bool unsure = false;
        if (top_p < 1.0f) {
            find_crossing(weights, prefix, kept_by_min_p, static_cast<double>(top_p) * total,
                          margin * total, tile, &crossing);
            unsure = crossing.unsure;
            keep_final = crossing.n;
            kept_mass = crossing.at;
        } else if (kept_by_min_p < keep) {
            find_crossing(weights, prefix, kept_by_min_p, INFINITY, 0.0, tile, &crossing);
            kept_mass = crossing.at;
        }
        if (!unsure) {
            find_crossing(weights, prefix, keep_final, draw * kept_mass, margin * kept_mass,
                          tile, &crossing);
            if (crossing.found && !crossing.unsure) {
                if (threadIdx.x == 0) *token_out = ids[crossing.n - 1];
                return;  // uniform across the block: crossing is shared
            }
        }
    }
    replay_cpu(ids, weights, keep, min_p, top_p, draw, tile, token_out);
}

// ---- workspace ------------------------------------------------------------------------------

size_t align_up(size_t bytes) { return (bytes + 255) & ~size_t{255}; }

struct Layout {
    size_t keys_in, ids_in, keys_out, ids_out, weights, chunk_sum, chunk_in, chunk_unsure, prefix,
        partial, sort_temp, sort_temp_bytes, total;
};

Layout layout_for(size_t vocab) {
    const size_t chunks = (vocab + kChunk - 1) / kChunk;
    Layout l{};
    size_t at = 0;
    auto take = [&](size_t bytes) {
        const size_t offset = at;
        at += align_up(bytes);
        return offset;
    };
    l.keys_in = take(vocab * sizeof(uint32_t));
    l.ids_in = take(vocab * sizeof(int32_t));
    l.keys_out = take(vocab * sizeof(uint32_t));
    l.ids_out = take(vocab * sizeof(int32_t));
    l.weights = take(vocab * sizeof(double));
    l.chunk_sum = take(chunks * sizeof(double));
    l.chunk_in = take(chunks * sizeof(int));
    l.chunk_unsure = take(chunks * sizeof(int));
    l.prefix = take((chunks + 1) * sizeof(double));
    l.partial = take(kMaxGreedyBlocks * sizeof(uint64_t));
    check(cub::DeviceRadixSort::SortPairs(nullptr, l.sort_temp_bytes,
                                          static_cast<const uint32_t*>(nullptr),
                                          static_cast<uint32_t*>(nullptr),
                                          static_cast<const int32_t*>(nullptr),
                                          static_cast<int32_t*>(nullptr), static_cast<int>(vocab)),
          "DeviceRadixSort size query");
    l.sort_temp = take(l.sort_temp_bytes);
    l.total = at;
    return l;
}

unsigned blocks_for(size_t n, size_t per_block, size_t cap) {
    return static_cast<unsigned>(std::max<size_t>(1, std::min(cap, (n + per_block - 1) / per_block)));
}

}  // namespace

size_t sampling_workspace_bytes(size_t vocab) {
    if (vocab == 0 || vocab > kMaxVocab)
        fail(Status::InvalidArgument,
             "sampling vocab is " + std::to_string(vocab) + ", must be in [1, 2^30]");
    return layout_for(vocab).total;
}

void sample_token_on_device(const float* logits, size_t vocab, const SamplingParams& params,
                            const int32_t* history, size_t history_len, uint64_t position,
                            void* workspace, int32_t* token_out, cudaStream_t stream) {
    validate_sampling(params);
    if (vocab == 0 || vocab > kMaxVocab)
        fail(Status::InvalidArgument,
             "sampling vocab is " + std::to_string(vocab) + ", must be in [1, 2^30]");
    if (logits == nullptr || token_out == nullptr)
        fail(Status::InvalidArgument, "sample_token_on_device: null logits or token_out");
    if (workspace == nullptr || reinterpret_cast<uintptr_t>(workspace) % 256 != 0)
        fail(Status::InvalidArgument,
             "sample_token_on_device: workspace must be non-null and 256-byte aligned");
    const bool penalize = params.repetition_penalty != 1.0f && history_len > 0;
    if (penalize && history == nullptr)
        fail(Status::InvalidArgument, "sample_token_on_device: null history of length " +
                                          std::to_string(history_len));

    const Layout l = layout_for(vocab);
    char* base = static_cast<char*>(workspace);
    auto* keys_in = reinterpret_cast<uint32_t*>(base + l.keys_in);
    auto* ids_in = reinterpret_cast<int32_t*>(base + l.ids_in);
    auto* keys_out = reinterpret_cast<uint32_t*>(base + l.keys_out);
    auto* ids_out = reinterpret_cast<int32_t*>(base + l.ids_out);
    auto* weights = reinterpret_cast<double*>(base + l.weights);
    auto* chunk_sum = reinterpret_cast<double*>(base + l.chunk_sum);
    auto* chunk_in = reinterpret_cast<int*>(base + l.chunk_in);
    auto* chunk_unsure = reinterpret_cast<int*>(base + l.chunk_unsure);
    auto* prefix = reinterpret_cast<double*>(base + l.prefix);
    auto* partial = reinterpret_cast<uint64_t*>(base + l.partial);
    const int n = static_cast<int>(vocab);
    const unsigned elementwise_blocks = blocks_for(vocab, kThreads * 4, 4096);

    if (penalize) {
        const size_t window =
            params.repetition_window > 0
                ? std::min(history_len, static_cast<size_t>(params.repetition_window))
                : history_len;
        keys_kernel<<<elementwise_blocks, kThreads, 0, stream>>>(logits, n, keys_in, ids_in);
        check_launch("sampling keys_kernel");
        penalty_kernel<<<blocks_for(window, kThreads * 4, 4096), kThreads, 0, stream>>>(
            logits, n, history + (history_len - window), static_cast<int>(std::min<size_t>(window, INT_MAX)),
            params.repetition_penalty, keys_in);
        check_launch("sampling penalty_kernel");
    }

    if (params.temperature == 0.0f || params.top_k == 1) {
        const unsigned blocks = blocks_for(vocab, kGreedyChunk, kMaxGreedyBlocks);
        if (penalize)
            argmax_partial_kernel<true><<<blocks, kThreads, 0, stream>>>(logits, keys_in, n, partial);
        else
            argmax_partial_kernel<false><<<blocks, kThreads, 0, stream>>>(logits, keys_in, n, partial);
        check_launch("sampling argmax_partial_kernel");
        argmax_final_kernel<<<1, kThreads, 0, stream>>>(partial, static_cast<int>(blocks), token_out);
        check_launch("sampling argmax_final_kernel");
        return;
    }

    if (!penalize) {
        keys_kernel<<<elementwise_blocks, kThreads, 0, stream>>>(logits, n, keys_in, ids_in);
        check_launch("sampling keys_kernel");
    }
    // Stable: equal scores keep ascending ids, the CPU's tie order.
    size_t sort_bytes = l.sort_temp_bytes;
    check(cub::DeviceRadixSort::SortPairs(base + l.sort_temp, sort_bytes, keys_in, keys_out, ids_in,
                                          ids_out, n, 0, 32, stream),
          "DeviceRadixSort::SortPairs");
    const int keep = params.top_k > 0 ? std::min(n, params.top_k) : n;
    weights_kernel<<<blocks_for(keep, kChunk, INT_MAX), kThreads, 0, stream>>>(
        keys_out, keep, params.temperature, params.min_p, weights, chunk_sum, chunk_in,
        chunk_unsure);
    check_launch("sampling weights_kernel");
    pick_kernel<<<1, kChunk, 0, stream>>>(ids_out, weights, chunk_sum, chunk_in, chunk_unsure,
                                          prefix, keep, params.min_p, params.top_p,
                                          sampling_draw(params.seed, position), token_out);
    check_launch("sampling pick_kernel");
}

}  // namespace kl::cuda
