// The NCCL communicators of a model split over several GPUs of one host
// (docs/design/sharding.md "CUDA shards"): one communicator per listed device, created in one
// process with ncclCommInitAll, and the two collectives where the shards meet: the sum of a
// block's partial output and the gather of the logits, each enqueued on the calling shard's
// stream (capturable in its CUDA graphs).
//
// NCCL is opened at run time (dlopen), only when a model names several GPUs: the CPU
// package and one-GPU models never need it, and the build needs no NCCL header (the few
// entry points used are declared in nccl_group.cu). Where it comes from: NVIDIA's wheel
// `nvidia-nccl-cu13` (site-packages/nvidia/nccl/lib/libnccl.so.2) or a system package;
// KL_NCCL_LIBRARY names the file, else the dynamic loader's search path finds libnccl.so.2.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <shared_mutex>
#include <string>
#include <vector>

namespace kl::cuda {

// Opens the NCCL library at `path` (a file name for the loader's search) and checks that it
// has every entry point used: Unsupported naming the wheel when it cannot, with dlopen's
// reason. Cached per process for the default path (nccl_library_path()).
void open_nccl(const std::string& path);
// KL_NCCL_LIBRARY when set, else "libnccl.so.2".
std::string nccl_library_path();

class NcclGroup {
public:
    // One communicator per device of `devices` (distinct CUDA ordinals, rank = index), with
    // NVLink multicast off (NCCL_NVLS_ENABLE=0: it can take a host's shared GPUs down).
    // Unsupported when NCCL cannot be opened, Device naming NCCL's error when it fails.
    explicit NcclGroup(std::vector<int> devices);
    ~NcclGroup();
    NcclGroup(const NcclGroup&) = delete;
    NcclGroup& operator=(const NcclGroup&) = delete;

    int size() const { return static_cast<int>(devices_.size()); }
    int device(int rank) const { return devices_[static_cast<size_t>(rank)]; }

    // values[0, count) (fp32, on rank's device) becomes the sum over the ranks, in place,
    // enqueued on `stream`. Every rank must call it, in the same order of collectives.
    void sum(int rank, float* values, size_t count, cudaStream_t stream) const;
    // whole[size() * count] = every rank's part[count], in rank order.
    void gather(int rank, const float* part, size_t count, float* whole, cudaStream_t stream) const;

    // A failed or cancelled step: every communicator's in-flight work is abandoned (a rank
    // blocked in a collective the others never reach returns) and the communicators are
    // unusable until reset(), which re-creates them once every rank has left the step.
    // A collective enqueued after abort() and before reset() fails with Cancelled.
    void abort();
    void reset();
    // Bumped by reset(): a CUDA graph captured with an older generation's communicators
    // must be captured again.
    uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

private:
    void create();
    void destroy(bool abort);
    void check_live(const char* what) const;

    std::vector<int> devices_;
    std::vector<void*> comms_;  // ncclComm_t
    // Collectives take it shared (their enqueue is brief), abort() and reset() exclusively:
    // no enqueue runs on a communicator being freed or re-created.
    mutable std::shared_mutex mutex_;
    std::atomic<bool> aborted_{false};
    std::atomic<uint64_t> generation_{0};
};

}  // namespace kl::cuda
