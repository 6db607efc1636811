// The CPU backend: fp32 weights and state in host memory, the whole forward pass built from
// the ops in ops.h. It is the executable specification the CUDA backend is tested against.
#pragma once

#include <memory>

#include "core/backend_registry.h"
#include "core/shard_plan.h"
#include "core/shard_rendezvous.h"

namespace kl::cpu {

// The CPU backend of shard `shard` of `plan`: its parts of the weights `whole` gives, its
// heads, experts and vocabulary; run in lockstep with the other shards, whose `links` meet.
std::unique_ptr<Backend> create_shard(const ModelConfig& config, const ModelLayout& layout,
                                      const ShardPlan& plan, int shard, const TensorSource& whole,
                                      ShardLinks links, int n_threads);

// For backends/registry.cpp: the host always has the one device.
const BackendProvider& backend_provider();

}  // namespace kl::cpu
