// NCCL opened at run time and the communicators of a split model (nccl_group.h).
#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>

#include "core/error.h"
#include "nccl_group.h"

namespace kl::cuda {
namespace {

// The part of NCCL's C ABI used here (stable across NCCL 2.x; values as nccl.h 2.32.6 has
// them): results are ncclResult_t (0 = ncclSuccess), communicators opaque pointers.
constexpr int kNcclSuccess = 0;
constexpr int kNcclFloat32 = 7;  // ncclDataType_t
constexpr int kNcclSum = 0;      // ncclRedOp_t

struct NcclApi {
    void* handle = nullptr;
    int (*get_version)(int* version) = nullptr;
    int (*comm_init_all)(void** comms, int count, const int* devices) = nullptr;
    int (*comm_destroy)(void* comm) = nullptr;
    int (*comm_abort)(void* comm) = nullptr;
    int (*all_reduce)(const void* send, void* recv, size_t count, int type, int op, void* comm,
                      cudaStream_t stream) = nullptr;
    int (*all_gather)(const void* send, void* recv, size_t count, int type, void* comm,
                      cudaStream_t stream) = nullptr;
    const char* (*error_string)(int result) = nullptr;
};

const char* kWhereToGetIt =
    "CUDA shards (a model on several GPUs) need NCCL: install NVIDIA's wheel (pip install "
    "nvidia-nccl-cu13) and set KL_NCCL_LIBRARY to its nvidia/nccl/lib/libnccl.so.2, or put "
    "libnccl.so.2 on the library path";

template <typename F>
void resolve(const NcclApi& api, const std::string& path, const char* name, F& into) {
    into = reinterpret_cast<F>(dlsym(api.handle, name));
    if (!into) {
        dlclose(api.handle);
        fail(Status::Unsupported,
             path + " is not a usable NCCL 2 library (it lacks " + name + "). " + kWhereToGetIt);
    }
}

NcclApi load(const std::string& path) {
    NcclApi api;
    api.handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!api.handle) {
        const char* why = dlerror();
        fail(Status::Unsupported,
             "cannot open " + path + " (" + (why ? why : "unknown error") + "). " + kWhereToGetIt);
    }
    resolve(api, path, "ncclGetVersion", api.get_version);
    resolve(api, path, "ncclCommInitAll", api.comm_init_all);
    resolve(api, path, "ncclCommDestroy", api.comm_destroy);
    resolve(api, path, "ncclCommAbort", api.comm_abort);
    resolve(api, path, "ncclAllReduce", api.all_reduce);
    resolve(api, path, "ncclAllGather", api.all_gather);
    resolve(api, path, "ncclGetErrorString", api.error_string);
    return api;
}

// The process's NCCL, opened on first use (a failed open is tried again next time: a
// static whose initialisation throws is not initialised). Never closed: communicators may
// live until exit.
const NcclApi& nccl() {
    static const NcclApi api = load(nccl_library_path());
    return api;
}

void check_nccl(int result, const char* what) {
    if (result != kNcclSuccess)
        fail(Status::Device,
             std::string("NCCL error in ") + what + ": " + nccl().error_string(result));
}

}  // namespace

std::string nccl_library_path() {
    const char* path = std::getenv("KL_NCCL_LIBRARY");
    return path && *path ? path : "libnccl.so.2";
}

void open_nccl(const std::string& path) {
    const NcclApi api = load(path);
    dlclose(api.handle);
}

NcclGroup::NcclGroup(std::vector<int> devices) : devices_(std::move(devices)) {
    if (devices_.empty()) fail(Status::InvalidArgument, "an NCCL group needs a device");
    std::vector<int> sorted = devices_;
    std::sort(sorted.begin(), sorted.end());
    if (sorted.front() < 0 || std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
        fail(Status::InvalidArgument,
             "an NCCL group's devices must be distinct CUDA ordinals (NCCL refuses two ranks "
             "on one GPU)");
    create();
}

NcclGroup::~NcclGroup() {
    destroy(false);
}

void NcclGroup::create() {
    const NcclApi& api = nccl();
    // Read by NCCL when it creates the communicators; set unconditionally (docs/design/
    // sharding.md): NVLink multicast can take the host's shared GPUs down.
    setenv("NCCL_NVLS_ENABLE", "0", 1);
    std::vector<void*> comms(devices_.size(), nullptr);
    check_nccl(api.comm_init_all(comms.data(), size(), devices_.data()), "ncclCommInitAll");
    comms_ = std::move(comms);  // none on failure: NCCL freed what it had made
}

void NcclGroup::destroy(bool abort) {
    if (comms_.empty()) return;
    const NcclApi& api = nccl();
    for (void*& comm : comms_) {
        if (comm) (abort ? api.comm_abort : api.comm_destroy)(comm);
        comm = nullptr;
    }
    comms_.clear();
}

void NcclGroup::check_live(const char* what) const {
    if (aborted_.load(std::memory_order_acquire))
        fail(Status::Cancelled,
             std::string(what) + ": the split model's step was abandoned by another shard");
}

void NcclGroup::sum(int rank, float* values, size_t count, cudaStream_t stream) const {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    check_live("sum over the shards");
    check_nccl(nccl().all_reduce(values, values, count, kNcclFloat32, kNcclSum,
                                 comms_[static_cast<size_t>(rank)], stream),
               "ncclAllReduce");
}

void NcclGroup::gather(int rank, const float* part, size_t count, float* whole,
                       cudaStream_t stream) const {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    check_live("gather over the shards");
    check_nccl(nccl().all_gather(part, whole, count, kNcclFloat32,
                                 comms_[static_cast<size_t>(rank)], stream),
               "ncclAllGather");
}

void NcclGroup::abort() {
    std::unique_lock<std::shared_mutex> lock(mutex_);
    if (aborted_.exchange(true, std::memory_order_acq_rel)) return;
    destroy(true);
}

void NcclGroup::reset() {
    std::unique_lock<std::shared_mutex> lock(mutex_);
    if (!aborted_.load(std::memory_order_acquire)) return;
    create();
    aborted_.store(false, std::memory_order_release);
    generation_.fetch_add(1, std::memory_order_acq_rel);
}

}  // namespace kl::cuda
