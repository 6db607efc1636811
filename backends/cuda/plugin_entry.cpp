// The CUDA plugin's entry point (backends/cuda_plugin/plugin_abi.h): the only symbol
// libkimi_linear_cuda.so exports.
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda_plugin/plugin_abi.h"
#include "core/log.h"

namespace {

void forward_to_host(int level, const char* message, void* host_log) {
    reinterpret_cast<kl::HostLogFunction>(host_log)(level, message);
}

void set_host_log(kl::HostLogFunction log) {
    kl::set_log_sink(&forward_to_host, reinterpret_cast<void*>(log));
}

}  // namespace

extern "C" __attribute__((visibility("default"))) const kl::CudaPluginV1* kl_cuda_plugin_v1() {
    static const kl::CudaPluginV1 plugin{sizeof(kl::CudaPluginV1), KL_BUILD_ID,
                                         &kl::cuda::backend_provider(), &set_host_log};
    return &plugin;
}
