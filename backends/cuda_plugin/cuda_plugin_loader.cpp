#include "backends/cuda_plugin/cuda_plugin_loader.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstring>

#include "backends/cuda_plugin/plugin_abi.h"
#include "core/log.h"

namespace kl {

namespace {

void host_log(int level, const char* message) {
    log(static_cast<LogLevel>(level), message);
}

// The plugin's path: beside the file this function was loaded from (the shared library, or
// the program that linked the core statically). A package that carries the library carries
// the plugin beside it (wheel, jar, nupkg, install prefix), so no search path is involved.
std::string plugin_path() {
    Dl_info info{};
    std::string dir = ".";
    if (dladdr(reinterpret_cast<void*>(&plugin_path), &info) != 0 && info.dli_fname) {
        const std::string self = info.dli_fname;
        const size_t slash = self.rfind('/');
        if (slash != std::string::npos) dir = self.substr(0, slash);
    }
    return dir + "/" KL_CUDA_PLUGIN_FILE;
}

std::string loader_error() {
    const char* why = dlerror();
    return why ? why : "unknown dlopen error";
}

// Is there a GPU at all? Asked of the driver directly (libcuda.so.1, which every CUDA
// program needs), before the plugin and its cuBLASLt are loaded: a machine with the CUDA
// toolkit but no GPU (a build machine, CI) then pays neither their 200 MB nor their start-up
// time. Empty when there is a device; else why not.
std::string why_no_gpu() {
    void* driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!driver) return "no NVIDIA driver (" + loader_error() + ")";
    // Kept loaded: the CUDA runtime in the plugin loads it again.
    using Init = int (*)(unsigned);
    using Count = int (*)(int*);
    auto init = reinterpret_cast<Init>(dlsym(driver, "cuInit"));
    auto count = reinterpret_cast<Count>(dlsym(driver, "cuDeviceGetCount"));
    if (!init || !count) return "libcuda.so.1 has no cuInit/cuDeviceGetCount";
    if (const int status = init(0); status != 0)
        return "the NVIDIA driver sees no usable GPU (cuInit: CUDA driver error " +
               std::to_string(status) + ")";
    int devices = 0;
    if (count(&devices) != 0 || devices <= 0) return "the NVIDIA driver reports no GPU";
    return {};
}

}  // namespace

GpuBackendLookup load_cuda_plugin() {
    GpuBackendLookup lookup;
    lookup.built = true;
    if (std::string why = why_no_gpu(); !why.empty()) {
        lookup.why_not = why;
        return lookup;
    }
    const std::string path = plugin_path();
    struct stat st{};
    if (stat(path.c_str(), &st) != 0) {
        lookup.why_not = "its plugin " + path + " is missing (install it beside the library)";
        return lookup;
    }
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        // Usually a library the plugin needs: "libcublasLt.so.13: cannot open shared object
        // file" when the CUDA runtime is not installed.
        lookup.why_not = "its plugin " + path + " could not be loaded: " + loader_error();
        return lookup;
    }
    using Entry = const CudaPluginV1* (*)();
    auto entry = reinterpret_cast<Entry>(dlsym(handle, KL_CUDA_PLUGIN_ENTRY));
    const CudaPluginV1* plugin = entry ? entry() : nullptr;
    if (!plugin) {
        lookup.why_not = path + " is not a kimi-linear CUDA plugin (no " KL_CUDA_PLUGIN_ENTRY ")";
    } else if (plugin->struct_size != sizeof(CudaPluginV1) || !plugin->build_id ||
               std::strcmp(plugin->build_id, KL_BUILD_ID) != 0) {
        // The provider passes C++ objects both ways: only the plugin of this very build fits.
        lookup.why_not = path + " is from another build (id " +
                         (plugin->build_id ? plugin->build_id : "?") + ", this library's " +
                         KL_BUILD_ID + "): install the library and its plugin together";
    } else {
        plugin->set_host_log(&host_log);
        lookup.provider = plugin->provider;
        return lookup;
    }
    dlclose(handle);
    return lookup;
}

}  // namespace kl
