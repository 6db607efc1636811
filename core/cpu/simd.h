// Function multiversioning for the CPU hot loops: on x86-64 with GCC, a function marked
// KL_MULTIVERSION gets an extra clone compiled for AVX2 + FMA (Haswell and later, incl. all
// AMD Zen), chosen once at load through an ifunc; the default clone stays portable.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define KL_MULTIVERSION __attribute__((target_clones("arch=haswell", "default")))
#else
#define KL_MULTIVERSION
#endif
