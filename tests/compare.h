// Error measure shared by the numeric tests: max |got - want| over max |want| (the error
// relative to the reference's scale), infinite if `got` holds a NaN or an infinity.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

namespace kl::test {

inline double rel_error(const std::vector<float>& got, const std::vector<float>& want) {
    double worst = 0.0, scale = 1e-12;
    for (size_t i = 0; i < got.size(); ++i) {
        if (!std::isfinite(got[i])) return INFINITY;
        worst = std::max(worst, std::fabs(double(got[i]) - want[i]));
        scale = std::max(scale, std::fabs(double(want[i])));
    }
    return worst / scale;
}

}  // namespace kl::test
