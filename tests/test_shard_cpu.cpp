// A model split over G shards (core/shard_plan.h, docs/design/sharding.md), each shard a CPU
// backend (kl::cpu::create_shard) on its own thread, the shards meeting through an in-process
// sum and gather: its logits equal the unsplit CPU model's to 1e-5 (fp32 sums of the same
// products in another order), for a prefill and for the decode steps after it, over 1, 2
// and 4 shards, with separate and tied embeddings (issue 16, item 3).
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "compare.h"
#include "core/model.h"
#include "core/session.h"
#include "core/shard_plan.h"
#include "core/weights.h"
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

// G threads in lockstep: each sum and gather is two barriers, every shard adding the parts
// in shard order, so all of them hold the same bits afterwards.
class InProcessLinks {
public:
    InProcessLinks(const kl::ShardPlan& plan, size_t vocab)
        : plan_(plan), vocab_(vocab), parts_(static_cast<size_t>(plan.shards())) {}

    kl::cpu::ShardLinks links(int shard) {
        kl::cpu::ShardLinks l;
        l.sum = [this, shard](float* values, size_t count) {
            parts_[size_t(shard)] = values;
            arrive();
            std::vector<float> total(count, 0.0f);
            for (const float* part : parts_)
                for (size_t i = 0; i < count; ++i) total[i] += part[i];
            arrive();  // every shard has read every part: each may overwrite its own
            std::copy(total.begin(), total.end(), values);
        };
        l.gather = [this, shard](const float* part, size_t rows, float* whole) {
            parts_[size_t(shard)] = part;
            arrive();
            for (int g = 0; g < plan_.shards(); ++g) {
                const auto [begin, end] = plan_.vocab(g);
                const size_t width = size_t(end - begin);
                for (size_t r = 0; r < rows; ++r)
                    std::copy(parts_[size_t(g)] + r * width, parts_[size_t(g)] + (r + 1) * width,
                              whole + r * vocab_ + size_t(begin));
            }
            arrive();
        };
        return l;
    }

private:
    void arrive() {
        std::unique_lock<std::mutex> lock(mutex_);
        const uint64_t generation = generation_;
        if (++waiting_ == plan_.shards()) {
            waiting_ = 0;
            ++generation_;
            cv_.notify_all();
        } else {
            cv_.wait(lock, [&] { return generation_ != generation; });
        }
    }

    const kl::ShardPlan& plan_;
    size_t vocab_;
    std::vector<const float*> parts_;
    std::mutex mutex_;
    std::condition_variable cv_;
    int waiting_ = 0;
    uint64_t generation_ = 0;
};

// The split model's logits for `tokens` (every position) and then for `steps` one at a time:
// [tokens.size() + steps.size(), vocab], as the unsplit session's below.
std::vector<float> run_split(const kl::ModelConfig& config, int shards,
                             const std::vector<int32_t>& tokens,
                             const std::vector<int32_t>& steps) {
    const kl::ModelLayout layout(config);
    const kl::ShardPlan plan(config, layout, shards);
    const size_t vocab = size_t(config.vocab_size);
    InProcessLinks links(plan, vocab);
    std::vector<std::unique_ptr<kl::Backend>> backends;
    for (int g = 0; g < shards; ++g)
        backends.push_back(kl::cpu::create_shard(
            config, layout, plan, g, kl::random_tensor_source(kSeed), links.links(g), 1));
    std::vector<std::vector<float>> logits(static_cast<size_t>(shards));
    std::vector<std::thread> threads;
    for (int g = 0; g < shards; ++g)
        threads.emplace_back([&, g] {
            const kl::Backend& backend = *backends[size_t(g)];
            const std::atomic<bool> cancel{false};
            auto state = backend.create_state(tokens.size() + steps.size() + 1);
            std::vector<float>& out = logits[size_t(g)];
            out.resize((tokens.size() + steps.size()) * vocab);
            backend.forward(*state, 0, tokens.data(), tokens.size(), nullptr, out.data(), cancel);
            for (size_t i = 0; i < steps.size(); ++i)
                backend.forward(*state, tokens.size() + i, &steps[i], 1,
                                out.data() + (tokens.size() + i) * vocab, nullptr, cancel);
        });
    for (std::thread& t : threads) t.join();
    for (int g = 1; g < shards; ++g)
        EXPECT_EQ(logits[size_t(g)], logits[0]) << "shard " << g << " differs from shard 0";
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

std::vector<int32_t> random_tokens(size_t n, int64_t vocab, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> pick(0, int32_t(vocab - 1));
    std::vector<int32_t> t(n);
    for (int32_t& v : t) v = pick(rng);
    return t;
}

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

}  // namespace
