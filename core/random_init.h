// Deterministic random weights for any tensor of the checkpoint layout: a counter-based
// generator (the value of element i depends only on the seed, the tensor's name and i), so
// make_tiny_model's files, the CPU's in-memory random model and the GPU's on-device one
// (`kimi bench --random`) hold the same numbers. Plain header, usable from CUDA code too.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#ifdef __CUDACC__
#define KL_HOST_DEVICE __host__ __device__
#else
#define KL_HOST_DEVICE
#endif

namespace kl {

// value = offset + scale * X, X ~ N(0, 1) or, for A_log, X = log(1 + 15 U), U ~ U(0, 1).
struct RandomInit {
    bool log_uniform = false;
    float offset = 0.0f;
    float scale = 1.0f;
};

// Scales that keep activations O(1) through many layers of a random model.
inline RandomInit random_init_for(const std::string& name, int64_t fan_in) {
    auto ends_with = [&](const char* tail) {
        const std::string t(tail);
        return name.size() >= t.size() && name.compare(name.size() - t.size(), t.size(), t) == 0;
    };
    if (ends_with("A_log")) return {true, 0.0f, 1.0f};
    if (ends_with("dt_bias")) return {false, -1.0f, 0.5f};
    if (ends_with("conv1d.weight")) return {false, 0.0f, 0.5f};
    if (ends_with("e_score_correction_bias")) return {false, 0.0f, 0.1f};
    if (ends_with("norm.weight") || ends_with("layernorm.weight")) return {false, 1.0f, 0.1f};
    if (ends_with("embed_tokens.weight")) return {false, 0.0f, 1.0f};
    const bool output =
        ends_with("o_proj.weight") || ends_with("down_proj.weight") || ends_with("w2.weight");
    return {false, 0.0f, (output ? 0.5f : 1.0f) / std::sqrt(static_cast<float>(fan_in))};
}

// FNV-1a of the tensor name: the per-tensor stream key.
inline uint64_t random_tensor_key(const std::string& name) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
    return h;
}

KL_HOST_DEVICE inline uint64_t random_mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

KL_HOST_DEVICE inline float random_value(uint64_t seed, uint64_t key, uint64_t index,
                                         RandomInit init) {
    const uint64_t a = random_mix(seed ^ random_mix(key ^ random_mix(2 * index)));
    const uint64_t b = random_mix(seed ^ random_mix(key ^ random_mix(2 * index + 1)));
    // Uniforms in (0, 1): 24 bits each, never 0. Host and device libm may differ in the last
    // bit of log/cos; after rounding to bf16 the two almost always agree.
    const float u1 = (static_cast<float>(a >> 40) + 0.5f) * (1.0f / 16777216.0f);
    const float u2 = (static_cast<float>(b >> 40) + 0.5f) * (1.0f / 16777216.0f);
    if (init.log_uniform) return init.offset + init.scale * logf(1.0f + 15.0f * u1);
    const float normal = sqrtf(-2.0f * logf(u1)) * cosf(6.28318530717958648f * u2);
    return init.offset + init.scale * normal;
}

}  // namespace kl
