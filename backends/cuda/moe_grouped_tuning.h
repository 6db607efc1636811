// The grouped MoE's tuning hook, for its test and benchmark only (the backend calls
// moe_experts_grouped in ops.h): tile_m 0 = chosen by shape, 32/64/128 forced, -1 = the
// simple path; phases is a bit mask of what runs: 1 grouping, 2 gate/up, 4 down, 8 combine.
#pragma once

#include "ops.h"

namespace kl::cuda {

void moe_experts_grouped_tuned(const bf16* x, size_t n, size_t hidden, size_t inter, size_t experts,
                               size_t top_k, const int32_t* chosen, const float* weights,
                               const ExpertWeights& expert_weights, void* workspace, float* out,
                               cudaStream_t stream, int tile_m, unsigned phases);

}  // namespace kl::cuda
