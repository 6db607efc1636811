// Which weights a decode step asks L2 for ahead of their kernel (l2_ahead.cuh): the norm
// before a block prefetches the block's first weights, the KDA step and MLA attention's
// value projection their layer's o_proj.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "cuda_model.h"
#include "l2_ahead.cuh"

namespace kl::cuda {

namespace {

// At most this much per prefetching kernel: L2 holds 50 MB on an H100 or H200, and what the
// next kernels stream through it pushes out what came first.
constexpr size_t kAheadBytes = 24u << 20;

L2Ahead ranges_of(std::initializer_list<const Weight*> weights) {
    L2Ahead ahead;
    size_t left = kAheadBytes;
    int r = 0;
    for (const Weight* w : weights) {
        if (r == L2Ahead::kRanges) break;
        if (!w->data || reinterpret_cast<uintptr_t>(w->data) % 16 != 0) continue;
        const size_t bytes = std::min(left, w->code_bytes()) / 16 * 16;
        if (bytes == 0) continue;
        ahead.data[r] = w->data, ahead.bytes[r] = bytes, ++r;
        left -= bytes;
    }
    return ahead;
}

}  // namespace

bool decode_l2_ahead() {
    static const bool on = [] {
        const char* v = std::getenv("KL_CUDA_DECODE_L2AHEAD");
        return v && std::strcmp(v, "1") == 0;
    }();
    return on;
}

L2Ahead attention_ahead(const Layer& L) {
    if (L.is_kda) return ranges_of({&L.x_proj, &L.x_low});
    if (L.mq_kv.rows) return ranges_of({&L.mq_kv});
    return ranges_of({&L.mq, &L.kv_a});
}

L2Ahead ffn_ahead(const Layer& L) {
    if (!L.is_moe) return ranges_of({&L.mlp.gate, &L.mlp.up, &L.mlp.down});
    if (!L.has_shared) return {};
    return ranges_of({&L.shared.gate, &L.shared.up, &L.shared.down});
}

L2Ahead o_proj_ahead(const Layer& L) {
    return ranges_of({L.is_kda ? &L.o : &L.mo});
}

}  // namespace kl::cuda
