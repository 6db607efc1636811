// CUDA shards (backends/cuda/cuda_shard.cu, docs/design/sharding.md "CUDA shards") against
// the unsplit CUDA model. On one GPU, a group of one: the shard's path (its weights through
// the plan, the NCCL sums and the logits' gather captured in the graphs, the experts' mask,
// the cancel vote, an aborted step, the communicators and graphs made again) must give the
// unsplit model's logits.
// On two GPUs or more, the model split over two: logits within bf16 tolerance of the one-GPU
// model, the same greedy tokens, batched decode and a cancelled step. Skipped without a GPU
// or without NCCL (KL_NCCL_LIBRARY), saying which.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <random>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/nccl_group.h"
#include "compare.h"
#include "core/error.h"
#include "core/model.h"
#include "core/session.h"
#include "core/shard_plan.h"
#include "core/sharded_backend.h"
#include "core/weight_store.h"
#include "gpu_test_util.h"
#include "random_tokens.h"
#include "tiny_config.h"

namespace {

constexpr uint64_t kSeed = 5;

// 4 KDA and 4 MLA heads, a vocabulary that splits unevenly (258 = 129 + 129 over two, and
// over one the whole), three experts per token of 8.
kl::ModelConfig shard_config() {
    kl::ModelConfig c = kl::test::tiny_config();
    c.num_attention_heads = 4, c.kda_num_heads = 4, c.vocab_size = 258;
    c.num_experts_per_token = 3;
    c.validate("shard test");
    return c;
}

std::string why_not() {
    if (!have_gpu()) return "no CUDA device";
    try {
        kl::cuda::open_nccl(kl::cuda::nccl_library_path());
    } catch (const kl::Error& e) {
        return e.what();
    }
    return "";
}

// KL_CUDA_SHARDS=1 for the test's lifetime (create_shard_group asks for it).
struct OptIn {
    OptIn() { setenv("KL_CUDA_SHARDS", "1", 1); }
    ~OptIn() { unsetenv("KL_CUDA_SHARDS"); }
};

using kl::test::random_tokens;

// Every position's logits of a prefill, then those of decode steps, then of one batched step
// of two states (the first state's and a fresh one's after the first prompt token).
std::vector<float> run(const kl::Backend& backend, size_t vocab, const std::vector<int32_t>& prompt,
                       const std::vector<int32_t>& steps) {
    const std::atomic<bool> go{false};
    auto state = backend.create_state(64);
    std::vector<float> out(prompt.size() * vocab), last(vocab);
    backend.forward(*state, 0, prompt.data(), prompt.size(), nullptr, out.data(), go);
    uint64_t position = prompt.size();
    for (int32_t t : steps) {
        backend.forward(*state, position++, &t, 1, last.data(), nullptr, go);
        out.insert(out.end(), last.begin(), last.end());
    }
    auto other = backend.create_state(64);
    backend.forward(*other, 0, prompt.data(), 1, nullptr, nullptr, go);
    kl::BackendState* states[] = {state.get(), other.get()};
    const uint64_t positions[] = {position, 1};
    const int32_t tokens[] = {steps[0], steps[1]};
    backend.forward_batch(states, positions, tokens, 2);
    for (kl::BackendState* s : states) {
        backend.read_logits(*s, last.data());
        out.insert(out.end(), last.begin(), last.end());
    }
    return out;
}

TEST(GpuShards, AGroupOfOneRunsAsTheUnsplitModel) {
    const std::string why = why_not();
    if (!why.empty()) GTEST_SKIP() << why;
    OptIn opt_in;
    const kl::ModelConfig config = shard_config();
    const kl::ModelLayout layout(config);
    const kl::ShardPlan plan(config, layout, 1);
    const auto store = kl::WeightStore::random(layout, kSeed, kl::WeightRequest::AsStored);
    const kl::BackendProvider& provider = kl::cuda::backend_provider();
    ASSERT_TRUE(provider.create_shard && provider.create_shard_group);
    kl::BackendOptions options;
    const auto whole = provider.create_from_store(config, layout, *store, options);
    kl::ShardedBackend split(
        config, plan,
        [&](int g, kl::ShardLinks links) {
            return provider.create_shard(config, layout, *store, plan, g, std::move(links),
                                         options);
        },
        provider.create_shard_group({0}));
    const size_t vocab = size_t(config.vocab_size);
    const auto prompt = random_tokens(37, config.vocab_size, 1);
    const auto steps = random_tokens(3, config.vocab_size, 2);
    const std::vector<float> want = run(*whole, vocab, prompt, steps);
    // The same kernels on the same values (the sums over one rank copies, the logits through
    // the gather's buffers): equal.
    EXPECT_LE(kl::test::rel_error(run(split, vocab, prompt, steps), want), 1e-6);

    // A cancelled step fails on the shard's vote, aborts the communicators (made again after
    // it, so the decode graphs are captured again) and leaves the state as it was.
    auto state = split.create_state(64);
    const std::atomic<bool> go{false}, stop{true};
    split.forward(*state, 0, prompt.data(), prompt.size(), nullptr, nullptr, go);
    try {
        split.forward(*state, prompt.size(), steps.data(), 1, nullptr, nullptr, stop);
        ADD_FAILURE() << "a cancelled step ran";
    } catch (const kl::Error& e) {
        EXPECT_EQ(e.status(), kl::Status::Cancelled) << e.what();
    }
    std::vector<float> after(vocab);
    split.forward(*state, prompt.size(), steps.data(), 1, after.data(), nullptr, go);
    const std::vector<float> first_step(want.begin() + long(prompt.size() * vocab),
                                        want.begin() + long((prompt.size() + 1) * vocab));
    EXPECT_LE(kl::test::rel_error(after, first_step), 1e-6);
}

std::unique_ptr<kl::Model> random_model(const std::vector<int>& devices) {
    kl::ModelLoadOptions options;
    options.device = kl::DeviceRequest::Cuda;
    options.devices = devices;
    return kl::Model::create_random(shard_config(), kSeed, options);
}

TEST(GpuShards, TwoGpusGiveTheOneGpuModelsLogitsAndTokens) {
    std::string why = why_not();
    if (why.empty() && kl::cuda::backend_provider().device_count() < 2) why = "fewer than 2 GPUs";
    if (!why.empty()) GTEST_SKIP() << why;
    {
        kl::ModelLoadOptions options;  // refused without the opt-in, saying why
        options.device = kl::DeviceRequest::Cuda;
        options.devices = {0, 1};
        try {
            kl::Model::create_random(shard_config(), kSeed, options);
            ADD_FAILURE() << "a split CUDA model loaded without KL_CUDA_SHARDS=1";
        } catch (const kl::Error& e) {
            EXPECT_EQ(e.status(), kl::Status::Unsupported);
            EXPECT_NE(std::string(e.what()).find("KL_CUDA_SHARDS=1"), std::string::npos);
        }
    }
    OptIn opt_in;
    const auto one = random_model({0}), two = random_model({0, 1});
    EXPECT_EQ(two->fingerprint(), one->fingerprint());
    const kl::ModelConfig config = shard_config();
    const size_t vocab = size_t(config.vocab_size);
    const auto prompt = random_tokens(50, config.vocab_size, 3);
    kl::Session a(*one, 0), b(*two, 0);
    std::vector<float> want(prompt.size() * vocab), got(want.size());
    a.append(prompt.data(), prompt.size(), want.data());
    b.append(prompt.data(), prompt.size(), got.data());
    // bf16 activations summed in another order (two partial sums per block): 1e-2 of the
    // largest logit, as the GPU's prefill against its own decode.
    EXPECT_LE(kl::test::rel_error(got, want), 1e-2) << "prefill";
    for (int i = 0; i < 8; ++i) {  // greedy decode: the same tokens
        const auto la = a.last_logits(), lb = b.last_logits();
        const int32_t ta = int32_t(std::max_element(la.begin(), la.end()) - la.begin());
        const int32_t tb = int32_t(std::max_element(lb.begin(), lb.end()) - lb.begin());
        ASSERT_EQ(tb, ta) << "step " << i;
        EXPECT_LE(kl::test::rel_error(lb, la), 1e-2) << "step " << i;
        a.append(&ta, 1, nullptr);
        b.append(&tb, 1, nullptr);
    }
    auto a2 = a.fork(), b2 = b.fork();
    kl::Session* as[] = {&a, a2.get()};
    kl::Session* bs[] = {&b, b2.get()};
    const int32_t tokens[] = {prompt[0], prompt[1]};
    kl::Session::append_batch(as, tokens, 2);
    kl::Session::append_batch(bs, tokens, 2);
    for (int i = 0; i < 2; ++i)
        EXPECT_LE(kl::test::rel_error(bs[i]->last_logits(), as[i]->last_logits()), 1e-2)
            << "batched row " << i;
}

}  // namespace
