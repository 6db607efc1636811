// The CUDA backend's parts shared by its two halves: cuda_model.cu (the weights, the
// forward pass, device sampling) and cuda_state.cu (session state: allocation, copies,
// snapshots, synthetic contexts). Internal: only those two and the provider include it.
//
// bf16 weights uploaded once; per session fp32 recurrent state (double buffered), a bf16
// latent cache, the last logits on the device and workspaces, all allocated at session
// create. A decode step is one CUDA graph replay; prefill runs in pieces of up to kPiece
// tokens. Sessions of one model share its stream and cuBLASLt workspace, so forward passes
// and state operations are serialised.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "core/backend.h"
#include "core/backend_registry.h"
#include "core/config.h"
#include "core/fifo_mutex.h"
#include "core/shard_rendezvous.h"
#include "core/weights.h"
#include "cuda_util.h"
#include "device_weights.h"
#include "gemm.h"
#include "nccl_group.h"
#include "op_profile.h"
#include "ops.h"

namespace kl::cuda {

// Tokens per prefill piece: large, because the MoE of a piece reads every expert's weights
// once (3.6 GB per layer for the 48B shapes), so fewer pieces read them fewer times.
constexpr size_t kPiece = 4096;
constexpr size_t kLogitsRows = 16;   // lm_head rows per pass when all logits are asked for
constexpr size_t kDecodeTokens = 4;  // up to this many tokens: fused decode kernels, GEMVs
// A batched decode pass (forward_batch) takes up to kMaxBatch sessions (more run as groups
// within the call) and runs lm_head over up to kBatchLogitsRows rows at a time (each pass
// reads the 0.75 GB head of the 48B model once).
constexpr size_t kMaxBatch = 256;
constexpr size_t kBatchLogitsRows = 64;

// The form a kernel reads a tensor in: bf16, fp32, or any format of ops.h (a linear weight
// run through CudaBackend::linear or the experts' kernels: FP8 or INT4 when the tensor
// loads quantized and device_reads() its shape, bf16 otherwise).
enum class Form { Bf16, F32, Any };
// Where the backend's weights come from: a checkpoint's tensor or random values.
using WeightSource = std::function<Weight(const TensorSpec& spec, Form form)>;
// cuda_model.cu: tensor `spec` of a WeightStore in the form `form` asks for.
Weight store_weight(const WeightStore& store, const TensorSpec& spec, Form form);
// cuda_shard.cu: the provider's split-model functions (core/backend_registry.h).
std::unique_ptr<ShardGroup> create_shard_group(const std::vector<int>& devices);
std::unique_ptr<Backend> create_shard(const ModelConfig& config, const ModelLayout& layout,
                                      const WeightStore& weights, const ShardPlan& plan, int shard,
                                      ShardLinks links, const BackendOptions& options);

struct Mlp {
    Weight gate, up, down;
};
struct Layer {
    Weight input_norm, post_norm;
    bool is_kda = false, is_moe = false;
    // KDA. x_proj stacks the projections of the normed input (q, k, v, f_a, g_a, b) so a
    // decode step reads them in one GEMV; q ... b are views of its rows. With quantized
    // q, k, v, x_proj holds those three and x_low the plain low-rank rest (f_a, g_a, b), run
    // as a second GEMV into the same rows of outputs.
    Weight x_proj, x_low, q, k, v, f_a, g_a, b;
    size_t proj_rows() const { return x_proj.rows + x_low.rows; }
    Weight q_conv, k_conv, v_conv, f_b, a_log, dt_bias, g_b, o_norm, o;
    // MLA; mla_slot: this layer's index among the MLA layers (a batch's cache tables).
    // mq_kv stacks q_proj and kv_a_proj (same format) for one decode GEMV, mq and kv_a then
    // views of its rows; empty where they cannot stack.
    Weight mq, kv_a, kv_norm, kv_b, mo, mq_kv;
    size_t mla_slot = 0;
    // FFN
    Mlp mlp;
    Weight router, router_bias;
    std::vector<Mlp> experts;
    // Device arrays of the experts' matrices and scales (ExpertWeights), in one buffer.
    DeviceBuffer expert_tables;
    ExpertWeights expert_weights;
    bool has_shared = false;
    Mlp shared;
};

struct CudaState;

// What makes a CudaBackend one shard of a model split over GPUs (docs/design/sharding.md,
// cuda_shard.cu): its rank in the NCCL group that sums the blocks' partial outputs and
// gathers the logits, the routed experts it owns, every shard's vocabulary part (its own
// embedding and lm_head rows), and the host links through which the shards agree to stop.
struct ShardRole {
    const NcclGroup* nccl = nullptr;
    int rank = 0;
    std::pair<int64_t, int64_t> experts;             // [begin, end)
    std::vector<std::pair<int64_t, int64_t>> vocab;  // by rank, [begin, end)
    ShardLinks links;
};

// The per-row tables of a batched pass (kMaxBatch rows at most), in one workspace area
// filled by one upload: byte offsets of each table for `rows` rows. Pointers first (8-byte
// aligned), then int32 tables.
struct BatchTables {
    BatchTables(size_t mla_layers, size_t rows) {
        const size_t p = rows * sizeof(void*);
        rec_in = 0, rec_out = rec_in + p, logits = rec_out + p, history = logits + p;
        caches = history + p;  // [mla layer][row]
        tokens = caches + mla_layers * p, positions = tokens + rows * sizeof(int32_t);
        zero = positions + rows * sizeof(int32_t);
        bytes = zero + sizeof(int32_t);
    }
    size_t rec_in, rec_out, logits, history, caches, tokens, positions, zero, bytes;
};

// The rows of one forward pass (run_layers): m tokens of one session, or one token each of
// m sessions (a batch). The embedding reads token ids[*ids_at + r] for row r.
struct Pass {
    size_t m = 0;
    const int32_t* ids = nullptr;
    const int32_t* ids_at = nullptr;
    const std::vector<size_t>* rec_offset = nullptr;  // KDA state offsets per layer (floats)
    // One session: its state, KDA state read from rec_in and written to rec_out.
    CudaState* st = nullptr;
    uint64_t position = 0;  // of its first token (a prefill piece; graphs read the workspace's)
    const float* rec_in = nullptr;
    float* rec_out = nullptr;
    // A batch (st null): device tables of m entries (BatchTables).
    const float* const* batch_rec_in = nullptr;
    float* const* batch_rec_out = nullptr;
    bf16* const* batch_caches = nullptr;  // [mla layer][m]
    const int32_t* batch_positions = nullptr;
};

// Activations of one forward piece (kPiece tokens at most) and the kernels' scratch: one
// per model, since the model's passes are serialised (sessions' decode graphs capture it).
struct Workspace {
    explicit Workspace(const ModelConfig& c) {
        const size_t P = kPiece, h = c.hidden_size, HD = c.kda_dim(), D = c.kda_head_dim;
        const size_t inter =
            std::max<size_t>(c.intermediate_size,
                             c.moe_intermediate_size * std::max<int64_t>(1, c.num_shared_experts));
        const size_t k = std::max<int64_t>(1, c.num_experts_per_token);
        const size_t E = std::max<int64_t>(1, c.num_experts), mi = c.moe_intermediate_size;
        const size_t Hm = c.num_attention_heads;
        auto f = [](size_t n) { return DeviceBuffer(n * sizeof(float)); };
        auto b = [](size_t n) { return DeviceBuffer(n * sizeof(uint16_t)); };
        position = DeviceBuffer(sizeof(int32_t));
        x = f(P * h), branch = f(P * h), xn = b(P * h);
        proj = f(P * (3 * HD + 2 * D + c.kda_num_heads));
        q = f(P * HD), kk = f(P * HD), v = f(P * HD), g = f(P * HD);
        gate = f(P * HD), o = f(P * HD), o_bf = b(P * HD);
        low = f(P * D), low_bf = b(P * D), beta = f(P * c.kda_num_heads);
        kda_chunk = DeviceBuffer(c.n_kda_layers() && kda_chunk_supported(D)
                                     ? kda_chunk_workspace_bytes(P, c.kda_num_heads, D)
                                     : 0);
        mq = f(P * Hm * c.mla_qk_head_dim()), kv = f(P * c.mla_cache_width());
        attn = f(P * Hm * c.v_head_dim), attn_bf = b(P * Hm * c.v_head_dim);
        // Sized for any session capacity (the split over the context is capped by the SMs).
        mla = DeviceBuffer(
            c.n_mla_layers()
                ? std::max(
                      {mla_workspace_bytes(P, Hm, c.kv_lora_rank, c.qk_rope_head_dim, c.v_head_dim,
                                           INT32_MAX),
                       mla_batch_workspace_bytes(kMaxBatch, Hm, c.kv_lora_rank, c.qk_rope_head_dim,
                                                 c.v_head_dim, INT32_MAX),
                       mla_prefill_supported(P, Hm, c.qk_nope_head_dim, c.qk_rope_head_dim,
                                             c.v_head_dim, c.kv_lora_rank)
                           ? mla_prefill_buffers(nullptr, P, Hm, c.qk_nope_head_dim,
                                                 c.qk_rope_head_dim, c.v_head_dim, c.kv_lora_rank)
                                 .bytes
                           : size_t(0)})
                : 0);
        ffn_gate = f(P * inter), ffn_up = f(P * inter), ffn_act = b(P * inter);
        router = f(P * E), chosen = DeviceBuffer(P * k * sizeof(int32_t)), weights = f(P * k);
        route_done = DeviceBuffer(sizeof(unsigned));  // moe_route_decode's counter, zero
        check(cudaMemset(route_done.as<void>(), 0, sizeof(unsigned)), "zero route counter");
        e_act = f(kDecodeTokens * (k + 1) * mi);
        moe = DeviceBuffer(c.num_experts ? moe_grouped_workspace_bytes(P, h, mi, E, k) : 0);
        logits = f(std::max(kLogitsRows, kBatchLogitsRows) * c.vocab_size);
        sampling = DeviceBuffer(sampling_workspace_bytes(c.vocab_size));
        batch = DeviceBuffer(BatchTables(c.n_mla_layers(), kMaxBatch).bytes);
        sampled = DeviceBuffer(kMaxBatch * sizeof(int32_t));  // sampled ids, a batch's or one
    }
    DeviceBuffer position, x, branch, xn, proj, q, kk, v, g, gate, o, o_bf, low, low_bf, beta,
        kda_chunk, mq, kv, attn, attn_bf, mla, ffn_gate, ffn_up, ffn_act, router, route_done, chosen, weights,
        e_act, moe, logits, sampling, batch, sampled;
};

// One session's state in device memory. Plain data: CudaBackend operates on it.
struct CudaState final : BackendState {
    CudaState(const ModelConfig& config, int device, uint64_t capacity);
    ~CudaState() override;

    float* recurrent(int which) const { return recurrent_[which].as<float>(); }
    float* logits(int which) const { return logits_[which].as<float>(); }

    int device_;
    std::vector<size_t> recurrent_offset_;  // floats, per layer (KDA layers only)
    size_t recurrent_floats_ = 0;
    // KDA S then conv state per KDA layer, and the last logits: [current_] is the state; a
    // forward pass writes the other buffer and flips current_ only when it succeeds, so a
    // failed call leaves the session as it was (and decode needs no copy).
    DeviceBuffer recurrent_[2], logits_[2];
    int current_ = 0;
    std::vector<DeviceBuffer> cache_;    // bf16 [capacity, rank + rope] per MLA layer
    DeviceBuffer history_;               // int32 [capacity]: tokens by position
    mutable size_t history_synced_ = 0;  // leading history_ entries known to be the session's
    cudaGraphExec_t decode_graph_[2] = {nullptr, nullptr};  // one token, from buffer [i]
    uint64_t graph_generation_ = 0;  // CudaBackend::graph_generation() they captured
};

class CudaBackend final : public Backend {
public:
    // cuda_model.cu: weights and the forward pass.
    CudaBackend(const ModelConfig& config, const ModelLayout& layout, const WeightSource& source,
                int device);
    ~CudaBackend() override;

    DeviceKind device() const override { return DeviceKind::Cuda; }
    uint64_t weight_bytes() const override { return weight_bytes_; }
    uint64_t session_fixed_bytes() const override { return config_.recurrent_state_bytes(); }
    uint64_t kv_bytes_per_token() const override {  // the cache is bf16
        return static_cast<uint64_t>(config_.mla_cache_values_per_token()) * sizeof(bf16);
    }

    void forward(BackendState& base, uint64_t position, const int32_t* tokens, size_t n,
                 float* last_logits, float* all_logits,
                 const std::atomic<bool>& cancel) const override;
    // Device sampling from the state's logits: one token id crosses to the host.
    int32_t sample(const BackendState& base, const SamplingParams& params, const int32_t* history,
                   size_t history_len, uint64_t position) const override;
    // cuda_batch.cu: the batched decode pass and device sampling for a batch.
    void forward_batch(BackendState* const* states, const uint64_t* positions,
                       const int32_t* tokens, size_t n) const override;
    void sample_batch(const BackendState* const* states, const SamplingParams* params,
                      const int32_t* const* histories, const size_t* history_lens,
                      const uint64_t* positions, size_t n, int32_t* out) const override;

    // cuda_state.cu: session state.
    std::unique_ptr<BackendState> create_state(uint64_t max_context) const override;
    std::unique_ptr<BackendState> clone_state(const BackendState& base) const override;
    void reset_state(BackendState& base) const override;
    void fill_synthetic(BackendState& base, uint64_t position, uint64_t seed) const override;
    void read_logits(const BackendState& base, float* out) const override;
    void write_logits(BackendState& base, const float* logits) const override;
    void save_layer(const BackendState& base, size_t layer, uint64_t position,
                    uint8_t* out) const override;
    void load_layer(BackendState& base, size_t layer, uint64_t position,
                    const uint8_t* in) const override;

    // cuda_shard.cu: makes this backend shard role.rank of a split model, before any state.
    void become_shard(ShardRole role);

private:
    // Runs `work(stream)` under the model's lock on its stream and waits for it (`what`
    // names the wait in an error): how a session's state is touched outside forward(), so
    // nothing races a running pass. On a throw the stream is drained and the error cleared.
    void on_stream(const std::function<void(cudaStream_t)>& work,
                   const char* what = "state copy") const;

    template <typename Get>
    void load_kda(Layer& L, const KdaTensors& t, Get& get);
    template <typename Get>
    void load_experts(Layer& L, const std::vector<MlpTensors>& experts, Get& get);
    static void upload_expert_tables(Layer& L);
    void reserve_gemm_buffers();

    // The fused decode path needs the fused KDA kernel for this head size.
    bool decode_fused() const {
        return config_.n_kda_layers() == 0 || kda_decode_supported(config_.kda_head_dim);
    }
    void set_position(uint64_t position) const;
    // cuda_shard.cu. A block's partial output summed over the shards (nothing unsplit); the
    // logits of `rows` normed rows into out [rows, vocab] (a shard: its part, then every
    // shard's gathered); whether to stop at a cancel, which a shard decides with the others
    // through the host links (else one could stop while the rest wait in its all-reduce).
    void shard_sum(float* values, size_t count) const;
    void head_rows(const bf16* xn, size_t rows, float* out) const;
    bool stop_for_cancel(const std::atomic<bool>& cancel) const;
    bool uses_graphs() const { return !profile_.eager(); }
    // The state's decode graphs; `locked`: the caller holds mutex_ and the device guard.
    void capture_decode_graphs(CudaState& st, bool locked = false) const;
    // A shard's graphs hold the communicators they captured: after an aborted step made new
    // ones (NcclGroup::generation), they are captured again before their next replay.
    uint64_t graph_generation() const { return shard_ ? shard_->nccl->generation() : 0; }
    void linear(const bf16* x, size_t n, const Weight& w, float* y, size_t ldy = 0) const;
    void mlp(const Mlp& w, const bf16* x, size_t n, Workspace& ws, float* out) const;
    void run_piece(CudaState& st, uint64_t position, size_t m, const float* rec_in, float* rec_out,
                   float* logits_out, float* all_logits, const std::atomic<bool>& cancel) const;
    void run_layers(const Pass& pass, const std::atomic<bool>& cancel) const;
    void run_batch_group(CudaState* const* states, const uint64_t* positions, const int32_t* tokens,
                         size_t n) const;
    void enqueue_batch(size_t n, const std::vector<size_t>& rec_offset) const;
    cudaGraphExec_t batch_graph(size_t n, const std::vector<size_t>& rec_offset) const;
    cudaGraphExec_t capture(const std::function<void()>& work) const;
    void upload_history(const CudaState& st, const int32_t* history, size_t history_len) const;
    KdaDecodeWeights decode_weights(const Layer& L) const;
    void kda_projections(const Layer& L, size_t m) const;
    void kda_layer(const Layer& L, const Pass& pass, size_t l, float* out) const;
    // The decode experts' kernels run the shared expert as one more slot when it has the
    // routed experts' shape and format.
    bool fuses_shared(const Layer& L) const {
        return L.has_shared &&
               L.shared.gate.rows == static_cast<size_t>(config_.moe_intermediate_size) &&
               L.shared.gate.code == L.expert_weights.code &&
               L.shared.up.code == L.expert_weights.code &&
               L.shared.down.code == L.expert_weights.code;
    }
    void mla_layer(const Layer& L, const Pass& pass, size_t l, float* out) const;
    // A prefill piece's MLA attention in the expanded form (mla_prefill.cu), where it runs.
    bool expanded_mla(size_t m) const;
    void mla_prefill(const Layer& L, const Pass& pass, const bf16* cache) const;
    const Weight& head() const { return tied_ ? embed_ : lm_head_; }
    void moe(const Layer& L, const bf16* xn, size_t m, Workspace& ws, float* out) const;

    ModelConfig config_;
    int device_;
    cudaStream_t stream_ = nullptr;
    // Prefill cancel: an event after each layer of a piece, so the host enqueues a layer only
    // when the device is at most two layers behind, and checks the cancel flag before each
    // one (docs/design/architecture.md "Cancel"). Guarded by mutex_.
    cudaEvent_t layer_done_[2] = {nullptr, nullptr};
    std::unique_ptr<Gemm> gemm_;
    // Every pass and state operation on the stream; FIFO, so that a prefill can let waiting
    // decode passes go between its pieces (forward()).
    mutable FifoMutex mutex_;
    mutable OpProfile profile_;             // guarded by mutex_
    std::unique_ptr<Workspace> workspace_;  // guarded by mutex_
    // [n]: the batched pass of n rows, captured at its second use (guarded by mutex_).
    mutable std::vector<cudaGraphExec_t> batch_graphs_;
    mutable std::vector<uint32_t> batch_passes_;    // [n]: passes of n rows before its graph
    mutable uint64_t batch_graphs_generation_ = 0;  // graph_generation() they captured
    uint64_t weight_bytes_ = 0;
    // Set by become_shard; head_part_ [rows, widest vocabulary part] and head_gathered_
    // (every rank's) are the lm_head's gather buffers.
    std::unique_ptr<ShardRole> shard_;
    size_t head_width_ = 0;
    DeviceBuffer head_part_, head_gathered_;
    bool tied_ = false;
    // Prefill pieces of many queries take mla_prefill.cu's expanded form;
    // KL_CUDA_MLA_PREFILL=absorbed keeps them on the absorbed form (A/B runs, tests).
    bool mla_prefill_expanded_ = true;
    Weight embed_, final_norm_, lm_head_;
    std::vector<Layer> layers_;
};

}  // namespace kl::cuda
