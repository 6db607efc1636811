// The CUDA backend's batched decode (docs/design/batching.md): one pass that advances n
// sessions by one token each, reading the weights once for all of them, and device sampling
// for n sessions with one copy back. The per-session parts (KDA state, MLA cache, history,
// logits) are reached through device tables of per-row pointers (BatchTables), uploaded once
// per group of up to kMaxBatch rows; the pass itself is one CUDA graph replay per group.
#include <algorithm>
#include <vector>

#include "cuda_model.h"

namespace kl::cuda {

// All-or-nothing like forward(): every row writes its state's other buffers (and its cache
// row at its position, which no state reads yet); only after the stream finished without
// error does every state flip to them.
void CudaBackend::forward_batch(BackendState* const* states, const uint64_t* positions,
                                const int32_t* tokens, size_t n) const {
    if (n == 0) return;
    if (!decode_fused())
        fail(Status::Unsupported,
             "forward_batch: the CUDA backend batches only with the fused KDA decode step "
             "(kda_head_dim 16, 32, 64 or 128)");
    std::vector<CudaState*> st(n);
    for (size_t i = 0; i < n; ++i) st[i] = static_cast<CudaState*>(states[i]);
    on_stream(
        [&](cudaStream_t) {
            for (size_t start = 0; start < n; start += kMaxBatch)
                run_batch_group(st.data() + start, positions + start, tokens + start,
                                std::min(kMaxBatch, n - start));
            profile_.section(nullptr, stream_);
        },
        "forward_batch");
    for (size_t i = 0; i < n; ++i) {
        st[i]->current_ = 1 - st[i]->current_;
        if (st[i]->history_synced_ >= positions[i]) st[i]->history_synced_ = positions[i] + 1;
    }
}

// One group (n <= kMaxBatch rows): the tables of its rows, uploaded in one copy, then the
// pass of n rows, a CUDA graph per n (captured at its second use, batch_graph: the tables sit
// at fixed places in the workspace, so one graph serves every group of n rows), eager while
// KL_CUDA_PROFILE=1 times the sections.
void CudaBackend::run_batch_group(CudaState* const* states, const uint64_t* positions,
                                  const int32_t* tokens, size_t n) const {
    const BatchTables t(config_.n_mla_layers(), n);
    std::vector<uint64_t> host((t.bytes + sizeof(uint64_t) - 1) / sizeof(uint64_t), 0);
    char* const h = reinterpret_cast<char*>(host.data());
    auto table = [&](size_t offset) { return reinterpret_cast<const void**>(h + offset); };
    auto* tok = reinterpret_cast<int32_t*>(h + t.tokens);
    auto* pos = reinterpret_cast<int32_t*>(h + t.positions);
    for (size_t i = 0; i < n; ++i) {
        const CudaState& s = *states[i];
        const int in = s.current_, out = 1 - in;
        table(t.rec_in)[i] = s.recurrent(in);
        table(t.rec_out)[i] = s.recurrent(out);
        table(t.logits)[i] = s.logits(out);
        table(t.history)[i] = s.history_.as<int32_t>();
        for (size_t l = 0; l < layers_.size(); ++l)
            if (!layers_[l].is_kda)
                table(t.caches)[layers_[l].mla_slot * n + i] = s.cache_[l].as<bf16>();
        tok[i] = tokens[i];
        pos[i] = static_cast<int32_t>(positions[i]);  // < capacity < 2^31 (create_state)
    }
    check(cudaMemcpyAsync(workspace_->batch.as<void>(), host.data(), t.bytes,
                          cudaMemcpyHostToDevice, stream_),
          "upload batch tables");
    // One config: every state's KDA layers sit at the same offsets.
    const std::vector<size_t>& rec_offset = states[0]->recurrent_offset_;
    const cudaGraphExec_t graph = uses_graphs() ? batch_graph(n, rec_offset) : nullptr;
    if (!graph) {
        enqueue_batch(n, rec_offset);
        return;
    }
    check(cudaGraphLaunch(graph, stream_), "batch graph");
    if (profile_.enabled()) {  // KL_CUDA_PROFILE=graph: the replay's section times
        check(cudaStreamSynchronize(stream_), "profiled batch graph");
        profile_.replayed(graph);
    }
}

// The graph of n rows, captured at the second pass of n rows: the first runs eagerly. Threads
// batched by the library (core/decode_batcher.h) make passes of whatever size their steps
// meet in, and a size that comes once would cost a capture and an instantiation (a graph of
// every layer's launches) to be replayed once; the eager pass launches the same kernels.
// nullptr: run this pass eagerly.
cudaGraphExec_t CudaBackend::batch_graph(size_t n, const std::vector<size_t>& rec_offset) const {
    if (batch_graphs_generation_ != graph_generation()) {  // a shard's, after an aborted step
        destroy_graphs(batch_graphs_);
        batch_graphs_generation_ = graph_generation();
    }
    if (batch_graphs_.empty()) {
        batch_graphs_.assign(kMaxBatch + 1, nullptr);
        batch_passes_.assign(kMaxBatch + 1, 0);
    }
    if (!batch_graphs_[n] && batch_passes_[n]++ == 0) return nullptr;
    if (!batch_graphs_[n]) batch_graphs_[n] = capture([&] { enqueue_batch(n, rec_offset); });
    return batch_graphs_[n];
}

// The pass of n rows from the tables in the workspace: the tokens into the histories, the
// layers, lm_head in chunks of kBatchLogitsRows rows, each row's logits into its state.
// Nothing here depends on the rows' values on the host, so it can be captured.
void CudaBackend::enqueue_batch(size_t n, const std::vector<size_t>& rec_offset) const {
    const ModelConfig& c = config_;
    Workspace& ws = *workspace_;
    const BatchTables t(c.n_mla_layers(), n);
    char* const d = ws.batch.as<char>();
    const auto* d_tokens = reinterpret_cast<const int32_t*>(d + t.tokens);
    const auto* d_positions = reinterpret_cast<const int32_t*>(d + t.positions);
    scatter_tokens(d_tokens, d_positions, reinterpret_cast<int32_t* const*>(d + t.history), n,
                   stream_);

    Pass pass;
    pass.m = n, pass.ids = d_tokens, pass.ids_at = reinterpret_cast<const int32_t*>(d + t.zero);
    pass.rec_offset = &rec_offset;
    pass.batch_rec_in = reinterpret_cast<const float* const*>(d + t.rec_in);
    pass.batch_rec_out = reinterpret_cast<float* const*>(d + t.rec_out);
    pass.batch_caches = reinterpret_cast<bf16* const*>(d + t.caches);
    pass.batch_positions = d_positions;
    const std::atomic<bool> never(false);
    run_layers(pass, never);

    profile_.section("lm_head", stream_);
    const size_t hidden = c.hidden_size, vocab = c.vocab_size;
    float* const* logits_out = reinterpret_cast<float* const*>(d + t.logits);
    for (size_t r = 0; r < n; r += kBatchLogitsRows) {
        const size_t rows = std::min(kBatchLogitsRows, n - r);
        head_rows(ws.xn.as<bf16>() + r * hidden, rows, ws.logits.as<float>());
        scatter_rows(ws.logits.as<float>(), rows, vocab, logits_out + r, stream_);
    }
}

// sample() per state, all enqueued before one wait: n ids cross to the host in one copy per
// kMaxBatch rows.
void CudaBackend::sample_batch(const BackendState* const* states, const SamplingParams* params,
                               const int32_t* const* histories, const size_t* history_lens,
                               const uint64_t* positions, size_t n, int32_t* out) const {
    if (n == 0) return;
    Workspace& ws = *workspace_;  // used under the lock on_stream takes
    auto penalty = [&](size_t i) {
        return params[i].repetition_penalty != 1.0f && history_lens[i] > 0;
    };
    on_stream(
        [&](cudaStream_t) {
            for (size_t start = 0; start < n; start += kMaxBatch) {
                const size_t rows = std::min(kMaxBatch, n - start);
                for (size_t i = start; i < start + rows; ++i) {
                    const auto& st = static_cast<const CudaState&>(*states[i]);
                    if (penalty(i)) upload_history(st, histories[i], history_lens[i]);
                    sample_token_on_device(
                        st.logits(st.current_), config_.vocab_size, params[i],
                        st.history_.as<int32_t>(), penalty(i) ? history_lens[i] : 0, positions[i],
                        ws.sampling.as<void>(), ws.sampled.as<int32_t>() + (i - start), stream_);
                }
                check(cudaMemcpyAsync(out + start, ws.sampled.as<void>(), rows * sizeof(int32_t),
                                      cudaMemcpyDeviceToHost, stream_),
                      "copy tokens");
            }
        },
        "sample");
    for (size_t i = 0; i < n; ++i)
        if (penalty(i)) static_cast<const CudaState&>(*states[i]).history_synced_ = history_lens[i];
}

}  // namespace kl::cuda
