#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>

#include "chained_launch.cuh"

namespace kl::cuda {

namespace {
thread_local bool t_dropped = false;
}  // namespace

void drop_chained_launches(bool drop) {
    t_dropped = drop;
}
bool chained_launches_dropped() {
    return t_dropped;
}

bool chained_launches() {
    static const bool allowed = [] {
        const char* flag = std::getenv("KL_CUDA_PDL");
        return !(flag && std::strcmp(flag, "0") == 0);
    }();
    return allowed && compute_capability() >= 90;
}

void prefer_carveout(const void* kernel) {
    static const int percent = [] {
        const char* v = std::getenv("KL_CUDA_CARVEOUT");
        return v ? std::atoi(v) : -1;
    }();
    if (percent < 0 || percent > 100) return;
    static std::mutex mutex;
    static std::map<std::pair<int, const void*>, bool> done;
    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    std::lock_guard<std::mutex> lock(mutex);
    bool& set = done[{device, kernel}];
    if (set) return;
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, percent),
          "cudaFuncSetAttribute(carveout)");
    set = true;
}

}  // namespace kl::cuda
