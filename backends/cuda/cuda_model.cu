// The CUDA backend's weights (uploaded once, by visiting the model's layout) and its
// forward pass; the provider backends/registry.cpp hands to Model. Session state is in
// cuda_state.cu.
#include <cmath>
#include <cstdlib>
#include <string>

#include "core/safetensors.h"
#include "core/weight_store.h"
#include "cuda_backend.h"
#include "cuda_model.h"

namespace kl::cuda {

CudaBackend::CudaBackend(const ModelConfig& config, const ModelLayout& layout,
                         const WeightSource& source, int device)
    : config_(config), device_(device) {
    DeviceGuard guard(device);
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    for (cudaEvent_t& event : layer_done_)
        check(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "cudaEventCreate");
    gemm_ = std::make_unique<Gemm>();
    auto get = [&](const TensorSpec& spec, Form form = Form::Bf16) {
        Weight w = source(spec, form);
        weight_bytes_ += w.bytes();
        return w;
    };
    auto mlp = [&](const MlpTensors& t) {
        return Mlp{get(t.gate, Form::Any), get(t.up, Form::Any), get(t.down, Form::Any)};
    };
    embed_ = get(layout.embed_tokens);
    final_norm_ = get(layout.final_norm);
    tied_ = layout.tied;
    if (!tied_) lm_head_ = get(layout.lm_head, Form::Any);
    size_t mla_layers = 0;
    for (const LayerTensors& t : layout.layers) {
        Layer L;
        L.input_norm = get(t.input_layernorm);
        L.post_norm = get(t.post_attention_layernorm);
        L.is_kda = t.is_kda;
        if (L.is_kda) {
            load_kda(L, t.kda, get);
        } else {
            L.mq = get(t.mla.q_proj, Form::Any), L.kv_a = get(t.mla.kv_a_proj_with_mqa, Form::Any);
            if (decode_stacked() && stackable({&L.mq, &L.kv_a})) {  // one decode GEMV, views
                const size_t q_rows = L.mq.rows, kv_rows = L.kv_a.rows;
                L.mq_kv = stack_rows({&L.mq, &L.kv_a});
                L.mq = row_view(L.mq_kv, 0, q_rows), L.kv_a = row_view(L.mq_kv, q_rows, kv_rows);
            }
            L.kv_norm = get(t.mla.kv_a_layernorm), L.kv_b = get(t.mla.kv_b_proj);
            L.mo = get(t.mla.o_proj, Form::Any);
            L.mla_slot = mla_layers++;
        }
        L.is_moe = t.is_moe;
        if (L.is_moe) {
            L.router = get(t.moe.router);
            L.router_bias = get(t.moe.router_bias, Form::F32);
            load_experts(L, t.moe.experts, get);
            upload_expert_tables(L);
            L.has_shared = t.moe.has_shared;
            if (L.has_shared) L.shared = mlp(t.moe.shared);
        } else {
            L.mlp = mlp(t.mlp);
        }
        layers_.push_back(std::move(L));
    }
    workspace_ = std::make_unique<Workspace>(config);
    reserve_gemm_buffers();
    const char* mla_prefill = std::getenv("KL_CUDA_MLA_PREFILL");
    mla_prefill_expanded_ = !(mla_prefill && std::string(mla_prefill) == "absorbed");
}

// Prefill and batches (more rows than the GEMVs take) run FP8 linears on the FP8 tensor cores
// (their scales padded for cuBLASLt, x quantized into a scratch buffer of kPiece rows) and
// INT4 ones through cuBLASLt on their bf16 values, expanded into one scratch buffer of the
// largest such weight's size, which also serves FP8 shapes cuBLASLt has no FP8 algorithm
// for (gemm.h).
void CudaBackend::reserve_gemm_buffers() {
    size_t largest = 0, fp8_in = 0, fp8_out = 0;
    auto take = [&](const Weight& w) {
        if (w.code == WeightCode::Bf16) return;
        largest = std::max(largest, w.rows * w.cols);
        if (w.code == WeightCode::Fp8 && Gemm::fp8_tensor_cores(w.rows, w.cols)) {
            gemm_->prepare_fp8(w.matrix(), w.rows, w.cols);
            fp8_in = std::max(fp8_in, w.cols);
            fp8_out = std::max(fp8_out, w.rows);
        }
    };
    if (!tied_) take(lm_head_);
    for (const Layer& L : layers_) {
        for (const Weight* w :
             {&L.x_proj, &L.q, &L.k, &L.v, &L.o, &L.mq, &L.kv_a, &L.mo, &L.mlp.gate, &L.mlp.up,
              &L.mlp.down, &L.shared.gate, &L.shared.up, &L.shared.down})
            take(*w);
    }
    gemm_->reserve_dequantized(largest);
    if (fp8_in) gemm_->reserve_fp8_activations(std::max(kPiece, kMaxBatch), fp8_in, fp8_out);
}

template <typename Get>
void CudaBackend::load_kda(Layer& L, const KdaTensors& t, Get& get) {
    const size_t H = config_.kda_num_heads, D = config_.kda_head_dim, HD = H * D;
    {
        Weight q = get(t.q_proj, Form::Any), k = get(t.k_proj, Form::Any),
               v = get(t.v_proj, Form::Any);
        const Weight f_a = get(t.f_a_proj), g_a = get(t.g_a_proj), b = get(t.b_proj);
        if (!stackable({&q, &k, &v})) {  // formats differ (a checkpoint's choice): all bf16
            for (Weight* w : {&q, &k, &v}) {
                weight_bytes_ -= w->bytes();
                *w = to_bf16(*w);
                weight_bytes_ += w->bytes();
            }
        }
        if (q.code == WeightCode::Bf16) {
            L.x_proj = stack_rows({&q, &k, &v, &f_a, &g_a, &b});
        } else {
            L.x_proj = stack_rows({&q, &k, &v});
            L.x_low = stack_rows({&f_a, &g_a, &b});
        }
    }  // the separate copies are freed here
    size_t row = 0;
    for (Weight* part : {&L.q, &L.k, &L.v}) *part = row_view(L.x_proj, row, HD), row += HD;
    const Weight& low = L.x_low.rows ? L.x_low : L.x_proj;
    if (L.x_low.rows) row = 0;
    L.f_a = row_view(low, row, D), row += D;
    L.g_a = row_view(low, row, D), row += D;
    L.b = row_view(low, row, H);
    L.q_conv = get(t.q_conv), L.k_conv = get(t.k_conv), L.v_conv = get(t.v_conv);
    L.f_b = get(t.f_b_proj);
    L.a_log = get(t.a_log, Form::F32), L.dt_bias = get(t.dt_bias, Form::F32);
    L.g_b = get(t.g_b_proj);
    L.o_norm = get(t.o_norm), L.o = get(t.o_proj, Form::Any);
}

// The routed experts of a layer in three buffers (every expert's gate, up, down), each
// expert's matrices views of them. cudaMalloc rounds each allocation up to 2 MiB pages, and
// an expert matrix of the 48B model is 4.5 MiB: a buffer per matrix wasted 1.5 MiB of every
// 6, 29 GiB over the 19,968 matrices (measured on the H200: 126 GB in use after loading
// 93.7 GB of weights). Loaded one kind at a time, so the separate copies add at most one
// kind's worth while they are stacked.
template <typename Get>
void CudaBackend::load_experts(Layer& L, const std::vector<MlpTensors>& experts, Get& get) {
    L.experts.resize(experts.size());
    Weight Mlp::*kinds[] = {&Mlp::gate, &Mlp::up, &Mlp::down};
    const TensorSpec MlpTensors::*specs[] = {&MlpTensors::gate, &MlpTensors::up,
                                             &MlpTensors::down};
    for (int kind = 0; kind < 3; ++kind) {
        std::vector<Weight> parts;
        parts.reserve(experts.size());
        for (const MlpTensors& e : experts) parts.push_back(get(e.*specs[kind], Form::Any));
        // A shard of a split model holds its own experts only: the others' have no rows
        // and stay null (their slots are masked out: keep_owned_experts).
        std::vector<Weight*> held;
        for (Weight& w : parts)
            if (w.rows) held.push_back(&w);
        if (held.empty()) continue;
        std::vector<const Weight*> order(held.begin(), held.end());
        if (!stackable(order)) {  // formats differ (a checkpoint's choice): all bf16
            for (Weight* w : held) {
                weight_bytes_ -= w->bytes();
                *w = to_bf16(*w);
                weight_bytes_ += w->bytes();
            }
        }
        const Weight all = stack_rows(order);
        size_t row = 0;
        for (size_t i = 0; i < experts.size(); ++i) {
            if (!parts[i].rows) continue;
            L.experts[i].*kinds[kind] = row_view(all, row, parts[i].rows);
            row += parts[i].rows;
        }
    }
}

// One buffer of six tables: the experts' w1, w3, w2 matrices, then their scales (quantized).
void CudaBackend::upload_expert_tables(Layer& L) {
    const size_t E = L.experts.size();
    std::vector<const void*> tables;
    tables.reserve(6 * E);
    for (Weight Mlp::*kind : {&Mlp::gate, &Mlp::up, &Mlp::down})
        for (const Mlp& e : L.experts) tables.push_back((e.*kind).data);
    for (Weight Mlp::*kind : {&Mlp::gate, &Mlp::up, &Mlp::down})
        for (const Mlp& e : L.experts) tables.push_back((e.*kind).scales);
    L.expert_tables = DeviceBuffer(tables.size() * sizeof(const void*));
    check(cudaMemcpy(L.expert_tables.as<void>(), tables.data(), tables.size() * sizeof(const void*),
                     cudaMemcpyHostToDevice),
          "expert tables");
    const void* const* t = L.expert_tables.as<const void*>();
    ExpertWeights& w = L.expert_weights;
    w.code = WeightCode::Bf16;
    for (const Mlp& e : L.experts)  // the first held expert's (a shard may hold none)
        if (e.gate.data) {
            w.code = e.gate.code;
            break;
        }
    w.w1 = t, w.w3 = t + E, w.w2 = t + 2 * E;
    if (w.code != WeightCode::Bf16) {
        w.s1 = reinterpret_cast<const float* const*>(t + 3 * E);
        w.s3 = reinterpret_cast<const float* const*>(t + 4 * E);
        w.s2 = reinterpret_cast<const float* const*>(t + 5 * E);
    }
}

CudaBackend::~CudaBackend() {
    destroy_graphs(batch_graphs_);
    for (cudaEvent_t event : layer_done_)
        if (event) cudaEventDestroy(event);
    if (stream_) cudaStreamDestroy(stream_);
}

void CudaBackend::forward(BackendState& base, uint64_t position, const int32_t* tokens, size_t n,
                          float* last_logits, float* all_logits,
                          const std::atomic<bool>& cancel) const {
    std::lock_guard<FifoMutex> lock(mutex_);
    DeviceGuard guard(device_);
    auto& st = static_cast<CudaState&>(base);
    const int in = st.current_, out = 1 - in;
    try {
        // A shard decides with the others (a decode step's one decision; prefill's before
        // each layer too).
        if (shard_ && stop_for_cancel(cancel)) fail(Status::Cancelled, "cancelled");
        if (n == 1 && st.decode_graph_[in] && st.graph_generation_ != graph_generation())
            capture_decode_graphs(st, /*locked=*/true);
        check(cudaMemcpyAsync(st.history_.as<int32_t>() + position, tokens, n * sizeof(int32_t),
                              cudaMemcpyHostToDevice, stream_),
              "upload tokens");
        if (n == 1 && st.decode_graph_[in]) {
            if (!shard_ && cancel.load(std::memory_order_relaxed))  // a shard voted above
                fail(Status::Cancelled, "cancelled");
            set_position(position);
            check(cudaGraphLaunch(st.decode_graph_[in], stream_), "decode graph");
        } else {
            // The fused decode kernels read buffer `in` and write `out`; the prefill
            // kernels update in place, on a copy.
            const bool fused = n <= kDecodeTokens && decode_fused();
            if (!fused && st.recurrent_[in].bytes())
                check(cudaMemcpyAsync(st.recurrent(out), st.recurrent(in),
                                      st.recurrent_[in].bytes(), cudaMemcpyDeviceToDevice, stream_),
                      "copy state");
            const float* source = fused ? st.recurrent(in) : st.recurrent(out);
            for (size_t start = 0; start < n; start += kPiece) {
                // A long prompt lets the passes of other sessions that wait for the model
                // (decode steps) run between its pieces: their wait is one piece, not the
                // whole prefill. Nothing of this pass lives in the workspace between pieces
                // (the state, its cache and the logits are the session's), and the others
                // never touch this session's state. A shard does not: its pieces meet the
                // other shards' in collectives.
                if (start > 0 && !shard_) mutex_.yield_to_waiters();
                const size_t m = std::min(kPiece, n - start);
                set_position(position + start);
                run_piece(st, position + start, m, source, st.recurrent(out),
                          start + m == n ? st.logits(out) : nullptr,
                          all_logits ? all_logits + start * config_.vocab_size : nullptr, cancel);
                source = st.recurrent(out);
            }
        }
        if (last_logits)
            check(cudaMemcpyAsync(last_logits, st.logits(out), config_.vocab_size * sizeof(float),
                                  cudaMemcpyDeviceToHost, stream_),
                  "copy logits");
        check(cudaStreamSynchronize(stream_), "forward");
        profile_.section(nullptr, stream_);
        if (n == 1 && st.decode_graph_[in]) profile_.replayed(st.decode_graph_[in]);
    } catch (...) {
        cudaStreamSynchronize(stream_);
        cudaGetLastError();
        throw;
    }
    st.current_ = out;
    if (st.history_synced_ >= position) st.history_synced_ = position + n;
}

// Device sampling from the state's logits: one token id crosses to the host (the batch of
// one; cuda_batch.cu).
int32_t CudaBackend::sample(const BackendState& base, const SamplingParams& params,
                            const int32_t* history, size_t history_len, uint64_t position) const {
    const BackendState* states[1] = {&base};
    int32_t token = -1;
    sample_batch(states, &params, &history, &history_len, &position, 1, &token);
    return token;
}

// The penalty reads the history on the device: the entries past those known to be the
// session's (e.g. after a snapshot load) are uploaded first. Caller holds mutex_ and marks
// them synced once the sampling succeeded.
void CudaBackend::upload_history(const CudaState& st, const int32_t* history,
                                 size_t history_len) const {
    if (st.history_synced_ >= history_len) return;
    check(cudaMemcpyAsync(st.history_.as<int32_t>() + st.history_synced_,
                          history + st.history_synced_,
                          (history_len - st.history_synced_) * sizeof(int32_t),
                          cudaMemcpyHostToDevice, stream_),
          "upload history");
}

void CudaBackend::set_position(uint64_t position) const {
    const int32_t value = static_cast<int32_t>(position);
    check(cudaMemcpyAsync(workspace_->position.as<void>(), &value, sizeof(value),
                          cudaMemcpyHostToDevice, stream_),
          "upload position");
}

// One graph per buffer parity: the decode step of one token whose id sits in the
// history at the position held in the workspace, reading state buffer p and writing
// 1 - p. Captured once per session; replays need no host work but two tiny uploads.
void CudaBackend::capture_decode_graphs(CudaState& st, bool locked) const {
    if (!decode_fused()) return;
    std::unique_lock<FifoMutex> lock(mutex_, std::defer_lock);
    if (!locked) lock.lock();
    DeviceGuard guard(device_);
    const std::atomic<bool> never(false);
    destroy_graphs(st.decode_graph_);
    st.graph_generation_ = graph_generation();
    for (int p = 0; p < 2; ++p)
        st.decode_graph_[p] = capture([&] {
            // Position 0: a replayed step reads its position from the workspace.
            run_piece(st, 0, 1, st.recurrent(p), st.recurrent(1 - p), st.logits(1 - p), nullptr,
                      never);
        });
}

// The graph of what `work` enqueues on the stream (caller holds mutex_); on a throw nothing
// is left captured.
cudaGraphExec_t CudaBackend::capture(const std::function<void()>& work) const {
    check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "begin graph capture");
    cudaGraph_t graph = nullptr;
    try {
        work();
        profile_.section(nullptr, stream_);  // the closing mark (KL_CUDA_PROFILE=graph)
    } catch (...) {
        drop_chained_launches(false);  // KL_CUDA_PROFILE=without: a section left open
        cudaStreamEndCapture(stream_, &graph);
        if (graph) cudaGraphDestroy(graph);
        cudaGetLastError();
        throw;
    }
    check(cudaStreamEndCapture(stream_, &graph), "end graph capture");
    cudaGraphExec_t exec = nullptr;
    const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    check(status, "cudaGraphInstantiate");
    profile_.captured(exec);
    return exec;
}

void CudaBackend::linear(const bf16* x, size_t n, const Weight& w, float* y, size_t ldy) const {
    gemm_->run(x, n, w.cols, w.matrix(), w.rows, y, ldy ? ldy : w.rows, stream_);
}

void CudaBackend::mlp(const Mlp& w, const bf16* x, size_t n, Workspace& ws, float* out) const {
    const size_t inter = w.gate.rows;
    linear(x, n, w.gate, ws.ffn_gate.as<float>());
    linear(x, n, w.up, ws.ffn_up.as<float>());
    silu_mul_to_bf16(ws.ffn_gate.as<float>(), ws.ffn_up.as<float>(), n * inter,
                     ws.ffn_act.as<bf16>(), stream_);
    linear(ws.ffn_act.as<bf16>(), n, w.down, out);
}

// Enqueues m tokens (ids in the history at the workspace's position) through all
// layers: the KDA state is read from rec_in and written to rec_out (equal buffers: in
// place), the last token's logits go to logits_out (device) when not null, all rows to
// all_logits (host) when not null.
void CudaBackend::run_piece(CudaState& st, uint64_t position, size_t m, const float* rec_in,
                            float* rec_out, float* logits_out, float* all_logits,
                            const std::atomic<bool>& cancel) const {
    Workspace& ws = *workspace_;
    Pass pass;
    pass.m = m, pass.ids = st.history_.as<int32_t>(), pass.ids_at = ws.position.as<int32_t>();
    pass.rec_offset = &st.recurrent_offset_;
    pass.st = &st, pass.position = position, pass.rec_in = rec_in, pass.rec_out = rec_out;
    run_layers(pass, cancel);

    profile_.section("lm_head", stream_);
    const size_t h = config_.hidden_size, vocab = config_.vocab_size;
    const bf16* xn = ws.xn.as<bf16>();
    if (all_logits) {
        float* rows_out = ws.logits.as<float>();
        for (size_t r = 0; r < m; r += kLogitsRows) {
            const size_t rows = std::min(kLogitsRows, m - r);
            head_rows(xn + r * h, rows, rows_out);
            check(cudaMemcpyAsync(all_logits + r * vocab, rows_out, rows * vocab * sizeof(float),
                                  cudaMemcpyDeviceToHost, stream_),
                  "copy logits");
        }
    }
    if (logits_out) head_rows(xn + (m - 1) * h, 1, logits_out);
}

// Embedding, every layer and the final norm for the pass's rows: ws.xn holds the normed
// rows for lm_head afterwards.
void CudaBackend::run_layers(const Pass& pass, const std::atomic<bool>& cancel) const {
    const ModelConfig& c = config_;
    Workspace& ws = *workspace_;
    const size_t h = c.hidden_size, m = pass.m;
    const float eps = c.rms_norm_eps;
    float* x = ws.x.as<float>();
    float* branch = ws.branch.as<float>();
    bf16* xn = ws.xn.as<bf16>();
    profile_.section("embedding", stream_);
    const int64_t vocab_begin = shard_ ? shard_->vocab[size_t(shard_->rank)].first : 0;
    embedding_gather(embed_.bf(), vocab_begin, static_cast<int64_t>(embed_.rows), pass.ids,
                     pass.ids_at, m, h, x, stream_);
    shard_sum(x, m * h);
    profile_.section("norms + residual", stream_);
    rms_norm_to_bf16(x, h, layers_[0].input_norm.bf(), m, h, eps, xn, h, stream_);

    // A prefill piece (not a decode step, and never inside a graph capture): the host runs
    // at most two layers ahead of the device, so the cancel check before each layer is at
    // most two layers' work from taking effect (it was the whole prefill: the host enqueued
    // every layer at once and then waited). The device stays busy: layer l-1 runs while the
    // host waits for l-2 and enqueues l.
    const bool paced = pass.st && m > kDecodeTokens;
    for (size_t l = 0; l < layers_.size(); ++l) {
        if (paced && l >= 2)
            check(cudaEventSynchronize(layer_done_[l % 2]), "prefill layer");  // layer l-2
        if ((paced || !shard_) && stop_for_cancel(cancel)) fail(Status::Cancelled, "cancelled");
        const Layer& L = layers_[l];
        if (L.is_kda)
            kda_layer(L, pass, l, branch);
        else
            mla_layer(L, pass, l, branch);
        shard_sum(branch, m * h);
        profile_.section("norms + residual", stream_);
        add_rms_norm_to_bf16(x, branch, L.post_norm.bf(), m, h, eps, xn, stream_);
        if (L.is_moe) {
            moe(L, xn, m, ws, branch);
        } else {
            profile_.section("dense mlp", stream_);
            mlp(L.mlp, xn, m, ws, branch);
        }
        shard_sum(branch, m * h);
        profile_.section("norms + residual", stream_);
        const Weight& next_norm = l + 1 < layers_.size() ? layers_[l + 1].input_norm : final_norm_;
        add_rms_norm_to_bf16(x, branch, next_norm.bf(), m, h, eps, xn, stream_);
        if (paced) check(cudaEventRecord(layer_done_[l % 2], stream_), "prefill layer event");
    }
    if ((paced || !shard_) && stop_for_cancel(cancel)) fail(Status::Cancelled, "cancelled");
}

KdaDecodeWeights CudaBackend::decode_weights(const Layer& L) const {
    return KdaDecodeWeights{L.q_conv.bf(), L.k_conv.bf(),
                            L.v_conv.bf(), static_cast<size_t>(config_.short_conv_kernel_size),
                            L.f_b.bf(),    L.g_b.bf(),
                            L.a_log.f32(), L.dt_bias.f32(),
                            L.o_norm.bf(), config_.rms_norm_eps};
}

// ws.proj[m, proj_rows] = xn · [q k v f_a g_a b]^T: one GEMV, two with quantized q, k, v
// (one launch of both, gemv_pair, unless KL_CUDA_DECODE_STACKED=0).
void CudaBackend::kda_projections(const Layer& L, size_t m) const {
    const bf16* xn = workspace_->xn.as<bf16>();
    float* proj = workspace_->proj.as<float>();
    if (L.x_low.rows && decode_stacked() && gemv_supported(m, L.x_proj.cols, L.x_proj.code)) {
        gemv_pair(xn, m, L.x_proj.cols, L.x_proj.matrix(), L.x_proj.rows, L.x_low.bf(),
                  L.x_low.rows, proj, L.proj_rows(), stream_);
        return;
    }
    linear(xn, m, L.x_proj, proj, L.proj_rows());
    if (L.x_low.rows) linear(xn, m, L.x_low, proj + L.x_proj.rows, L.proj_rows());
}

void CudaBackend::kda_layer(const Layer& L, const Pass& pass, size_t l, float* out) const {
    const ModelConfig& c = config_;
    Workspace& ws = *workspace_;
    const size_t H = c.kda_num_heads, D = c.kda_head_dim, HD = H * D, m = pass.m;
    const size_t kernel = c.short_conv_kernel_size;
    const float scale = 1.0f / std::sqrt(static_cast<float>(D));
    const bf16* xn = ws.xn.as<bf16>();
    const size_t offset = (*pass.rec_offset)[l];
    if (!pass.st) {  // a batch: one token of each of m sessions, each its own state
        profile_.section("kda projections (batch)", stream_);
        kda_projections(L, m);
        profile_.section("kda fused decode step (batch)", stream_);
        kda_decode_step_batch(ws.proj.as<float>(), L.proj_rows(), m, H, D, scale, decode_weights(L),
                              pass.batch_rec_in, pass.batch_rec_out, offset,
                              offset + c.kda_state_floats(), ws.o_bf.as<bf16>(), 0, stream_);
    } else if (m <= kDecodeTokens && kda_decode_supported(D)) {
        const float* rec_in = pass.rec_in + offset;
        float* rec_out = pass.rec_out + offset;
        profile_.section("kda projections (1 GEMV)", stream_);
        kda_projections(L, m);
        profile_.section("kda fused decode step", stream_);
        kda_decode_step(ws.proj.as<float>(), L.proj_rows(), m, H, D, scale, decode_weights(L),
                        rec_in, rec_in + c.kda_state_floats(), rec_out,
                        rec_out + c.kda_state_floats(), ws.o_bf.as<bf16>(), stream_);
    } else {
        // Prefill: in place (the caller made rec_in == rec_out hold the state).
        float* S = pass.rec_out + offset;
        float* conv = S + c.kda_state_floats();
        const size_t conv_each = (kernel - 1) * HD;
        const Weight* proj[3] = {&L.q, &L.k, &L.v};
        const Weight* convw[3] = {&L.q_conv, &L.k_conv, &L.v_conv};
        float* outs[3] = {ws.q.as<float>(), ws.kk.as<float>(), ws.v.as<float>()};
        // Fused: q and k are L2-normalized per head in their conv's pass.
        const bool fused = kda_fused_prefill_ops();
        for (int i = 0; i < 3; ++i) {
            profile_.section("kda q/k/v GEMMs", stream_);
            linear(xn, m, *proj[i], ws.proj.as<float>());
            profile_.section("kda short conv", stream_);
            if (fused)
                short_conv_silu_heads(ws.proj.as<float>(), m, H, D, convw[i]->bf(), kernel,
                                      conv + i * conv_each, outs[i], i < 2, stream_);
            else
                short_conv_silu(ws.proj.as<float>(), m, HD, convw[i]->bf(), kernel,
                                conv + i * conv_each, outs[i], stream_);
        }
        profile_.section("kda norms + gates", stream_);
        if (!fused) {
            l2_normalize_heads(ws.q.as<float>(), m * H, D, stream_);
            l2_normalize_heads(ws.kk.as<float>(), m * H, D, stream_);
        }
        linear(xn, m, L.f_a, ws.low.as<float>());
        cast_to_bf16(ws.low.as<float>(), m * D, ws.low_bf.as<bf16>(), stream_);
        linear(ws.low_bf.as<bf16>(), m, L.f_b, ws.g.as<float>());
        kda_gate(ws.g.as<float>(), L.a_log.f32(), L.dt_bias.f32(), m, H, D, stream_);
        linear(xn, m, L.b, ws.beta.as<float>());
        sigmoid_inplace(ws.beta.as<float>(), m * H, stream_);
        if (kda_chunk_supported(D)) {
            profile_.section("kda chunked prefill", stream_);
            kda_chunked_prefill(ws.q.as<float>(), ws.kk.as<float>(), ws.v.as<float>(),
                                ws.g.as<float>(), ws.beta.as<float>(), m, H, D, scale, S,
                                ws.o.as<float>(), ws.kda_chunk.as<void>(), stream_);
        } else {
            profile_.section("kda recurrence", stream_);
            kda_recurrent(ws.q.as<float>(), ws.kk.as<float>(), ws.v.as<float>(), ws.g.as<float>(),
                          ws.beta.as<float>(), m, H, D, scale, S, ws.o.as<float>(), stream_);
        }
        profile_.section("kda gated norm", stream_);
        linear(xn, m, L.g_a, ws.low.as<float>());
        cast_to_bf16(ws.low.as<float>(), m * D, ws.low_bf.as<bf16>(), stream_);
        linear(ws.low_bf.as<bf16>(), m, L.g_b, ws.gate.as<float>());
        kda_gated_norm(ws.o.as<float>(), ws.gate.as<float>(), L.o_norm.bf(), m, H, D,
                       c.rms_norm_eps, ws.o_bf.as<bf16>(), stream_);
    }
    profile_.section("kda o_proj", stream_);
    linear(ws.o_bf.as<bf16>(), m, L.o, out);
}

void CudaBackend::mla_layer(const Layer& L, const Pass& pass, size_t l, float* out) const {
    const ModelConfig& c = config_;
    Workspace& ws = *workspace_;
    const size_t width = c.mla_cache_width(), Hm = c.num_attention_heads, m = pass.m;
    const bf16* xn = ws.xn.as<bf16>();
    profile_.section("mla q/kv proj + cache", stream_);
    // One token: q and the latent in one GEMV, the latent's row right after q's.
    float* kv = ws.kv.as<float>();
    if (m == 1 && L.mq_kv.rows && ws.mq.bytes() >= L.mq_kv.rows * sizeof(float)) {
        linear(xn, 1, L.mq_kv, ws.mq.as<float>());
        kv = ws.mq.as<float>() + L.mq.rows;
    } else {
        linear(xn, m, L.mq, ws.mq.as<float>());
        linear(xn, m, L.kv_a, kv);
    }
    if (pass.st) {
        const int32_t* pos = ws.position.as<int32_t>();
        bf16* cache = pass.st->cache_[l].as<bf16>();
        latent_to_cache(kv, m, c.kv_lora_rank, width, L.kv_norm.bf(), c.rms_norm_eps, pos, cache,
                        stream_);
        profile_.section("mla attention", stream_);
        if (expanded_mla(m))
            mla_prefill(L, pass, cache);
        else
            mla_attention(ws.mq.as<float>(), m, pos, pass.st->capacity(), cache, L.kv_b.bf(), Hm,
                          c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim, c.kv_lora_rank,
                          ws.mla.as<void>(), ws.attn.as<float>(), stream_);
    } else {  // a batch: each row's cache row and attention in its own session's cache
        bf16* const* caches = pass.batch_caches + L.mla_slot * m;
        latent_to_cache_batch(kv, m, c.kv_lora_rank, width, L.kv_norm.bf(), c.rms_norm_eps,
                              pass.batch_positions, caches, stream_);
        profile_.section("mla attention (batch)", stream_);
        // Splits planned for any context (INT32_MAX rows, as the workspace is sized), so
        // that one captured pass serves sessions of every capacity.
        mla_attention_batch(ws.mq.as<float>(), m, pass.batch_positions, caches, INT32_MAX,
                            L.kv_b.bf(), Hm, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim,
                            c.kv_lora_rank, ws.mla.as<void>(), ws.attn.as<float>(), stream_);
    }
    profile_.section("mla o_proj", stream_);
    cast_to_bf16(ws.attn.as<float>(), m * Hm * c.v_head_dim, ws.attn_bf.as<bf16>(), stream_);
    linear(ws.attn_bf.as<bf16>(), m, L.mo, out);
}

bool CudaBackend::expanded_mla(size_t m) const {
    const ModelConfig& c = config_;
    return mla_prefill_expanded_ &&
           mla_prefill_supported(m, c.num_attention_heads, c.qk_nope_head_dim, c.qk_rope_head_dim,
                                 c.v_head_dim, c.kv_lora_rank);
}

// The cache's latents of keys [0, position + m) are decompressed through kv_b one chunk at a
// time (gathered out of the cache rows, a GEMM, bf16), and each chunk attended in turn.
void CudaBackend::mla_prefill(const Layer& L, const Pass& pass, const bf16* cache) const {
    const ModelConfig& c = config_;
    Workspace& ws = *workspace_;
    const size_t Hm = c.num_attention_heads, m = pass.m, rank = c.kv_lora_rank;
    const size_t width = c.mla_cache_width();
    const MlaPrefillBuffers b = mla_prefill_buffers(ws.mla.as<void>(), m, Hm, c.qk_nope_head_dim,
                                                    c.qk_rope_head_dim, c.v_head_dim, rank);
    const uint64_t keys_total = pass.position + m;
    for (uint64_t k0 = 0; k0 < keys_total; k0 += kMlaPrefillChunkKeys) {
        const size_t keys =
            static_cast<size_t>(std::min<uint64_t>(kMlaPrefillChunkKeys, keys_total - k0));
        profile_.section("mla kv decompress", stream_);
        check(cudaMemcpy2DAsync(b.latent, rank * sizeof(bf16), cache + k0 * width,
                                width * sizeof(bf16), rank * sizeof(bf16), keys,
                                cudaMemcpyDeviceToDevice, stream_),
              "gather latents");
        linear(b.latent, keys, L.kv_b, b.kv_f32);
        cast_to_bf16(b.kv_f32, keys * L.kv_b.rows, b.kv, stream_);
        profile_.section("mla attention", stream_);
        mla_prefill_chunk(ws.mq.as<float>(), m, pass.position, cache, b.kv, k0, keys, k0 == 0,
                          k0 + keys == keys_total, Hm, c.qk_nope_head_dim, c.qk_rope_head_dim,
                          c.v_head_dim, rank, b.state, ws.attn.as<float>(), stream_, b.vt);
    }
}

// Routing on the device; the shared expert, then the chosen experts: GEMVs that read
// each chosen expert once for a few tokens, a grouped GEMM for prefill. No host sync.
void CudaBackend::moe(const Layer& L, const bf16* xn, size_t m, Workspace& ws, float* out) const {
    const ModelConfig& c = config_;
    const size_t E = c.num_experts, k = c.num_experts_per_token, h = c.hidden_size;
    const size_t mi = c.moe_intermediate_size;
    const size_t groups = c.use_grouped_topk ? c.num_expert_group : 1;
    const size_t kept_groups = c.use_grouped_topk ? c.topk_group : 1;
    profile_.section("moe router", stream_);
    if (moe_route_decode_supported(m, h)) {  // decode: GEMV and top-k in one launch
        moe_route_decode(xn, m, h, L.router.bf(), L.router_bias.f32(), E, k, c.moe_renormalize,
                         c.routed_scaling_factor, groups, kept_groups, ws.router.as<float>(),
                         ws.route_done.as<unsigned>(), ws.chosen.as<int32_t>(),
                         ws.weights.as<float>(), stream_);
    } else {
        linear(xn, m, L.router, ws.router.as<float>());
        moe_route(ws.router.as<float>(), L.router_bias.f32(), m, E, k, c.moe_renormalize,
                  c.routed_scaling_factor, groups, kept_groups, ws.chosen.as<int32_t>(),
                  ws.weights.as<float>(), stream_);
    }
    if (shard_)  // the experts other shards own add nothing here
        keep_owned_experts(ws.chosen.as<int32_t>(), m * k, shard_->experts.first,
                           shard_->experts.second, stream_);
    if (m <= kDecodeTokens) {
        // The shared expert joins the chosen ones' GEMVs when it has their shape.
        profile_.section("moe experts (GEMVs)", stream_);
        const bool fuse_shared = fuses_shared(L);
        DecodeSharedExpert shared;
        if (fuse_shared)
            shared = {L.shared.gate.matrix(), L.shared.up.matrix(), L.shared.down.matrix()};
        if (L.has_shared && !fuse_shared) mlp(L.shared, xn, m, ws, out);
        moe_experts_gemv(xn, m, h, mi, k, ws.chosen.as<int32_t>(), ws.weights.as<float>(),
                         L.expert_weights, shared, L.has_shared && !fuse_shared,
                         ws.e_act.as<float>(), out, stream_);
        return;
    }
    profile_.section("moe shared expert", stream_);
    if (L.has_shared)
        mlp(L.shared, xn, m, ws, out);
    else
        check(cudaMemsetAsync(out, 0, m * h * sizeof(float), stream_), "zero");
    profile_.section("moe routed experts (grouped)", stream_);
    moe_experts_grouped(xn, m, h, mi, E, k, ws.chosen.as<int32_t>(), ws.weights.as<float>(),
                        L.expert_weights, ws.moe.as<void>(), out, stream_);
}

namespace {

int device_count() {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return count;
}

std::unique_ptr<Backend> create(const ModelConfig& config, const ModelLayout& layout,
                                const Checkpoint& checkpoint, const BackendOptions& options) {
    DeviceGuard guard(options.device_index);
    return std::make_unique<CudaBackend>(
        config, layout,
        [&](const TensorSpec& spec, Form form) {
            return upload_weight(*checkpoint.find(spec.name), form == Form::F32);
        },
        options.device_index);
}

std::unique_ptr<Backend> create_random(const ModelConfig& config, const ModelLayout& layout,
                                       uint64_t seed, const BackendOptions& options) {
    DeviceGuard guard(options.device_index);
    auto backend = std::make_unique<CudaBackend>(
        config, layout,
        [&](const TensorSpec& spec, Form form) {
            return random_weight(spec, seed, form == Form::F32);
        },
        options.device_index);
    check(cudaDeviceSynchronize(), "random weights");
    return backend;
}

}  // namespace

// A tensor of a quantized load (core/weight_store.h): in the stored quantized form where the
// kernel reading it takes that form and its shape (Form::Any, device_reads), else bf16 (or
// fp32) of exactly the values the CPU backend runs. Random weights are made and quantized on
// the device (the 48B model's would take the host many minutes), bit-identical to the host's.
Weight store_weight(const WeightStore& store, const TensorSpec& spec, Form form) {
    const size_t n = static_cast<size_t>(spec.numel());
    const size_t rows = spec.shape.empty() ? 1 : static_cast<size_t>(spec.shape[0]);
    const size_t cols = rows ? n / rows : 0;
    const WeightFormat format = store.format(spec);
    const bool as_stored = form == Form::Any && format != WeightFormat::Plain &&
                           spec.shape.size() == 2 && device_reads(format, cols);
    if (const auto seed = store.random_seed()) {
        if (format == WeightFormat::Plain || form == Form::F32)
            return random_weight(spec, *seed, form == Form::F32);
        const Weight values = random_values_f32(spec, *seed);
        const Weight q = quantize_device_values(values.f32(), rows, cols, format);
        return as_stored ? q : to_bf16(q);
    }
    if (as_stored) return upload_quantized(store.quantized(spec));
    std::vector<float> values(n);
    store.dequantized(spec, values.data());
    return upload_values(values, rows, cols, form == Form::F32);
}

namespace {

std::unique_ptr<Backend> create_from_store(const ModelConfig& config, const ModelLayout& layout,
                                           const WeightStore& store,
                                           const BackendOptions& options) {
    DeviceGuard guard(options.device_index);
    auto backend = std::make_unique<CudaBackend>(
        config, layout,
        [&](const TensorSpec& spec, Form form) { return store_weight(store, spec, form); },
        options.device_index);
    check(cudaDeviceSynchronize(), "weights");
    return backend;
}

}  // namespace

const BackendProvider& backend_provider() {
    static const BackendProvider provider{&device_count,      &create,       &create_random,
                                          &create_from_store, &create_shard, &create_shard_group};
    return provider;
}

}  // namespace kl::cuda
