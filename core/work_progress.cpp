#include "work_progress.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "error.h"

namespace kl {

WorkProgress::WorkProgress(std::function<bool(float)> report, uint64_t total, std::string cancelled)
    : report_(std::move(report)), total_(total), cancelled_(std::move(cancelled)) {}

void WorkProgress::advance(uint64_t units) {
    if (!report_) return;
    done_ = std::min(total_, done_ + units);
    const double fraction = total_ == 0 ? 0.0 : static_cast<double>(done_) / total_;
    // A float rounds a fraction this close to the end up to 1.0, and a caller reads 1.0 as
    // "complete": until finish() it stays just below.
    report(std::min(static_cast<float>(fraction), std::nextafter(1.0f, 0.0f)));
}

void WorkProgress::finish() {
    if (report_) report(1.0f);
}

void WorkProgress::report(float fraction) const {
    if (!report_(fraction)) fail(Status::Cancelled, cancelled_);
}

}  // namespace kl
