// WorkProgress (core/work_progress.h): fractions of the work done, below 1.0 until finish(),
// a false answer thrown as Cancelled with the job's message.
#include <gtest/gtest.h>

#include <vector>

#include "core/work_progress.h"
#include "expect_error.h"

namespace {

using kl::Status;
using kl::WorkProgress;

TEST(WorkProgress, ReportsTheFractionDoneBelowOneUntilFinished) {
    std::vector<float> seen;
    WorkProgress work([&](float f) { return seen.push_back(f), true; }, 4, "stopped");
    work.advance(1);
    work.advance(2);
    work.advance(1);  // all the units, but the job is not finished
    work.advance(5);  // more than the total counts as the total
    work.finish();
    ASSERT_EQ(seen.size(), 5u);
    EXPECT_EQ(seen[0], 0.25f);
    EXPECT_EQ(seen[1], 0.75f);
    EXPECT_LT(seen[2], 1.0f);
    EXPECT_GT(seen[2], 0.999f);
    EXPECT_EQ(seen[3], seen[2]);
    EXPECT_EQ(seen[4], 1.0f);
}

TEST(WorkProgress, AFractionThatRoundsToOneStaysBelowIt) {
    float last = 0;
    const uint64_t total = uint64_t(1) << 40;  // a float cannot tell total - 1 from total
    WorkProgress work([&](float f) { return last = f, true; }, total, "stopped");
    work.advance(total - 1);
    EXPECT_LT(last, 1.0f);
}

TEST(WorkProgress, FalseStopsTheJobAsCancelled) {
    WorkProgress work([](float f) { return f < 0.5f; }, 2, "the job was cancelled");
    work.advance(0);
    kl::test::expect_error([&] { work.advance(1); }, Status::Cancelled, {"the job was cancelled"});
    WorkProgress at_the_end([](float f) { return f < 1.0f; }, 1, "stopped at the end");
    at_the_end.advance(1);
    kl::test::expect_error([&] { at_the_end.finish(); }, Status::Cancelled, {"stopped at the end"});
}

TEST(WorkProgress, WithoutACallbackNothingIsReported) {
    WorkProgress work({}, 0, "unused");
    work.advance(3);
    work.finish();
}

}  // namespace
