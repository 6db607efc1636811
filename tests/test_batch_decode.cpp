// The CPU backend's batched decode (Backend::forward_batch): one token for each of n sessions
// at their own positions equals n single-token forward() calls on copies of the same states,
// in the logits and in every layer's state afterwards, whatever the order of the rows; and a
// call that runs out of memory at any allocation leaves every session exactly as it was.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "allocation_failure.h"
#include "compare.h"
#include "core/backend.h"
#include "core/model.h"
#include "tiny_model.h"

namespace {

using StatePtr = std::unique_ptr<kl::BackendState>;

constexpr double kTolerance = 1e-5;
constexpr uint64_t kCapacity = 128;

class BatchDecode : public ::testing::Test {
protected:
    void SetUp() override {
        kl::ModelLoadOptions options;
        options.n_threads = 2;
        model_ = kl::Model::load(kl::test::tiny_model_dir(), options);
        const kl::ModelConfig& c = model_->config();
        // The comparison covers every kind of layer only if the model has them all.
        bool kda = false, mla = false, moe = false, dense = false;
        for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
            (c.is_kda_layer(layer) ? kda : mla) = true;
            (c.is_moe_layer(layer) ? moe : dense) = true;
        }
        ASSERT_TRUE(kda && mla && moe && dense);
    }

    const kl::Backend& backend() const { return model_->backend(); }
    int32_t vocab() const { return static_cast<int32_t>(model_->config().vocab_size); }

    // A state after forward() of `length` pseudo-random tokens (a fresh one for 0).
    StatePtr state_after_prompt(size_t length, uint32_t seed) const {
        StatePtr state = backend().create_state(kCapacity);
        if (length == 0) return state;
        std::mt19937 rng(seed);
        std::vector<int32_t> prompt(length);
        for (int32_t& t : prompt) t = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab()));
        backend().forward(*state, 0, prompt.data(), prompt.size(), nullptr, nullptr, no_cancel_);
        return state;
    }

    std::vector<float> logits(const kl::BackendState& state) const {
        std::vector<float> out(state.vocab());
        backend().read_logits(state, out.data());
        return out;
    }

    // Every layer's snapshot part (KDA S + conv state, MLA cache rows [0, position)).
    std::vector<float> layer_floats(const kl::BackendState& state, size_t layer,
                                    uint64_t position) const {
        const kl::ModelConfig& c = model_->config();
        const size_t floats =
            c.is_kda_layer(static_cast<int64_t>(layer))
                ? static_cast<size_t>(c.recurrent_floats_per_kda_layer())
                : static_cast<size_t>(position * static_cast<uint64_t>(c.mla_cache_width()));
        std::vector<uint8_t> bytes(floats * sizeof(float));
        backend().save_layer(state, layer, position, bytes.data());
        std::vector<float> out(floats);
        if (floats) std::memcpy(out.data(), bytes.data(), bytes.size());
        return out;
    }

    // The same logits and every layer's state (rows [0, position) of the MLA caches), to
    // `tolerance` (0: exactly).
    void expect_same_session(const kl::BackendState& got, const kl::BackendState& want,
                             uint64_t position, double tolerance = kTolerance) const {
        EXPECT_LE(kl::test::rel_error(logits(got), logits(want)), tolerance);
        for (size_t layer = 0; layer < static_cast<size_t>(model_->config().num_hidden_layers);
             ++layer)
            EXPECT_LE(kl::test::rel_error(layer_floats(got, layer, position),
                                          layer_floats(want, layer, position)),
                      tolerance)
                << "layer " << layer;
    }

    // Runs one batch over copies of `states` and, for each row, forward() of the same token
    // on another copy; expects equal logits, equal layer states and equal logits of one more
    // forward() step on both.
    void expect_batch_equals_single_steps(const std::vector<const kl::BackendState*>& states,
                                          const std::vector<uint64_t>& positions,
                                          const std::vector<int32_t>& tokens) const {
        const size_t n = states.size();
        std::vector<StatePtr> batched, single;
        std::vector<kl::BackendState*> rows;
        for (size_t i = 0; i < n; ++i) {
            batched.push_back(backend().clone_state(*states[i]));
            single.push_back(backend().clone_state(*states[i]));
            rows.push_back(batched.back().get());
            backend().forward(*single[i], positions[i], &tokens[i], 1, nullptr, nullptr,
                              no_cancel_);
        }
        backend().forward_batch(rows.data(), positions.data(), tokens.data(), n);

        const int32_t next = 17;
        for (size_t i = 0; i < n; ++i) {
            SCOPED_TRACE("row " + std::to_string(i) + " at position " +
                         std::to_string(positions[i]));
            expect_same_session(*batched[i], *single[i], positions[i] + 1);
            backend().forward(*batched[i], positions[i] + 1, &next, 1, nullptr, nullptr,
                              no_cancel_);
            backend().forward(*single[i], positions[i] + 1, &next, 1, nullptr, nullptr, no_cancel_);
            EXPECT_LE(kl::test::rel_error(logits(*batched[i]), logits(*single[i])), kTolerance);
        }
    }

    // n sessions at different positions (0, a short prompt, ..., 70 tokens) with tokens.
    void run_case(size_t n) {
        const size_t lengths[] = {5, 0, 70, 1, 12, 33, 3, 64, 2, 9, 65, 20};
        std::vector<StatePtr> owned;
        std::vector<const kl::BackendState*> states;
        std::vector<uint64_t> positions;
        std::vector<int32_t> tokens;
        for (size_t i = 0; i < n; ++i) {
            const size_t length = lengths[i % std::size(lengths)];
            owned.push_back(state_after_prompt(length, static_cast<uint32_t>(100 + i)));
            states.push_back(owned.back().get());
            positions.push_back(length);
            tokens.push_back(static_cast<int32_t>((37 * i + 11) % static_cast<size_t>(vocab())));
        }
        expect_batch_equals_single_steps(states, positions, tokens);
    }

    // Runs `call` on copies of `states` with allocation k failing, for k = 0, 1, ... until the
    // call makes fewer allocations: each failed call must leave every copy exactly as it was,
    // and the next token on it must give exactly what it gives on the original.
    template <class Call>
    void expect_failures_change_nothing(const std::vector<const kl::BackendState*>& states,
                                        const std::vector<uint64_t>& positions,
                                        const Call& call) const {
        if (!kl::test::FailAllocation::available())
            GTEST_SKIP() << "this sanitizer build owns operator new: run in the release build";
        long failures = 0;
        for (long k = 0;; ++k) {
            std::vector<StatePtr> work;
            std::vector<kl::BackendState*> rows;
            for (const kl::BackendState* s : states) {
                work.push_back(backend().clone_state(*s));
                rows.push_back(work.back().get());
            }
            bool threw = false, fired = false;
            {
                kl::test::FailAllocation fail(k);
                try {
                    call(rows);
                } catch (const std::bad_alloc&) {
                    threw = true;
                }
                fired = fail.fired();
            }
            if (!fired) break;
            if (!threw) continue;  // the failed allocation had a fallback (a nothrow new)
            ++failures;
            SCOPED_TRACE("allocation " + std::to_string(k) + " failed");
            for (size_t i = 0; i < states.size(); ++i) {
                expect_same_session(*work[i], *states[i], positions[i], 0.0);
                StatePtr original = backend().clone_state(*states[i]);
                const int32_t next = 29;
                backend().forward(*work[i], positions[i], &next, 1, nullptr, nullptr, no_cancel_);
                backend().forward(*original, positions[i], &next, 1, nullptr, nullptr, no_cancel_);
                expect_same_session(*work[i], *original, positions[i] + 1, 0.0);
            }
            if (::testing::Test::HasFailure()) return;  // one report, not one per allocation
        }
        EXPECT_GT(failures, 10);  // the pass allocates: the loop really made calls fail
    }

    std::unique_ptr<kl::Model> model_;
    const std::atomic<bool> no_cancel_{false};
};

TEST_F(BatchDecode, OneRowEqualsForward) {
    run_case(1);
}

TEST_F(BatchDecode, TwoRowsEqualForward) {
    run_case(2);
}

TEST_F(BatchDecode, FiveRowsEqualForward) {
    run_case(5);
}

// More rows than experts: every expert serves several rows of the batch.
TEST_F(BatchDecode, MoreRowsThanExpertsEqualForward) {
    ASSERT_GT(12, model_->config().num_experts);
    run_case(12);
}

// Sessions that share a token and a position still have their own states.
TEST_F(BatchDecode, SameTokenAndPositionInDifferentSessions) {
    StatePtr a = state_after_prompt(8, 1), b = state_after_prompt(8, 2),
             c = state_after_prompt(0, 3);
    expect_batch_equals_single_steps({a.get(), b.get(), c.get()}, {8, 8, 0}, {42, 42, 42});
}

// A batch that runs out of memory at any of its allocations changes no session.
TEST_F(BatchDecode, FailedBatchChangesNoSession) {
    StatePtr a = state_after_prompt(0, 1), b = state_after_prompt(9, 2),
             c = state_after_prompt(70, 3);
    const std::vector<uint64_t> positions = {0, 9, 70};
    const std::vector<int32_t> tokens = {4, 5, 6};
    expect_failures_change_nothing(
        {a.get(), b.get(), c.get()}, positions, [&](const std::vector<kl::BackendState*>& rows) {
            backend().forward_batch(rows.data(), positions.data(), tokens.data(), rows.size());
        });
}

// forward() shares the batch's layer code: the same holds for a prefill.
TEST_F(BatchDecode, FailedForwardChangesNothing) {
    StatePtr a = state_after_prompt(9, 4);
    const std::vector<int32_t> tokens = {7, 8, 9, 10};
    expect_failures_change_nothing({a.get()}, {9}, [&](const std::vector<kl::BackendState*>& rows) {
        backend().forward(*rows[0], 9, tokens.data(), tokens.size(), nullptr, nullptr, no_cancel_);
    });
}

// Cache rows past a session's position (left by a failed call) are overwritten, never read.
TEST_F(BatchDecode, CacheRowsPastThePositionAreIgnored) {
    StatePtr longer = state_after_prompt(20, 7);  // rows [0, 20) cached; run it from 11
    StatePtr other = state_after_prompt(4, 8);
    expect_batch_equals_single_steps({longer.get(), other.get()}, {11, 4}, {5, 6});
}

TEST_F(BatchDecode, ResultsDoNotDependOnTheRowOrder) {
    const size_t n = 7;
    const size_t lengths[n] = {0, 70, 3, 15, 1, 40, 8};
    std::vector<StatePtr> in_order, permuted;
    std::vector<uint64_t> positions(lengths, lengths + n);
    std::vector<int32_t> tokens;
    for (size_t i = 0; i < n; ++i) {
        in_order.push_back(state_after_prompt(lengths[i], static_cast<uint32_t>(200 + i)));
        permuted.push_back(backend().clone_state(*in_order[i]));
        tokens.push_back(static_cast<int32_t>((53 * i + 2) % static_cast<size_t>(vocab())));
    }
    std::vector<kl::BackendState*> rows;
    for (auto& s : in_order) rows.push_back(s.get());
    backend().forward_batch(rows.data(), positions.data(), tokens.data(), n);

    const size_t order[n] = {4, 0, 6, 2, 5, 1, 3};
    std::vector<kl::BackendState*> permuted_rows;
    std::vector<uint64_t> permuted_positions;
    std::vector<int32_t> permuted_tokens;
    for (size_t i : order) {
        permuted_rows.push_back(permuted[i].get());
        permuted_positions.push_back(positions[i]);
        permuted_tokens.push_back(tokens[i]);
    }
    backend().forward_batch(permuted_rows.data(), permuted_positions.data(), permuted_tokens.data(),
                            n);

    for (size_t i = 0; i < n; ++i) {
        SCOPED_TRACE("session " + std::to_string(i));
        expect_same_session(*permuted[i], *in_order[i], positions[i] + 1);
    }
}

}  // namespace
