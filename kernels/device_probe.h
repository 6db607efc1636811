// Host-side entry points of the CUDA placeholder (no CUDA types: callers need no CUDA headers).
#pragma once

namespace kl::cuda {

int device_count();  // 0 when there is no driver or no device
bool smoke_test();   // launches one kernel and reads it back

}  // namespace kl::cuda
