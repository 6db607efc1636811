#include "score_order.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <numeric>

namespace kl {
namespace {

// A key whose unsigned order is the descending order of the floats: the sign-magnitude bits
// made monotone, then inverted. -0.0 keys as 0.0 (the comparator calls them equal).
uint32_t descending_key(float score) {
    if (score == 0.0f) score = 0.0f;
    uint32_t bits;
    std::memcpy(&bits, &score, sizeof bits);
    const uint32_t ascending = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
    return ~ascending;
}

// Least-significant-digit radix sort of ids by key, 8 bits a pass: stable, so ids of equal
// scores stay in their starting (ascending id) order.
std::vector<int32_t> radix_order(const float* scores, size_t n) {
    std::vector<uint32_t> keys(n), keys_next(n);
    std::vector<int32_t> ids(n), ids_next(n);
    for (size_t i = 0; i < n; ++i) {
        keys[i] = descending_key(scores[i]);
        ids[i] = static_cast<int32_t>(i);
    }
    for (int shift = 0; shift < 32; shift += 8) {
        std::array<size_t, 257> start{};
        for (size_t i = 0; i < n; ++i) ++start[((keys[i] >> shift) & 0xffu) + 1];
        if (start[((keys[0] >> shift) & 0xffu) + 1] == n) continue;  // one digit: nothing moves
        for (size_t d = 1; d < start.size(); ++d) start[d] += start[d - 1];
        for (size_t i = 0; i < n; ++i) {
            const size_t slot = start[(keys[i] >> shift) & 0xffu]++;
            keys_next[slot] = keys[i];
            ids_next[slot] = ids[i];
        }
        keys.swap(keys_next);
        ids.swap(ids_next);
    }
    return ids;
}

}  // namespace

std::vector<int32_t> order_by_score(const float* scores, size_t n, size_t keep) {
    constexpr size_t kPartialSortUpTo = 1024;  // a short head: the partial sort is cheaper
    if (keep > kPartialSortUpTo && n > 0) {
        std::vector<int32_t> order = radix_order(scores, n);
        order.resize(keep);
        return order;
    }
    std::vector<int32_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep), order.end(),
                      [&](int32_t a, int32_t b) {
                          return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
                      });
    order.resize(keep);
    return order;
}

}  // namespace kl
