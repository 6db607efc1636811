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
    static const bool allowed = env_switch("KL_CUDA_PDL", true);
    return allowed && compute_capability() >= 90;
}

}  // namespace kl::cuda
