// What crosses between libkimi_linear.so and its CUDA plugin, libkimi_linear_cuda.so.<ABI>
// (docs/design/architecture.md "The CUDA backend is a plugin"). The plugin links its own copy
// of core/ and hands the core library a BackendProvider whose functions take and return
// core's C++ types; that is sound only between the two files of one build, so the plugin
// carries the build's id and the loader refuses any other.
#pragma once

#include <cstdint>

namespace kl {

struct BackendProvider;

// The plugin's own copy of core logs through this: the core library's log, so that
// kl_set_log_callback sees the plugin's messages too.
using HostLogFunction = void (*)(int level, const char* message);

struct CudaPluginV1 {
    uint32_t struct_size;                      // sizeof(CudaPluginV1) of the plugin's build
    const char* build_id;                      // KL_BUILD_ID of the plugin's build
    const BackendProvider* provider;           // the CUDA backend
    void (*set_host_log)(HostLogFunction log);  // called once, before the provider is used
};

}  // namespace kl

// The one symbol the plugin exports: extern "C" const kl::CudaPluginV1* kl_cuda_plugin_v1(void).
// The kl_ prefix keeps it within the project's rule for exported names.
#define KL_CUDA_PLUGIN_ENTRY "kl_cuda_plugin_v1"
