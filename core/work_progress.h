// A long job's progress as the fraction of its work done (the checkpoint writer counts bytes),
// reported to a callback that may stop it: ModelLoadOptions::progress's convention, false
// aborts with Status::Cancelled.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace kl {

class WorkProgress {
public:
    // `report` may be empty (nothing is reported); `cancelled` is the message of the error
    // thrown when it returns false. `total` units make the whole job.
    WorkProgress(std::function<bool(float)> report, uint64_t total, std::string cancelled);

    // `units` more are done: reports done / total, held below 1.0, which only finish() says.
    void advance(uint64_t units);
    // The job is complete: reports exactly 1.0 (a false answer still stops it).
    void finish();

private:
    void report(float fraction) const;

    std::function<bool(float)> report_;
    uint64_t total_;
    uint64_t done_ = 0;
    std::string cancelled_;
};

}  // namespace kl
