// Random token ids for the model tests: n ids in [0, vocab), the same for the same seed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace kl::test {

inline std::vector<int32_t> random_tokens(size_t n, int64_t vocab, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(vocab - 1));
    std::vector<int32_t> tokens(n);
    for (int32_t& t : tokens) t = pick(rng);
    return tokens;
}

}  // namespace kl::test
