// Portable SIMD for the CPU hot loops.
//  - v8f / v8i: eight fp32 / int32 lanes as GCC/Clang vector extensions (one AVX register,
//    two SSE or NEON ones); they stay inside translation units, so -Wpsabi is off.
//  - KL_MULTIVERSION: on x86-64 with GCC, the marked function gets an extra clone compiled
//    for AVX2 + FMA (x86-64-v3: Haswell and later, all AMD Zen), chosen once at load through
//    an ifunc; the default clone stays portable. Not "arch=haswell": GCC's resolver tests
//    that as the CPU model (Intel Haswell only), so every other CPU got the SSE2 clone. GCC
//    before 12 cannot clone for x86-64-v3; there the clone is AVX2 without FMA.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#if __GNUC__ >= 12
#define KL_MULTIVERSION __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define KL_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#endif
#else
#define KL_MULTIVERSION
#endif

namespace kl::cpu {

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

inline v8f load8(const float* p) {  // unaligned
    v8f v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}

inline float sum8(v8f v) {
    return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}

}  // namespace kl::cpu
