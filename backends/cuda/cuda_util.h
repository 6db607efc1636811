// CUDA error handling and device memory ownership for the backend. A CUDA error becomes
// kl::Error(Device) with CUDA's message; a failed allocation kl::Error(OutOfMemory).
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>

#include "core/error.h"

namespace kl::cuda {

inline void check(cudaError_t status, const char* what) {
    if (status != cudaSuccess)
        fail(Status::Device,
             std::string("CUDA error in ") + what + ": " + cudaGetErrorString(status));
}

// Checks the last launch (configuration errors surface here; faults at the next sync).
inline void check_launch(const char* kernel) {
    check(cudaGetLastError(), kernel);
}

// An attribute of the current device, asked once per device: the launch paths that choose a
// kernel or a grid by it call this on every launch.
template <cudaDeviceAttr A>
int device_attribute() {
    constexpr int kDevices = 64;
    static std::atomic<int> known[kDevices];  // value + 1; 0: not asked yet
    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    if (device < kDevices)
        if (const int seen = known[device].load(std::memory_order_relaxed)) return seen - 1;
    int value = 0;
    check(cudaDeviceGetAttribute(&value, A, device), "cudaDeviceGetAttribute");
    if (device < kDevices) known[device].store(value + 1, std::memory_order_relaxed);
    return value;
}

// The current device's compute capability as 10 * major + minor (90 for Hopper).
inline int compute_capability() {
    return 10 * device_attribute<cudaDevAttrComputeCapabilityMajor>() +
           device_attribute<cudaDevAttrComputeCapabilityMinor>();
}

inline int multiprocessors() {
    return device_attribute<cudaDevAttrMultiProcessorCount>();
}

// An on/off switch read from the environment: unset, `by_default`; "0" off, "1" on (any
// other value leaves the default). Callers read it once (a static).
inline bool env_switch(const char* name, bool by_default) {
    const char* v = std::getenv(name);
    if (!v) return by_default;
    const std::string value = v;
    return value == "1" ? true : value == "0" ? false : by_default;
}

// Whether a switch's value turns on the part called `name`: "1" every part, else a
// comma-separated list of part names (KL_CUDA_DECODE_NARROW).
inline bool switch_has(const std::string& value, const char* name) {
    return value == "1" ||
           ("," + value + ",").find("," + std::string(name) + ",") != std::string::npos;
}

// Sets `attribute` of `kernel` on the current device to `value` unless a value at least as
// large is set already. Function attributes belong to each device's context, so they are
// kept per (device, kernel, attribute); later calls are a lookup.
inline void raise_kernel_attribute(const void* kernel, cudaFuncAttribute attribute, int value,
                                   const char* what) {
    static std::mutex mutex;
    static std::map<std::tuple<int, const void*, int>, int> set;
    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    std::lock_guard<std::mutex> lock(mutex);
    const auto key = std::make_tuple(device, kernel, static_cast<int>(attribute));
    const auto have = set.find(key);
    if (have != set.end() && have->second >= value) return;
    check(cudaFuncSetAttribute(kernel, attribute, value), what);
    set[key] = value;
}

// Lets `kernel` launch on the current device with `bytes` of dynamic shared memory (above the
// default 48 KB the attribute is required), at the largest size asked so far.
inline void allow_dynamic_shared(const void* kernel, size_t bytes, const char* what) {
    raise_kernel_attribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(bytes), what);
}

// Destroys each instantiated graph of `graphs` (an array or container of cudaGraphExec_t),
// leaving null in its place.
template <typename Graphs>
void destroy_graphs(Graphs& graphs) {
    for (cudaGraphExec_t& graph : graphs) {
        if (graph) cudaGraphExecDestroy(graph);
        graph = nullptr;
    }
}

// One device allocation, freed on destruction.
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
        if (bytes == 0) return;
        const cudaError_t status = cudaMalloc(&data_, bytes);
        if (status == cudaErrorMemoryAllocation) {
            cudaGetLastError();  // clear the sticky-free error so the context stays usable
            fail(Status::OutOfMemory, "cudaMalloc of " + std::to_string(bytes) + " bytes failed");
        }
        check(status, "cudaMalloc");
    }
    ~DeviceBuffer() {
        if (data_) cudaFree(data_);
    }
    DeviceBuffer(DeviceBuffer&& other) noexcept
        : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
    DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
        std::swap(data_, other.data_);
        std::swap(bytes_, other.bytes_);
        return *this;
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;

    template <typename T>
    T* as() const {
        return static_cast<T*>(data_);
    }
    size_t bytes() const { return bytes_; }

private:
    void* data_ = nullptr;
    size_t bytes_ = 0;
};

// Makes `device` current for the lifetime of the guard, restoring the previous one.
class DeviceGuard {
public:
    explicit DeviceGuard(int device) {
        check(cudaGetDevice(&previous_), "cudaGetDevice");
        if (previous_ != device) check(cudaSetDevice(device), "cudaSetDevice");
    }
    ~DeviceGuard() { cudaSetDevice(previous_); }

private:
    int previous_ = 0;
};

}  // namespace kl::cuda
