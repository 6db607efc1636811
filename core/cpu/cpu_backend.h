// The CPU backend: fp32 weights and state in host memory, the whole forward pass built from
// the ops in ops.h. It is the executable specification the CUDA backend is tested against.
#pragma once

#include <memory>

#include "../backend.h"
#include "../config.h"
#include "../thread_pool.h"
#include "../weights.h"

namespace kl {

std::unique_ptr<Backend> make_cpu_backend(const ModelConfig& config, ModelWeights weights,
                                          int n_threads);

}  // namespace kl
