// Launchers of the CUDA kernels: plain device pointers, sizes and a stream, nothing else.
// Activations are fp32 unless named *_bf16; weights bf16 except where model.md says fp32.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "core/sampler.h"

namespace kl::cuda {

using bf16 = __nv_bfloat16;

// ---- weight formats (docs/design/kernels.md, "Quantized weights") -----------------------
// How a weight matrix [rows, cols] (PyTorch Linear [out, in], row-major) is held on the
// device, and the values it stands for (the CPU backend's, core/quantize.h):
//  - Bf16: bf16 values.
//  - Fp8:  e4m3 codes (1 byte each) + fp32 scales [ceil(rows/128), ceil(cols/128)], one per
//          128 x 128 block: value = e4m3(code) * scale.
//  - Int4: 32-bit words [rows, cols / 8] (value j of a row is nibble j % 8 of word j / 8, held
//          as q + 8, q in [-8, 7]) + fp32 scales [rows, ceil(cols/128)], one per row and 128
//          columns: value = q * scale.
enum class WeightCode : int { Bf16 = 0, Fp8 = 1, Int4 = 2 };
constexpr int kQuantBlock = 128;  // FP8 block edge and INT4 group length
inline size_t quant_scale_cols(size_t cols) { return (cols + kQuantBlock - 1) / kQuantBlock; }

// One matrix in any format (scales null for Bf16).
struct QMatrix {
    WeightCode code = WeightCode::Bf16;
    const void* data = nullptr;
    const float* scales = nullptr;
};

// The routed experts of one layer: device arrays, indexed by expert id, of each expert's
// gate (w1 [inter, hidden]), up (w3) and down (w2 [hidden, inter]) matrices and, when
// quantized, their scales (s1, s3, s2; null for Bf16). One format for all of them.
struct ExpertWeights {
    WeightCode code = WeightCode::Bf16;
    const void* const* w1 = nullptr;
    const void* const* w3 = nullptr;
    const void* const* w2 = nullptr;
    const float* const* s1 = nullptr;
    const float* const* s3 = nullptr;
    const float* const* s2 = nullptr;
};

// ---- elementwise and norms (elementwise.cu) --------------------------------------------
// x[t, :] = embed[history[pos + t] - vocab_begin, :] (bf16 -> fp32) for t < n, pos read from
// pos_device (device memory, so a captured graph replays at any position); embed holds the
// vocab_rows rows from vocab_begin (the whole vocabulary, or a shard's part: a token outside
// it gets zeros, its row coming from the shard that holds it).
void embedding_gather(const bf16* embed, int64_t vocab_begin, int64_t vocab_rows,
                      const int32_t* history, const int32_t* pos_device, size_t n, size_t hidden,
                      float* x, cudaStream_t stream);
// y_bf16[r, :] = x[r, :] * rsqrt(mean(x^2) + eps) * w  for `rows` rows of `dim` (strides
// in elements: x_stride, y_stride).
void rms_norm_to_bf16(const float* x, size_t x_stride, const bf16* w, size_t rows, size_t dim,
                      float eps, bf16* y, size_t y_stride, cudaStream_t stream);
// The residual add fused into the next norm: x += branch, y_bf16 = RMSNorm(x) * w, for
// `rows` contiguous rows of `dim`.
void add_rms_norm_to_bf16(float* x, const float* branch, const bf16* w, size_t rows, size_t dim,
                          float eps, bf16* y, cudaStream_t stream);
// New MLA cache rows: kv [rows, width] (latent then k_pe) -> cache rows pos.. (pos read from
// pos_device), the latent RMS-normalised with w, k_pe copied, as bf16.
void latent_to_cache(const float* kv, size_t rows, size_t rank, size_t width, const bf16* w,
                     float eps, const int32_t* pos_device, bf16* cache, cudaStream_t stream);
// The same for a batch: row r goes to caches[r] at row positions[r] (device arrays).
void latent_to_cache_batch(const float* kv, size_t rows, size_t rank, size_t width, const bf16* w,
                           float eps, const int32_t* positions, bf16* const* caches,
                           cudaStream_t stream);
// A batched pass's per-session writes (batch_scatter.cu; device arrays of n entries):
// histories[i][positions[i]] = tokens[i]; dst[i][0, dim) = src[i, :] (each row's logits into its
// session's buffer).
void scatter_tokens(const int32_t* tokens, const int32_t* positions, int32_t* const* histories,
                    size_t n, cudaStream_t stream);
void scatter_rows(const float* src, size_t rows, size_t dim, float* const* dst,
                  cudaStream_t stream);
void cast_to_bf16(const float* x, size_t n, bf16* y, cudaStream_t stream);
// out_bf16 = silu(gate) * up
void silu_mul_to_bf16(const float* gate, const float* up, size_t n, bf16* out, cudaStream_t stream);

// ---- KDA (kda.cu) -------------------------------------------------------------------------
// Depthwise causal conv + SiLU over T tokens; state [kernel-1, channels] updated in place.
void short_conv_silu(const float* x, size_t T, size_t channels, const bf16* weight, size_t kernel,
                     float* state, float* y, cudaStream_t stream);
void l2_normalize_heads(float* x, size_t vectors, size_t dim, cudaStream_t stream);
// short_conv_silu over H heads of D channels and, with l2_normalize, l2_normalize_heads of
// the result, in one pass: a warp per (token, head) (D % 4 == 0, D <= 512, 16-byte aligned
// buffers; other shapes run the two kernels above).
void short_conv_silu_heads(const float* x, size_t T, size_t H, size_t D, const bf16* weight,
                           size_t kernel, float* state, float* y, bool l2_normalize,
                           cudaStream_t stream);
// The prefill takes the warp-per-head kernels (short_conv_silu_heads, and kda_gated_norm's;
// 5-7% faster whole-model prefill on an H100, docs/perf/prefill.md) unless
// KL_CUDA_KDA_FUSED=0 (A/B runs).
bool kda_fused_prefill_ops();
// g = -exp(a_log[h]) * softplus(g + dt_bias) in place, g [T, H*D]
void kda_gate(float* g, const float* a_log, const float* dt_bias, size_t T, size_t H, size_t D,
              cudaStream_t stream);
void sigmoid_inplace(float* x, size_t n, cudaStream_t stream);
// The recurrence over T tokens (the definition; used for prefill and decode in this first
// version). state [H, D, D] fp32 in place; o [T, H*D].
void kda_recurrent(const float* q, const float* k, const float* v, const float* g,
                   const float* beta, size_t T, size_t H, size_t D, float scale, float* state,
                   float* o, cudaStream_t stream);
// o_bf16 = RMSNorm_D(o) * o_norm * sigmoid(gate), per token and head.
void kda_gated_norm(const float* o, const float* gate, const bf16* o_norm, size_t T, size_t H,
                    size_t D, float eps, bf16* out, cudaStream_t stream);

// ---- KDA chunked prefill on tensor cores (kda_chunk.cu) ----------------------------------
// The chunkwise (WY / UT transform) form of kda_recurrent for T tokens, fp16 tensor-core
// operands (power-of-two scaled per row) with fp32 accumulation, safe for strong decay
// (docs/design/kernels.md). Same inputs and layout as kda_recurrent; state [H, D, D] fp32 read
// and updated in place. v and workspace 16-byte aligned, q, k, g 8-byte aligned.
// kda_chunk_supported(D) says which head sizes it takes (others use kda_recurrent).
// workspace: kda_chunk_workspace_bytes(T, H, D) bytes of device memory (may be 0 -> null).
bool kda_chunk_supported(size_t D);
size_t kda_chunk_workspace_bytes(size_t T, size_t H, size_t D);
void kda_chunked_prefill(const float* q, const float* k, const float* v, const float* g,
                         const float* beta, size_t T, size_t H, size_t D, float scale,
                         float* state, float* o, void* workspace, cudaStream_t stream);

// ---- KDA fused decode step (kda_decode.cu) -----------------------------------------------
// One KDA layer for n (small, usually 1) consecutive tokens, fused in one kernel: short conv
// update + SiLU of q, k, v, their L2 norms, the gate g = -exp(A_log) * softplus(f_b(f_low) +
// dt_bias), beta = sigmoid(b), the delta-rule recurrence, and o = RMSNorm_D(o) * o_norm *
// sigmoid(g_b(g_low)). proj [n, proj_stride] holds, per token, the x-side projections
// concatenated: q [H*D] | k [H*D] | v [H*D] | f_low [D] | g_low [D] | b [H].
// conv_w_{q,k,v} [H*D, kernel] bf16; f_b, g_b [H*D, D] bf16; a_log [H], dt_bias [H*D] fp32;
// o_norm [D] bf16. state_in/out [H, D, D] fp32; conv_in/out [3, kernel-1, H*D] fp32 (q, k,
// v; oldest first). *_out may equal *_in (in place) or be other buffers (the inputs are
// then left untouched). o [n, H*D] bf16 (the o_proj input).
struct KdaDecodeWeights {
    const bf16* conv_q;
    const bf16* conv_k;
    const bf16* conv_v;
    size_t kernel;
    const bf16* f_b;
    const bf16* g_b;
    const float* a_log;
    const float* dt_bias;
    const bf16* o_norm;
    float eps;
};
bool kda_decode_supported(size_t D);
void kda_decode_step(const float* proj, size_t proj_stride, size_t n, size_t H, size_t D,
                     float scale, const KdaDecodeWeights& w, const float* state_in,
                     const float* conv_in, float* state_out, float* conv_out, bf16* o,
                     cudaStream_t stream);
// The same with the split chosen: ctas_per_head CTAs (one thread-block cluster) share each
// head's value columns (1, 2, 4 or 8, with D / ctas_per_head >= 8); 0 picks the smallest
// split that gives every SM a CTA. kda_decode_step uses 0; tests and the benchmark vary it.
void kda_decode_step_with_split(const float* proj, size_t proj_stride, size_t n, size_t H,
                                size_t D, float scale, const KdaDecodeWeights& w,
                                const float* state_in, const float* conv_in, float* state_out,
                                float* conv_out, bf16* o, size_t ctas_per_head,
                                cudaStream_t stream);
// Batched decode: `rows` sessions, one token each, in one launch (a grid row per session).
// proj [rows, proj_stride], o [rows, H*D]; session b's state is read from rows_in[b] and
// written to rows_out[b] (device arrays of `rows` pointers to fp32 buffers, 16-byte aligned):
// S at + state_offset, conv state at + conv_offset (floats, multiples of 4). Outputs must not
// overlap any session's inputs. ctas_per_head as above (0: chosen for H * rows heads).
void kda_decode_step_batch(const float* proj, size_t proj_stride, size_t rows, size_t H, size_t D,
                           float scale, const KdaDecodeWeights& w, const float* const* rows_in,
                           float* const* rows_out, size_t state_offset, size_t conv_offset, bf16* o,
                           size_t ctas_per_head, cudaStream_t stream);

// ---- MLA (mla_attention.cu) -----------------------------------------------------------------
// Causal attention for T queries at positions pos..pos+T-1 over the bf16 latent cache
// [rows, rank+rope] (normalised latent c, then k_pe; rows [pos, pos+T) already written);
// q [T, Hm*(nope+rope)] fp32; kv_b bf16 [Hm*(nope+v), rank]; out [T, Hm*v] fp32.
// pos_device is a device int32 holding pos, so a captured CUDA graph replays at any position;
// max_rows >= pos + T bounds the rows (a session's capacity) and sizes the split over the
// context. workspace: mla_workspace_bytes(T, heads, rank, rope, v_dim, max_rows) bytes.
size_t mla_workspace_bytes(size_t T, size_t heads, size_t rank, size_t rope, size_t v_dim,
                           size_t max_rows);
void mla_attention(const float* q, size_t T, const int32_t* pos_device, size_t max_rows,
                   const bf16* cache, const bf16* kv_b, size_t heads, size_t nope, size_t rope,
                   size_t v_dim, size_t rank, void* workspace, float* out, cudaStream_t stream);
// Batched decode: `sessions` sessions, one query each, in one pass: session i's query q[i]
// (q [sessions, Hm*(nope+rope)]) at positions_device[i] over its own cache caches_device[i]
// (device arrays: int32 [sessions], bf16* [sessions], 16-byte aligned caches; row
// positions_device[i] already written). max_rows bounds every session's rows (the largest
// capacity). The query absorption and W_uv projection run over all sessions at once; the
// attention splits each session's context as mla_attention does, fewer splits for more
// sessions. workspace: mla_batch_workspace_bytes(sessions, ...) bytes (any sessions' <= it).
size_t mla_batch_workspace_bytes(size_t sessions, size_t heads, size_t rank, size_t rope,
                                 size_t v_dim, size_t max_rows);
void mla_attention_batch(const float* q, size_t sessions, const int32_t* positions_device,
                         const bf16* const* caches_device, size_t max_rows, const bf16* kv_b,
                         size_t heads, size_t nope, size_t rope, size_t v_dim, size_t rank,
                         void* workspace, float* out, cudaStream_t stream);

// ---- MLA prefill, expanded form (mla_prefill.cu) --------------------------------------------
// For a piece of at least kMlaPrefillMinTokens queries: the caller decompresses the cache's
// latents in chunks of up to kMlaPrefillChunkKeys keys (kv = c · kv_b^T, bf16 [keys, heads,
// nope + v]) and calls mla_prefill_chunk per chunk, in order from key 0 (first) to key pos+T-1
// (last); the result is mla_attention's. q, pos, cache, heads... as for mla_attention (pos a
// host value here: prefill is never captured in a graph); out is the running unnormalised
// output until the last chunk; state holds the rows' running (max, sum), [T * heads].
constexpr size_t kMlaPrefillMinTokens = 256;   // below it, the decompression costs more
constexpr size_t kMlaPrefillChunkKeys = 4096;  // keys decompressed at once
bool mla_prefill_supported(size_t T, size_t heads, size_t nope, size_t rope, size_t v_dim,
                           size_t rank);
// Its workspace for pieces of up to T queries, carved into parts (workspace null: only
// the size, .bytes).
struct MlaPrefillBuffers {
    bf16* latent = nullptr;   // [chunk keys, rank]: the chunk's latents, contiguous
    float* kv_f32 = nullptr;  // [chunk keys, heads * (nope + v)]: the GEMM's product
    bf16* kv = nullptr;       // the same in bf16, what the kernel reads
    float2* state = nullptr;  // [T, heads]
    bf16* vt = nullptr;       // the wgmma kernel's scratch, when it runs here (else null)
    size_t bytes = 0;
};
MlaPrefillBuffers mla_prefill_buffers(void* workspace, size_t T, size_t heads, size_t nope,
                                      size_t rope, size_t v_dim, size_t rank);
// vt: MlaPrefillBuffers::vt ([heads, v, kMlaPrefillChunkKeys] bf16), the values by column
// for the wgmma kernel (mla_prefill_wgmma.cu), which runs when it is given and usable here:
// sm_90a code on compute capability 9.0, the released shapes (nope 128, rope 64, v 128),
// and KL_CUDA_MLA_WGMMA not 0.
bool mla_prefill_wgmma_usable(size_t nope, size_t rope, size_t v_dim);
void mla_prefill_chunk(const float* q, size_t T, uint64_t pos, const bf16* cache, const bf16* kv,
                       uint64_t key_begin, size_t keys, bool first, bool last, size_t heads,
                       size_t nope, size_t rope, size_t v_dim, size_t rank, float2* state,
                       float* out, cudaStream_t stream, bf16* vt = nullptr);

// ---- few-token GEMM (gemv.cu) ------------------------------------------------------------
// y[n, out] = x[n, in] · W^T for n <= 4 and in % 8 == 0 (16-byte rows): gemv_supported();
// a quantized W also needs in % 16 == 0. y's rows are ldy apart (>= out).
bool gemv_supported(size_t n, size_t in);
bool gemv_supported(size_t n, size_t in, WeightCode code);
void gemv(const bf16* x, size_t n, size_t in, const QMatrix& w, size_t out, float* y, size_t ldy,
          cudaStream_t stream);
void gemv_bf16(const bf16* x, size_t n, size_t in, const bf16* w, size_t out, float* y,
               cudaStream_t stream);  // gemv of a bf16 W, ldy = out
// y[:, 0, first_out) = x · first^T and y[:, first_out, first_out + second_out) = x · second^T
// (second bf16) in one launch, each part exactly as gemv() computes it.
void gemv_pair(const bf16* x, size_t n, size_t in, const QMatrix& first, size_t first_out,
               const bf16* second, size_t second_out, float* y, size_t ldy, cudaStream_t stream);
// Whether decode runs the KDA projections of a quantized model in one launch (gemv_pair) and
// the MLA q and latent projections as one stacked GEMV: the default, TPOT -2% to -3%
// (docs/perf/decode-occupancy.md); KL_CUDA_DECODE_STACKED=0 launches them one by one.
bool decode_stacked();
// Whether a decode kernel of weights in `code` takes its narrow form: the quantized GEMVs
// (Gemv) and experts' gate/up (GateUp) with half the rows a warp (FP8 1, INT4 2: about half
// the registers, twice the warps), the down experts (Down) as a block per (token, rows) whose
// warps split the token's slots. Default per format as measured (docs/perf/decode-occupancy.md);
// KL_CUDA_DECODE_NARROW=0|1 or a list of parts ("gemv,gateup,down") overrides it. DownWide
// (quantized only, never a default, not in "1"): the split down kernel with the full rows a
// block, for FP8, whose one-row split kernel measured slower than the unsplit one.
enum class NarrowPart { Gemv, GateUp, Down, DownWide };
bool decode_narrow(NarrowPart part, WeightCode code);

// ---- MoE (moe.cu) ---------------------------------------------------------------------------
// Per token: sigmoid scores, biased (grouped) top-k, weights renormalised and scaled.
void moe_route(const float* logits, const float* bias, size_t n, size_t experts, size_t top_k,
               bool renormalize, float scaling, size_t groups, size_t topk_groups, int32_t* chosen,
               float* weights, cudaStream_t stream);
// The decode router in one launch (moe_route_decode.cu): logits[n, experts] = x[n, hidden] .
// router^T exactly as gemv_bf16, then chosen/weights exactly as moe_route. For
// moe_route_decode_supported(n, hidden) (gemv_supported). blocks_done: one device counter,
// zero before the first call; each call leaves it zero (graph replays).
bool moe_route_decode_supported(size_t n, size_t hidden);
void moe_route_decode(const bf16* x, size_t n, size_t hidden, const bf16* router,
                      const float* bias, size_t experts, size_t top_k, bool renormalize,
                      float scaling, size_t groups, size_t topk_groups, float* logits,
                      unsigned* blocks_done, int32_t* chosen, float* weights,
                      cudaStream_t stream);
// A shard of a split model (docs/design/sharding.md) runs the experts [begin, end) it owns:
// every other chosen id of the slots becomes -1, which the experts' kernels skip.
void keep_owned_experts(int32_t* chosen, size_t slots, int64_t begin, int64_t end,
                        cudaStream_t stream);
// dst[rows_of[i], :] (bf16) gathered from src rows
void gather_rows_bf16(const bf16* src, const int32_t* rows, size_t n, size_t dim, bf16* dst,
                      cudaStream_t stream);
// out[rows[i], :] += weights[i] * y[i, :]  (rows distinct within one call)
void scatter_add_weighted(const float* y, const int32_t* rows, const float* weights, size_t n,
                          size_t dim, float* out, cudaStream_t stream);

// Decode-time experts (moe_decode.cu): for each of the n * top_k (token, chosen expert)
// slots, act = silu(w1[e] x) * (w3[e] x) and y = w2[e] act as GEMVs that read each chosen
// expert once; then out[t] = (accumulate ? out[t] : 0) + shared(x_t) + sum_i weights[t, i] *
// y[t, i], summed in slot order. The experts in any format (ExpertWeights; a quantized
// format needs hidden and inter multiples of 16); the shared expert (its matrices, or null
// data for none) must have the experts' shape and format and runs as one more slot per
// token. act [n*(top_k+1), inter] is scratch. Two launches.
struct DecodeSharedExpert {
    QMatrix w1, w3, w2;
};
void moe_experts_gemv(const bf16* x, size_t n, size_t hidden, size_t inter, size_t top_k,
                      const int32_t* chosen, const float* weights, const ExpertWeights& experts,
                      const DecodeSharedExpert& shared, bool accumulate, float* act, float* out,
                      cudaStream_t stream);

// Prefill experts (moe_grouped.cu), no host round trip: the n * top_k (token, expert) slots
// are grouped by expert on the device and each expert's rows run as one tile of a grouped
// tensor-core GEMM: act = silu(x W1[e]^T) * (x W3[e]^T), y = act W2[e]^T; then
// out[t] += sum_i weights[t, i] * y[t, i]. x [n, hidden] bf16; chosen/weights [n, top_k];
// expert_weights.w1/w3/w2: device arrays of per-expert matrices ([inter, hidden],
// [inter, hidden], [hidden, inter]) in any WeightCode, each 16-byte aligned, with their scale
// tables when quantized. FP8 experts run W8A8 (x and act quantized per row and 128 columns
// as quantize_activations_fp8 does, e4m3 tensor cores, fp32 sums scaled per 128-column
// block); INT4 weight tiles are dequantized to bf16 as they load (the format's values,
// rounded to nearest bf16). The tensor-core path needs hidden and inter multiples of 8 (16
// and a device with FP8 tensor cores for FP8); other shapes run a slower simple path, which
// multiplies the weights' values with x and act as they are.
// workspace: moe_grouped_workspace_bytes(n, hidden, inter, experts, top_k).
size_t moe_grouped_workspace_bytes(size_t n, size_t hidden, size_t inter, size_t experts,
                                   size_t top_k);
void moe_experts_grouped(const bf16* x, size_t n, size_t hidden, size_t inter, size_t experts,
                         size_t top_k, const int32_t* chosen, const float* weights,
                         const ExpertWeights& expert_weights, void* workspace, float* out,
                         cudaStream_t stream);

// ---- sampling (sampling.cu) ---------------------------------------------------------------
// One token from logits [vocab] (device, fp32), the same token kl::sample_token
// (core/sampler.cpp) picks for the same inputs: repetition penalty over history (device
// int32 [history_len]), greedy, or temperature with top-k, min-p, top-p and the draw of
// (seed, position). token_out: device int32. workspace: sampling_workspace_bytes(vocab).
size_t sampling_workspace_bytes(size_t vocab);
void sample_token_on_device(const float* logits, size_t vocab, const SamplingParams& params,
                            const int32_t* history, size_t history_len, uint64_t position,
                            void* workspace, int32_t* token_out, cudaStream_t stream);

// ---- weight quantization (quantize_weights.cu) -------------------------------------------
// values fp32 [rows, cols] (device) -> the Fp8 or Int4 form that kl::quantize
// (core/quantize.cpp) makes of them, bit for bit: data Fp8 bytes [rows, cols] or Int4 words
// [rows, ceil(cols / 8)] (a row's padding nibbles 0), scales as "weight formats" above. For
// random weights made on the device: one pass over the values, no host sync.
void quantize_on_device(const float* values, size_t rows, size_t cols, WeightCode code, void* data,
                        float* scales, cudaStream_t stream);
// out [rows, cols] = bf16_rn(code value * scale in fp32), the values of kl::dequantize rounded
// to bf16 (Bf16: a copy): quantized dense linears in prefill run through cuBLASLt on them.
void dequantize_to_bf16(const QMatrix& w, size_t rows, size_t cols, bf16* out, cudaStream_t stream);

// ---- FP8 activations (activation_quant.cu) ------------------------------------------------
// x [n, in] bf16 (in % 16 == 0) -> e4m3 codes [n, in] and one fp32 scale per token and 128
// columns (value = e4m3(code) * scale; scale = the group's max |x| / 448, codes rounded to
// nearest and saturated: kl::quantize of each row as a [1, in] FP8 tensor), the scale of
// (token t, group g) at scales[t * token_stride + g * group_stride]: token-major for our
// grouped experts, group-major for cuBLASLt.
void quantize_activations_fp8(const bf16* x, size_t n, size_t in, uint8_t* codes, float* scales,
                              size_t token_stride, size_t group_stride, cudaStream_t stream);
// Whether the current device has FP8 tensor cores (compute capability 8.9 or later): W8A8
// prefill needs them; elsewhere FP8 weights are expanded to bf16 as INT4 ones are.
bool fp8_tensor_cores_available();

}  // namespace kl::cuda
