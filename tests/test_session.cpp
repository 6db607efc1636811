// Session semantics at the core level: failed calls change nothing, fork independence,
// snapshot round trip, cancellation leaves the state as it was.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/model.h"
#include "core/session.h"
#include "tiny_model.h"

namespace {

std::unique_ptr<kl::Model> load_tiny() {
    kl::ModelLoadOptions options;
    options.n_threads = 2;
    return kl::Model::load(kl::test::tiny_model_dir(), options);
}

std::vector<float> next_logits(kl::Session& s, int32_t token) {
    s.append(&token, 1, nullptr);
    return s.last_logits();
}

TEST(Session, FailedAppendChangesNothing) {
    auto model = load_tiny();
    kl::Session s(*model, 16);
    const std::vector<int32_t> prompt = {3, 1, 4, 1, 5};
    s.append(prompt.data(), prompt.size(), nullptr);
    auto reference = s.fork();
    const std::vector<float> logits_before = s.last_logits();

    const int32_t bad[] = {2, 7, static_cast<int32_t>(model->config().vocab_size)};
    EXPECT_THROW(s.append(bad, 3, nullptr), kl::Error);
    std::vector<int32_t> too_many(12, 1);
    try {
        s.append(too_many.data(), too_many.size(), nullptr);
        ADD_FAILURE() << "context overflow accepted";
    } catch (const kl::Error& e) {
        EXPECT_EQ(e.status(), kl::Status::ContextFull);
    }
    EXPECT_EQ(s.position(), prompt.size());
    EXPECT_EQ(s.last_logits(), logits_before);
    EXPECT_EQ(next_logits(s, 9), next_logits(*reference, 9));
}

TEST(Session, CancelledAppendLeavesTheStateAsBefore) {
    auto model = load_tiny();
    kl::Session s(*model, 0);
    const std::vector<int32_t> prompt = {5, 6, 7};
    s.append(prompt.data(), prompt.size(), nullptr);
    auto reference = s.fork();
    s.request_cancel();
    try {
        const int32_t t = 8;
        s.append(&t, 1, nullptr);
        ADD_FAILURE() << "cancel ignored";
    } catch (const kl::Error& e) {
        EXPECT_EQ(e.status(), kl::Status::Cancelled);
    }
    s.clear_cancel();
    EXPECT_EQ(s.position(), 3u);
    EXPECT_EQ(next_logits(s, 8), next_logits(*reference, 8));
}

TEST(Session, ForkIsIndependent) {
    auto model = load_tiny();
    kl::Session s(*model, 0);
    const std::vector<int32_t> prompt = {10, 20, 30, 40};
    s.append(prompt.data(), prompt.size(), nullptr);
    auto copy = s.fork();
    for (int32_t t : {1, 2, 3}) next_logits(*copy, t);
    EXPECT_EQ(copy->position(), 7u);
    EXPECT_EQ(s.position(), 4u);
    auto again = s.fork();
    EXPECT_EQ(next_logits(s, 50), next_logits(*again, 50));
}

TEST(Session, SnapshotRoundTripAndRejections) {
    auto model = load_tiny();
    kl::Session s(*model, 0);
    const std::vector<int32_t> prompt = {1, 2, 3, 4, 5, 6, 7};
    s.append(prompt.data(), prompt.size(), nullptr);
    std::vector<uint8_t> blob(s.snapshot_size());
    s.save_snapshot(blob.data());

    kl::Session restored(*model, 0);
    restored.load_snapshot(blob.data(), blob.size());
    EXPECT_EQ(restored.position(), s.position());
    EXPECT_EQ(restored.last_logits(), s.last_logits());
    EXPECT_EQ(next_logits(restored, 11), next_logits(s, 11));

    kl::Session victim(*model, 0);
    victim.append(prompt.data(), 2, nullptr);
    auto before = victim.fork();
    for (size_t i = 0; i < blob.size(); i += 7) {
        std::vector<uint8_t> bad = blob;
        bad[i] ^= 0x10;
        EXPECT_THROW(victim.load_snapshot(bad.data(), bad.size()), kl::Error) << "byte " << i;
    }
    for (size_t n = 0; n < blob.size(); n += 13)
        EXPECT_THROW(victim.load_snapshot(blob.data(), n), kl::Error) << "length " << n;
    EXPECT_EQ(victim.position(), 2u);
    EXPECT_EQ(next_logits(victim, 3), next_logits(*before, 3));
}

TEST(Session, ResetEqualsFresh) {
    auto model = load_tiny();
    kl::Session s(*model, 0);
    const std::vector<int32_t> prompt = {9, 8, 7};
    s.append(prompt.data(), prompt.size(), nullptr);
    s.reset();
    EXPECT_EQ(s.position(), 0u);
    EXPECT_FALSE(s.has_logits());
    kl::Session fresh(*model, 0);
    EXPECT_EQ(next_logits(s, 4), next_logits(fresh, 4));
}

}  // namespace
