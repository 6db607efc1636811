// Hopper's warpgroup MMA (wgmma, sm_90a): the PTX wrappers and shared-memory layout that the
// tensor-core kernels move to from mma.sync (tensor_core.cuh), whose e4m3 rate on Hopper is no
// higher than bf16's while wgmma's is twice it (docs/design/kernels.md, "FP8 prefill").
//
// Operands come from shared memory through 64-bit matrix descriptors. Both are K-major (rows
// of K values: FP8 wgmma takes nothing else) in the 128-byte swizzle: a tile is stored as
// slabs of 128 bytes of K (64 bf16 or 128 e4m3) by its rows, row r of a slab at r * 128 with
// its 16-byte chunk c at chunk c ^ (r % 8), each slab 1024-byte aligned. Within a slab the
// k-step's descriptor is the slab's plus the step's byte offset (the hardware applies the
// swizzle to the address bits, which is why slabs are 1024-byte aligned).
//
// The accumulator of m64nNk*: warp w of the warpgroup holds rows 16w..16w+15, and register
// 4j + {0,1} / {2,3} is row 16w + g / 16w + g + 8 (g = lane / 4), columns 8j + 2(lane % 4)
// + {0,1}: mma.sync's 16x8 C fragment, repeated along N.
//
// test_gpu_wgmma.cu checks a tile of each type against the host; the grouped experts
// (moe_grouped.cu) run their mainloops on them.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace kl::cuda {
namespace {

constexpr int kSwizzleRowBytes = 128;    // one slab row: 64 bf16 or 128 e4m3
constexpr int kSwizzleAtomBytes = 1024;  // 8 rows: the swizzle's period and alignment

// Byte offset of 16-byte chunk `chunk` (0..7) of row `row` in a 128-byte-swizzled slab.
__host__ __device__ constexpr uint32_t swizzle128_offset(uint32_t row, uint32_t chunk) {
    return row * kSwizzleRowBytes + ((chunk ^ (row & 7)) << 4);
}

// The descriptor of a K-major, 128-byte-swizzled slab at `smem` (1024-byte aligned), plus
// `k_bytes` along K (a multiple of 32: one k-step of bf16 or e4m3). Fields (PTX ISA, "matrix
// descriptor"): start address >> 4 in bits 0-13; leading byte offset >> 4 in 16-29 (unused
// by swizzled K-major layouts, 1 by convention); stride byte offset >> 4 in 32-45 (the 1024
// bytes between groups of 8 rows); base offset 0 in 49-51; swizzle mode in 62-63 (1: 128 B).
__device__ __forceinline__ uint64_t wgmma_desc_sw128(const void* smem, uint32_t k_bytes = 0) {
    const uint32_t address = static_cast<uint32_t>(__cvta_generic_to_shared(smem)) + k_bytes;
    uint64_t desc = (address & 0x3FFFF) >> 4;
    desc |= uint64_t(1) << 16;
    desc |= uint64_t(kSwizzleAtomBytes >> 4) << 32;
    desc |= uint64_t(1) << 62;
    return desc;
}

// Shared memory written by ordinary stores or cp.async, read by wgmma (the async proxy): the
// writes are made visible to it first.
__device__ __forceinline__ void fence_async_shared() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// Before the first wgmma of a group reads registers the warpgroup wrote (the accumulators).
__device__ __forceinline__ void wgmma_fence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
// Waits until at most N committed groups are pending (their accumulators then readable).
template <int N>
__device__ __forceinline__ void wgmma_wait() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}

// Pins registers that an in-flight wgmma writes: the compiler sees the wgmma asm as done once
// issued, so without this it could read them before wgmma_wait, or move them while the
// tensor cores still write them. Placed after each wait whose group wrote them (and before
// issuing into registers other code just read).
template <int N>
__device__ __forceinline__ void wgmma_fence_operands(float (&d)[N]) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// ---- mbarriers: the warp-specialized mainloops' stage handshakes (sm_90) ----------------
// A barrier in shared memory completes a phase when `count` arrivals have come; waiting on
// parity p returns once the phase of that parity has completed (the first phase is 0).

__device__ __forceinline__ void mbarrier_init(uint64_t* bar, uint32_t count) {
    const uint32_t address = static_cast<uint32_t>(__cvta_generic_to_shared(bar));
    asm volatile("mbarrier.init.shared.b64 [%0], %1;\n" ::"r"(address), "r"(count) : "memory");
}
__device__ __forceinline__ void mbarrier_arrive(uint64_t* bar) {
    const uint32_t address = static_cast<uint32_t>(__cvta_generic_to_shared(bar));
    asm volatile("{\n.reg .b64 state;\nmbarrier.arrive.shared.b64 state, [%0];\n}\n" ::"r"(address)
                 : "memory");
}
// Whether the phase of parity `parity` has completed (try_wait may suspend the thread for a
// while first).
__device__ __forceinline__ bool mbarrier_try_wait(uint64_t* bar, uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const uint32_t address = static_cast<uint32_t>(__cvta_generic_to_shared(bar));
    uint32_t done = 0;
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(address), "r"(parity)
        : "memory");
    return done != 0;
#else
    (void)bar, (void)parity, __trap();  // sm_90 only
    return false;
#endif
}
__device__ __forceinline__ void mbarrier_wait(uint64_t* bar, uint32_t parity) {
    while (!mbarrier_try_wait(bar, parity)) {
    }
}
// One arrival on `bar` once every cp.async this thread issued before it has landed; the
// barrier's count must include it (noinc).
__device__ __forceinline__ void cp_async_arrive_noinc(uint64_t* bar) {
    const uint32_t address = static_cast<uint32_t>(__cvta_generic_to_shared(bar));
    asm volatile("cp.async.mbarrier.arrive.noinc.shared.b64 [%0];\n" ::"r"(address) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() {
    asm volatile("cp.async.wait_all;\n" ::: "memory");
}

// The 64 fp32 accumulator registers of an m64n128 wgmma, as asm operands %0..%63.
#define KL_WGMMA_D_REGS                                                                           \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, " \
    "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, "  \
    "%38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "  \
    "%56, %57, %58, %59, %60, %61, %62, %63}"
#define KL_WGMMA_D_OPERANDS(d)                                                                     \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),            \
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),    \
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), \
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), \
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), \
        "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), \
        "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), \
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), \
        "+f"(d[63])

// d (+)= A · B^T for one k-step: A 64 x K, B 128 x K (K-major descriptors); accumulate false:
// d = A · B^T. `ptx` the instruction, `imm` its immediates after the scale-d predicate.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define KL_WGMMA_M64N128(ptx, imm)                                                    \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n" ptx " " KL_WGMMA_D_REGS \
                 ", %64, %65, p, " imm ";\n}\n"                                       \
                 : KL_WGMMA_D_OPERANDS(d)                                             \
                 : "l"(desc_a), "l"(desc_b), "r"(int(accumulate)))
#else
#define KL_WGMMA_M64N128(ptx, imm) \
    ((void)d, (void)desc_a, (void)desc_b, (void)accumulate, __trap())  // sm_90a only
#endif

// bf16, K = 16 per step (immediates: no negation, no transpose).
__device__ __forceinline__ void wgmma_m64n128k16_bf16(float (&d)[64], uint64_t desc_a,
                                                      uint64_t desc_b, bool accumulate) {
    KL_WGMMA_M64N128("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16", "1, 1, 0, 0");
}
// e4m3 codes, K = 32 per step (FP8 takes K-major operands only: no transpose immediates).
__device__ __forceinline__ void wgmma_m64n128k32_e4m3(float (&d)[64], uint64_t desc_a,
                                                      uint64_t desc_b, bool accumulate) {
    KL_WGMMA_M64N128("wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3", "1, 1");
}

// bf16 m64n64k16 from shared memory (32 accumulator registers, the layout above along 64
// columns): S = Q·K^T of the MLA prefill.
__device__ __forceinline__ void wgmma_m64n64k16_bf16(float (&d)[32], uint64_t desc_a,
                                                     uint64_t desc_b, bool accumulate) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, "
        "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, "
        "0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
          "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
          "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
          "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
          "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "l"(desc_a), "l"(desc_b), "r"(int(accumulate)));
#else
    (void)d, (void)desc_a, (void)desc_b, (void)accumulate, __trap();  // sm_90a only
#endif
}

// bf16 m64n128k16 with A from registers: a[4] is this thread's part of a 64 x 16 A tile in
// mma.sync m16n8k16's A layout, warp w holding rows 16w..16w+15; so an accumulator tile of
// 16 columns (registers 4j..4j+3 of column blocks j and j + 1) becomes an A tile once its
// pairs are packed to bf16 (O += P·V of the MLA prefill). B from shared memory, K-major.
__device__ __forceinline__ void wgmma_m64n128k16_bf16_rs(float (&d)[64], const uint32_t (&a)[4],
                                                         uint64_t desc_b, bool accumulate) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " KL_WGMMA_D_REGS
        ", {%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"
        : KL_WGMMA_D_OPERANDS(d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(int(accumulate)));
#else
    (void)d, (void)a, (void)desc_b, (void)accumulate, __trap();       // sm_90a only
#endif
}

}  // namespace
}  // namespace kl::cuda
