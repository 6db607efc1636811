// A model split over G shards (core/shard_plan.h, docs/design/sharding.md), each shard a CPU
// backend (kl::cpu::create_shard) on its own thread, the shards meeting through an in-process
// sum and gather: its logits equal the unsplit CPU model's to 1e-5 (fp32 sums of the same
// products in another order), for a prefill and for the decode steps after it, over 1, 2
// and 4 shards, with separate and tied embeddings (issue 16, item 3).
#include <gtest/gtest.h>

#include <atomic>
#include <exception>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "compare.h"
#include "core/error.h"
#include "core/model.h"
#include "core/session.h"
#include "core/shard_plan.h"
#include "core/shard_rendezvous.h"
#include "core/sharded_backend.h"
#include "core/weights.h"
#include "random_tokens.h"
#include "tiny_config.h"

namespace {

constexpr uint64_t kSeed = 11;
constexpr double kTolerance = 1e-5;

// The tiny preset with 4 KDA and 4 MLA heads (so that it splits 4 ways), a vocabulary that
// splits unevenly (258 = 64 + 64 + 65 + 65) and routing that spreads over the experts.
kl::ModelConfig split_config(bool tied) {
    kl::ModelConfig c = kl::test::tiny_config();
    c.num_attention_heads = 4, c.kda_num_heads = 4, c.vocab_size = 258;
    c.num_experts_per_token = 3;
    c.tie_word_embeddings = tied;
    c.validate("split");
    return c;
}

// G shard backends of `config` meeting at `rendezvous`; shard `failing` (if any) fails at
// its `fail_at`-th sum with an Internal error.
struct SplitModel {
    SplitModel(const kl::ModelConfig& config, int shards, int failing = -1, int fail_at = 0)
        : layout(config), plan(config, layout, shards), rendezvous(vocab_parts(plan)) {
        for (int g = 0; g < shards; ++g) {
            kl::ShardLinks links;
            links.sum = [this, g, failing, fail_at, calls = 0](float* v, size_t n) mutable {
                if (g == failing && ++calls == fail_at)
                    kl::fail(kl::Status::Internal, "shard failure injected by the test");
                rendezvous.sum(g, v, n);
            };
            links.gather = [this, g](const float* part, size_t rows, float* whole) {
                rendezvous.gather(g, part, rows, whole);
            };
            backends.push_back(kl::cpu::create_shard(
                config, layout, plan, g, kl::random_tensor_source(kSeed), std::move(links), 1));
        }
    }
    static std::vector<std::pair<int64_t, int64_t>> vocab_parts(const kl::ShardPlan& plan) {
        std::vector<std::pair<int64_t, int64_t>> parts;
        for (int g = 0; g < plan.shards(); ++g) parts.push_back(plan.vocab(g));
        return parts;
    }
    // step(g) on every shard, each on its own thread; a shard that throws aborts the
    // rendezvous. The errors by shard (null where it returned).
    template <typename Step>
    std::vector<std::exception_ptr> run(const Step& step) {
        std::vector<std::exception_ptr> errors(backends.size());
        std::vector<std::thread> threads;
        for (size_t g = 0; g < backends.size(); ++g)
            threads.emplace_back([&, g] {
                try {
                    step(int(g));
                } catch (...) {
                    errors[g] = std::current_exception();
                    rendezvous.abort();
                }
            });
        for (std::thread& t : threads) t.join();
        rendezvous.reset();
        return errors;
    }

    kl::ModelLayout layout;
    kl::ShardPlan plan;
    kl::ShardRendezvous rendezvous;
    std::vector<std::unique_ptr<kl::Backend>> backends;
};

kl::Status status_of(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const kl::Error& error) {
        return error.status();
    } catch (...) {
        return kl::Status::Internal;
    }
}

// The split model's logits for `tokens` (every position) and then for `steps` one at a time:
// [tokens.size() + steps.size(), vocab], as the unsplit session's below.
std::vector<float> run_split(const kl::ModelConfig& config, int shards,
                             const std::vector<int32_t>& tokens,
                             const std::vector<int32_t>& steps) {
    SplitModel model(config, shards);
    const size_t vocab = size_t(config.vocab_size);
    std::vector<std::vector<float>> logits(static_cast<size_t>(shards));
    const auto errors = model.run([&](int g) {
        const kl::Backend& backend = *model.backends[size_t(g)];
        const std::atomic<bool> cancel{false};
        auto state = backend.create_state(tokens.size() + steps.size() + 1);
        std::vector<float>& out = logits[size_t(g)];
        out.resize((tokens.size() + steps.size()) * vocab);
        backend.forward(*state, 0, tokens.data(), tokens.size(), nullptr, out.data(), cancel);
        for (size_t i = 0; i < steps.size(); ++i)
            backend.forward(*state, tokens.size() + i, &steps[i], 1,
                            out.data() + (tokens.size() + i) * vocab, nullptr, cancel);
    });
    for (int g = 0; g < shards; ++g) {
        EXPECT_FALSE(errors[size_t(g)]) << "shard " << g << " failed";
        EXPECT_EQ(logits[size_t(g)], logits[0]) << "shard " << g << " differs from shard 0";
    }
    return logits[0];
}

std::vector<float> run_whole(const kl::ModelConfig& config, const std::vector<int32_t>& tokens,
                             const std::vector<int32_t>& steps) {
    kl::ModelLoadOptions options;
    options.device = kl::DeviceRequest::Cpu;
    options.n_threads = 1;
    auto model = kl::Model::create_random(config, kSeed, options);
    const size_t vocab = size_t(config.vocab_size);
    std::vector<float> out((tokens.size() + steps.size()) * vocab);
    kl::Session session(*model, 0);
    session.append(tokens.data(), tokens.size(), out.data());
    for (size_t i = 0; i < steps.size(); ++i) {
        session.append(&steps[i], 1, nullptr);
        const std::vector<float> last = session.last_logits();
        std::copy(last.begin(), last.end(), out.begin() + (tokens.size() + i) * vocab);
    }
    return out;
}

using kl::test::random_tokens;

TEST(ShardCpu, SplitModelLogitsEqualTheWholeModel) {
    for (bool tied : {false, true}) {
        const kl::ModelConfig config = split_config(tied);
        const auto tokens = random_tokens(70, config.vocab_size, 3);  // chunked KDA: > 64
        const auto steps = random_tokens(5, config.vocab_size, 4);
        const std::vector<float> want = run_whole(config, tokens, steps);
        for (int shards : {1, 2, 4}) {
            const std::vector<float> got = run_split(config, shards, tokens, steps);
            const double err = kl::test::rel_error(got, want);
            EXPECT_LE(err, kTolerance) << shards << " shards, tied " << tied;
            std::printf("[ shards ] %d shards%s: max rel error %.2e\n", shards,
                        tied ? " (tied)" : "", err);
        }
    }
}

// A shard that fails mid-step, or a cancel that the shards see at different layers, unwinds
// every shard (none waits forever at a rendezvous) and leaves every shard's state as it was:
// the same states then give the whole model's logits.
TEST(ShardCpu, AFailedOrCancelledStepUnwindsEveryShardAndChangesNoState) {
    const kl::ModelConfig config = split_config(false);
    const auto tokens = random_tokens(40, config.vocab_size, 5);
    const auto more = random_tokens(9, config.vocab_size, 6);
    const size_t vocab = size_t(config.vocab_size);
    std::vector<int32_t> all = tokens;
    all.insert(all.end(), more.begin(), more.end());
    const std::vector<float> want = run_whole(config, all, {});
    for (int fail_at : {1, 3, 8}) {  // the embedding's sum, a KDA block's, a later one's
        SplitModel model(config, 4, /*failing=*/2, fail_at);
        std::vector<std::unique_ptr<kl::BackendState>> states;
        for (const auto& b : model.backends) states.push_back(b->create_state(64));
        std::vector<std::vector<float>> logits(4, std::vector<float>(all.size() * vocab));
        auto prefill = [&](const std::vector<int32_t>& t, size_t position, size_t row,
                           const std::atomic<bool>& cancel) {
            return model.run([&](int g) {
                model.backends[size_t(g)]->forward(*states[size_t(g)], position, t.data(), t.size(),
                                                   nullptr, logits[size_t(g)].data() + row * vocab,
                                                   cancel);
            });
        };
        const std::atomic<bool> go{false}, stop{true};
        // The first step fails on shard 2 at its fail_at-th sum: every shard fails.
        auto errors = prefill(tokens, 0, 0, go);
        for (int g = 0; g < 4; ++g) {
            ASSERT_TRUE(errors[size_t(g)]) << "shard " << g << " did not fail, fail_at " << fail_at;
            EXPECT_EQ(status_of(errors[size_t(g)]),
                      g == 2 ? kl::Status::Internal : kl::Status::Cancelled);
        }
        // A cancelled step: every shard stops.
        errors = prefill(tokens, 0, 0, stop);
        for (int g = 0; g < 4; ++g)
            EXPECT_EQ(status_of(errors[size_t(g)]), kl::Status::Cancelled) << "shard " << g;
        // The failure was injected once (shard 2 counts its sums): the same states now take
        // the prompt and then more, as if nothing had happened.
        errors = prefill(tokens, 0, 0, go);
        for (const auto& e : errors) EXPECT_FALSE(e);
        errors = prefill(more, tokens.size(), tokens.size(), go);
        for (const auto& e : errors) EXPECT_FALSE(e);
        EXPECT_LE(kl::test::rel_error(logits[0], want), kTolerance) << "fail_at " << fail_at;
        for (int g = 1; g < 4; ++g) EXPECT_EQ(logits[size_t(g)], logits[0]);
    }
}

}  // namespace

namespace {

std::unique_ptr<kl::Model> random_model(const kl::ModelConfig& config, int shards) {
    kl::ModelLoadOptions options;
    options.device = kl::DeviceRequest::Cpu;
    options.n_threads = 2;
    for (int g = 0; g < shards; ++g) options.devices.push_back(g);
    return kl::Model::create_random(config, kSeed, options);
}

// Sessions of a model loaded split (ModelLoadOptions::devices, core/sharded_backend.h) against
// the whole model: prefill and decode, a fork, batched decode of three sessions, snapshots
// moved both ways between the split and the whole model; all to 1e-5.
TEST(ShardCpu, SessionsOfASplitModelKeepEveryContract) {
    const kl::ModelConfig config = split_config(false);
    const auto whole = random_model(config, 1);
    const size_t vocab = size_t(config.vocab_size);
    const auto prompt = random_tokens(70, config.vocab_size, 8);
    const auto steps = random_tokens(3, config.vocab_size, 9);
    for (int shards : {2, 4}) {
        SCOPED_TRACE(std::to_string(shards) + " shards");
        const auto split = random_model(config, shards);
        EXPECT_EQ(split->fingerprint(), whole->fingerprint());  // the same weights
        kl::Session a(*whole, 0), b(*split, 0);
        std::vector<float> want(prompt.size() * vocab), got(want.size());
        a.append(prompt.data(), prompt.size(), want.data());
        b.append(prompt.data(), prompt.size(), got.data());
        EXPECT_LE(kl::test::rel_error(got, want), kTolerance) << "prefill";
        // A fork of each, then decode steps on the originals and batched on the forks.
        auto a2 = a.fork(), b2 = b.fork();
        for (int32_t t : steps) {
            a.append(&t, 1, nullptr);
            b.append(&t, 1, nullptr);
            EXPECT_LE(kl::test::rel_error(b.last_logits(), a.last_logits()), kTolerance);
        }
        kl::Session a3(*whole, 0), b3(*split, 0);
        a3.append(prompt.data(), 10, nullptr);
        b3.append(prompt.data(), 10, nullptr);
        kl::Session* as[] = {a2.get(), &a3, &a};
        kl::Session* bs[] = {b2.get(), &b3, &b};
        const int32_t batch_tokens[] = {steps[0], steps[1], steps[2]};
        kl::Session::append_batch(as, batch_tokens, 3);
        kl::Session::append_batch(bs, batch_tokens, 3);
        for (int i = 0; i < 3; ++i)
            EXPECT_LE(kl::test::rel_error(bs[i]->last_logits(), as[i]->last_logits()), kTolerance)
                << "batched row " << i;
        // Snapshots: the split session's into a whole-model session and the whole's into a
        // split one; the next step then matches in both.
        std::vector<uint8_t> from_split(b.snapshot_size()), from_whole(a.snapshot_size());
        ASSERT_EQ(from_split.size(), from_whole.size());
        b.save_snapshot(from_split.data());
        a.save_snapshot(from_whole.data());
        kl::Session a4(*whole, 0), b4(*split, 0);
        a4.load_snapshot(from_split.data(), from_split.size());
        b4.load_snapshot(from_whole.data(), from_whole.size());
        const int32_t next = steps[0];
        for (kl::Session* s : {&a, &b, &a4, &b4}) s->append(&next, 1, nullptr);
        EXPECT_LE(kl::test::rel_error(a4.last_logits(), a.last_logits()), kTolerance)
            << "split -> whole";
        EXPECT_LE(kl::test::rel_error(b4.last_logits(), a.last_logits()), kTolerance)
            << "whole -> split";
    }
}

TEST(ShardCpu, ASplitThatDoesNotDivideIsRefused) {
    kl::ModelConfig config = split_config(false);
    try {
        random_model(config, 3);
        ADD_FAILURE() << "3 shards of 4 heads loaded";
    } catch (const kl::Error& e) {
        EXPECT_EQ(e.status(), kl::Status::Unsupported) << e.what();
        EXPECT_NE(std::string(e.what()).find("kda_num_heads (4) is not a multiple of 3"),
                  std::string::npos)
            << e.what();
    }
}

// The device group a GPU backend's shards share (ShardLinks::group): the ShardedBackend hands
// it to every shard, aborts it once when a shard fails (so that shards blocked in a device
// collective return) and resets it once every shard has left the failed step; a step that
// succeeds touches it not. Shard 0 samples for the split model.
struct CountingGroup final : kl::ShardGroup {
    void abort() override { ++aborts; }
    void reset() override { ++resets; }
    std::atomic<int> aborts{0}, resets{0};
};

TEST(ShardCpu, TheDeviceGroupIsAbortedOnceByAFailedStepAndResetAfterIt) {
    const kl::ModelConfig config = split_config(false);
    const kl::ModelLayout layout(config);
    const kl::ShardPlan plan(config, layout, 2);
    auto owned = std::make_unique<CountingGroup>();
    CountingGroup* group = owned.get();
    std::atomic<bool> fail_next{false};
    kl::ShardedBackend split(
        config, plan,
        [&](int g, kl::ShardLinks links) {
            EXPECT_EQ(links.group, group) << "shard " << g;
            auto sum = links.sum;
            links.sum = [g, sum, &fail_next](float* v, size_t n) {
                if (g == 1 && fail_next.exchange(false))
                    kl::fail(kl::Status::Internal, "shard failure injected by the test");
                sum(v, n);
            };
            return kl::cpu::create_shard(config, layout, plan, g, kl::random_tensor_source(kSeed),
                                         std::move(links), 1);
        },
        std::move(owned));
    const auto whole = random_model(config, 1);
    const auto prompt = random_tokens(9, config.vocab_size, 3);
    const std::atomic<bool> cancel{false};
    auto state = split.create_state(32);
    split.forward(*state, 0, prompt.data(), prompt.size(), nullptr, nullptr, cancel);
    EXPECT_EQ(group->aborts, 0);
    EXPECT_EQ(group->resets, 0);

    fail_next = true;
    try {
        split.forward(*state, prompt.size(), prompt.data(), 1, nullptr, nullptr, cancel);
        ADD_FAILURE() << "the injected failure did not fail the step";
    } catch (const kl::Error& e) {
        EXPECT_EQ(e.status(), kl::Status::Internal) << "the root cause, not the others' Cancelled";
    }
    EXPECT_EQ(group->aborts, 1);
    EXPECT_EQ(group->resets, 1);

    // Shard 0 samples: greedy picks the whole model's argmax for the same prompt.
    kl::Session session(*whole, 0);
    session.append(prompt.data(), prompt.size(), nullptr);
    const std::vector<float> want = session.last_logits();
    kl::SamplingParams greedy;
    greedy.temperature = 0.0f;
    const int32_t token = split.sample(*state, greedy, prompt.data(), prompt.size(), prompt.size());
    EXPECT_EQ(token, std::max_element(want.begin(), want.end()) - want.begin());
    int32_t batch[2] = {-1, -1};
    const kl::BackendState* states[2] = {state.get(), state.get()};
    const kl::SamplingParams params[2] = {greedy, greedy};
    const int32_t* histories[2] = {prompt.data(), prompt.data()};
    const size_t lens[2] = {prompt.size(), prompt.size()};
    const uint64_t positions[2] = {prompt.size(), prompt.size()};
    split.sample_batch(states, params, histories, lens, positions, 2, batch);
    EXPECT_EQ(batch[0], token);
    EXPECT_EQ(batch[1], token);
}

}  // namespace
