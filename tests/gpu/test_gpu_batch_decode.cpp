// The CUDA backend's batched decode (CudaBackend::forward_batch, sample_batch) against its
// single-session paths: n = 1, 3, 8, 64 sessions of one model at mixed positions (a few
// tokens, a few hundred, a few thousand through fill_synthetic), each advanced by one token
// in one batched pass, against forward() of the same token on a clone of each state. Models:
// tiny (KDA D=16, the fp32 MLA path), small (D=32, tensor-core MLA, grouped MoE routing),
// 100m (D=128, rank 256), and all-dense variants, where no router can flip a near-tie; the
// pass's CUDA graph against the eager pass; more sessions than one pass takes.
// Skipped (GTEST_SKIP) without a usable GPU.
//
// Tolerances (max |diff| / max |want| per row): the batch runs other GEMM shapes (cuBLASLt
// instead of GEMVs above 4 rows), the grouped MoE and fewer MLA splits, so its bf16
// activations round differently from the single path's: the median row within 1e-2 (the
// GPU self-consistency tolerance of test_gpu_model.cpp) and, on a dense model, every row
// within the bf16 tolerance 3e-2 of the whole-model tests; with routing a near-tie may pick
// another expert in one of the two, so 7 of 8 rows within 3e-2.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backends/cuda/cuda_backend.h"
#include "compare.h"
#include "core/error.h"
#include "core/model.h"
#include "core/sampler.h"
#include "gpu_test_util.h"
#include "random_tokens.h"
#include "tiny_model.h"

namespace {

constexpr double kSelfTolerance = 1e-2;
constexpr double kBf16Tolerance = 3e-2;

using kl::test::rel_error;

std::unique_ptr<kl::Model> load_gpu(const std::string& dir) {
    kl::ModelLoadOptions options;
    options.device = kl::DeviceRequest::Cuda;
    return kl::Model::load(dir, options);
}

using kl::test::random_tokens;

// n sessions at mixed positions: i % 3 == 0 a few tokens, 1 a few hundred (prefill), 2 a few
// thousand (synthetic). Their tokens are kept, for the sampler's history.
struct Sessions {
    Sessions(const kl::Backend& b, size_t vocab, size_t n, uint32_t seed) {
        const std::atomic<bool> never(false);
        for (size_t i = 0; i < n; ++i) {
            states.push_back(b.create_state(kCapacity));
            std::vector<int32_t> tokens;
            uint64_t position = 0;
            if (i % 3 == 2) {
                position = 2900 + 17 * i;  // < kCapacity - 3; spread over blocks and splits
                b.fill_synthetic(*states.back(), position, seed + i);
                tokens = random_tokens(position, int64_t(vocab), seed + 7 * uint32_t(i));
            } else {
                position = i % 3 == 0 ? 1 + i % 4 : 150 + 13 * i;
                tokens = random_tokens(position, int64_t(vocab), seed + 7 * uint32_t(i));
                b.forward(*states.back(), 0, tokens.data(), tokens.size(), nullptr, nullptr, never);
            }
            positions.push_back(position);
            histories.push_back(std::move(tokens));
        }
    }
    std::vector<kl::BackendState*> pointers() {
        std::vector<kl::BackendState*> p;
        for (auto& s : states) p.push_back(s.get());
        return p;
    }
    static constexpr uint64_t kCapacity = 4096;
    std::vector<std::unique_ptr<kl::BackendState>> states;
    std::vector<uint64_t> positions;
    std::vector<std::vector<int32_t>> histories;
};

// Per row: max |diff| / max |want|, sorted ascending; and whether the argmax agrees wherever
// the top two of `want` are clearly apart (more than twice the bf16 tolerance).
struct Comparison {
    std::vector<double> errors;
    size_t argmax_checked = 0, argmax_mismatches = 0;
    // routed: a row beyond the bf16 tolerance took another expert (see expect()), so its
    // argmax is not compared.
    void add(const std::vector<float>& got, const std::vector<float>& want, bool routed) {
        errors.push_back(rel_error(got, want));
        if (routed && errors.back() > kBf16Tolerance) return;
        std::vector<float> sorted = want;
        std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<>());
        double scale = 1e-12;
        for (float w : want) scale = std::max(scale, std::fabs(double(w)));
        if (sorted[0] - sorted[1] > 2 * kBf16Tolerance * scale) {
            ++argmax_checked;
            argmax_mismatches += std::max_element(got.begin(), got.end()) - got.begin() !=
                                 std::max_element(want.begin(), want.end()) - want.begin();
        }
    }
    void expect(bool routed, const std::string& where) {
        std::sort(errors.begin(), errors.end());
        const double median = errors[errors.size() / 2], p90 = errors[errors.size() * 9 / 10];
        EXPECT_LE(median, kSelfTolerance) << where << ": median row";
        // Routed models: a batch of more than kDecodeTokens rows runs the experts as a grouped
        // GEMM where one session runs GEMVs, so the router's input differs in its last bf16
        // bits and a near-tie between two experts (random weights have many) can send a row
        // to another expert, and the next step (its state differing in the same last bits)
        // may do it for another row: at most one row in eight, and two rows in any batch, may
        // differ by more than the bf16 tolerance (measured on the H200: 1-2 of 8, 1-3 of 64;
        // on an H100, whose GEMMs split otherwise, 7 of 64 on the small model, 2026-12-05;
        // the trained demo model answers alike through batches: tools/train/evaluate.py).
        const size_t over = static_cast<size_t>(
            errors.end() - std::upper_bound(errors.begin(), errors.end(), kBf16Tolerance));
        if (routed)
            EXPECT_LE(over, std::max<size_t>(2, errors.size() / 8))
                << where << ": rows beyond the bf16 tolerance (p90 " << p90 << ")";
        else
            EXPECT_LE(errors.back(), kBf16Tolerance) << where << ": worst row";
        EXPECT_EQ(argmax_mismatches, 0u) << where << " (" << argmax_checked << " rows checked)";
        std::printf("[ gpu batch ] %s: rows %zu, median %.2e p90 %.2e max %.2e, argmax %zu/%zu\n",
                    where.c_str(), errors.size(), median, p90, errors.back(),
                    argmax_checked - argmax_mismatches, argmax_checked);
    }
};

struct BatchCase {
    const char* name;
    bool routed;
};

std::ostream& operator<<(std::ostream& os, const BatchCase& c) {
    return os << c.name;
}

std::string model_dir(const std::string& name) {
    if (name == "tiny") return kl::test::tiny_model_dir("--preset tiny --seed 1");
    if (name == "small") return kl::test::tiny_model_dir("--preset small --seed 3");
    if (name == "100m") return kl::test::tiny_model_dir("--preset 100m --seed 4");
    if (name == "tiny_dense") return dense_model_dir("tiny", 4, 6);
    return dense_model_dir("small", 8, 8);  // small_dense
}

class GpuBatchDecode : public ::testing::TestWithParam<BatchCase> {
protected:
    void SetUp() override {
        if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
    }
};

// forward_batch of n sessions == forward() of each token on a clone; afterwards the states
// equal (a further forward() on both agrees), and a second batched step in another row order
// gives the same rows.
TEST_P(GpuBatchDecode, EqualsForwardPerSessionOnClones) {
    const BatchCase c = GetParam();
    auto model = load_gpu(model_dir(c.name));
    const kl::Backend& b = model->backend();
    const size_t vocab = model->config().vocab_size;
    const std::atomic<bool> never(false);
    ASSERT_EQ(b.device(), kl::DeviceKind::Cuda);
    for (size_t n : {1, 3, 8, 64}) {
        const std::string where = std::string(c.name) + " n=" + std::to_string(n);
        Sessions s(b, vocab, n, uint32_t(100 + n));
        std::vector<std::unique_ptr<kl::BackendState>> twins;
        for (auto& st : s.states) twins.push_back(b.clone_state(*st));
        const std::vector<int32_t> tokens = random_tokens(n, int64_t(vocab), uint32_t(n));

        Comparison step1, step2, reordered;
        std::vector<float> want(vocab);
        for (size_t i = 0; i < n; ++i)
            b.forward(*twins[i], s.positions[i], &tokens[i], 1, want.data(), nullptr, never);
        auto pointers = s.pointers();
        b.forward_batch(pointers.data(), s.positions.data(), tokens.data(), n);
        for (size_t i = 0; i < n; ++i)
            step1.add(logits_of(b, *s.states[i], vocab), logits_of(b, *twins[i], vocab), c.routed);
        step1.expect(c.routed, where + " step");

        // The states equal: one more token through forward() on both.
        const std::vector<int32_t> next = random_tokens(n, int64_t(vocab), uint32_t(n + 50));
        for (size_t i = 0; i < n; ++i) {
            b.forward(*s.states[i], s.positions[i] + 1, &next[i], 1, nullptr, nullptr, never);
            b.forward(*twins[i], s.positions[i] + 1, &next[i], 1, nullptr, nullptr, never);
            step2.add(logits_of(b, *s.states[i], vocab), logits_of(b, *twins[i], vocab), c.routed);
        }
        step2.expect(c.routed, where + " next forward()");

        // Row order: a batched step of the clones in reverse order gives each session the
        // rows a batched step of the originals in order gives (same n, same kernels).
        std::vector<kl::BackendState*> fwd, rev;
        std::vector<uint64_t> pos_fwd, pos_rev;
        std::vector<int32_t> tok_fwd, tok_rev;
        const std::vector<int32_t> third = random_tokens(n, int64_t(vocab), uint32_t(n + 90));
        for (size_t i = 0; i < n; ++i) {
            fwd.push_back(s.states[i].get()), pos_fwd.push_back(s.positions[i] + 2);
            tok_fwd.push_back(third[i]);
            const size_t j = n - 1 - i;
            rev.push_back(twins[j].get()), pos_rev.push_back(s.positions[j] + 2);
            tok_rev.push_back(third[j]);
        }
        b.forward_batch(fwd.data(), pos_fwd.data(), tok_fwd.data(), n);
        b.forward_batch(rev.data(), pos_rev.data(), tok_rev.data(), n);
        // Equal up to the rounding differences the states already carry from step 1.
        for (size_t i = 0; i < n; ++i)
            reordered.add(logits_of(b, *s.states[i], vocab), logits_of(b, *twins[i], vocab),
                          c.routed);
        reordered.expect(c.routed, where + " reversed order");
    }
}

// sample_batch == sample() per state == the host sampler on the same logits, over greedy,
// top-k, top-p, min-p and penalty params (the penalty's history uploaded for the synthetic
// states, kept on the device for the others).
TEST_P(GpuBatchDecode, SampleBatchEqualsSamplePerState) {
    const BatchCase c = GetParam();
    auto model = load_gpu(model_dir(c.name));
    const kl::Backend& b = model->backend();
    const size_t vocab = model->config().vocab_size;
    const size_t n = 24;
    Sessions s(b, vocab, n, 77);
    std::vector<kl::SamplingParams> params(n);
    std::vector<const int32_t*> histories;
    std::vector<size_t> lens;
    for (size_t i = 0; i < n; ++i) {
        kl::SamplingParams& p = params[i];
        p.temperature = i % 4 == 0 ? 0.0f : 0.5f + 0.25f * float(i % 5);
        p.top_k = int32_t(i % 3 == 0 ? 0 : 1 + i % 7);
        p.top_p = i % 2 ? 0.8f : 1.0f;
        p.min_p = i % 5 == 1 ? 0.05f : 0.0f;
        p.repetition_penalty = i % 3 == 1 ? 1.3f : 1.0f;
        p.repetition_window = i % 6 == 1 ? 16 : 0;
        p.seed = 1000 + i;
        histories.push_back(s.histories[i].data());
        lens.push_back(s.histories[i].size());
    }
    auto pointers = s.pointers();
    std::vector<const kl::BackendState*> states(pointers.begin(), pointers.end());
    for (int round = 0; round < 2; ++round) {  // the second with the histories synced
        std::vector<int32_t> got(n, -1);
        b.sample_batch(states.data(), params.data(), histories.data(), lens.data(),
                       s.positions.data(), n, got.data());
        for (size_t i = 0; i < n; ++i) {
            EXPECT_EQ(got[i],
                      b.sample(*states[i], params[i], histories[i], lens[i], s.positions[i]))
                << c.name << " round " << round << " state " << i;
            // and the host sampler's pick from the same logits (core/sampler.cpp)
            const std::vector<float> logits = logits_of(b, *states[i], vocab);
            EXPECT_EQ(got[i], kl::sample_token(logits.data(), vocab, params[i], histories[i],
                                               lens[i], s.positions[i]))
                << c.name << " round " << round << " state " << i << " vs host sampler";
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Models, GpuBatchDecode,
                         ::testing::Values(BatchCase{"tiny", true}, BatchCase{"small", true},
                                           BatchCase{"100m", true}, BatchCase{"tiny_dense", false},
                                           BatchCase{"small_dense", false}),
                         [](const ::testing::TestParamInfo<BatchCase>& info) {
                             return std::string(info.param.name);
                         });

// More sessions than one pass takes (kMaxBatch = 256): the call runs them in groups and
// still matches forward() per clone.
TEST(GpuBatchDecodeGroups, MoreThanOnePass) {
    if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
    auto model = load_gpu(dense_model_dir("tiny", 4, 6));
    const kl::Backend& b = model->backend();
    const size_t vocab = model->config().vocab_size, n = 300;
    const std::atomic<bool> never(false);
    std::vector<std::unique_ptr<kl::BackendState>> states, twins;
    std::vector<kl::BackendState*> pointers;
    std::vector<uint64_t> positions;
    const std::vector<int32_t> tokens = random_tokens(n, int64_t(vocab), 5);
    for (size_t i = 0; i < n; ++i) {
        states.push_back(b.create_state(64));
        const std::vector<int32_t> prompt = random_tokens(1 + i % 5, int64_t(vocab), uint32_t(i));
        b.forward(*states.back(), 0, prompt.data(), prompt.size(), nullptr, nullptr, never);
        twins.push_back(b.clone_state(*states.back()));
        pointers.push_back(states.back().get());
        positions.push_back(prompt.size());
    }
    b.forward_batch(pointers.data(), positions.data(), tokens.data(), n);
    double worst = 0.0;
    for (size_t i = 0; i < n; ++i) {
        b.forward(*twins[i], positions[i], &tokens[i], 1, nullptr, nullptr, never);
        worst = std::max(
            worst, rel_error(logits_of(b, *states[i], vocab), logits_of(b, *twins[i], vocab)));
    }
    EXPECT_LE(worst, kBf16Tolerance);  // dense: every row (see the top of the file)

    // An empty batch changes nothing.
    const std::vector<float> before = logits_of(b, *states[0], vocab);
    b.forward_batch(pointers.data(), positions.data(), tokens.data(), 0);
    EXPECT_EQ(logits_of(b, *states[0], vocab), before);
}

// The batched pass runs as a CUDA graph per batch size from its second pass on (the first of
// each size runs eagerly), replayed with new tables; with KL_CUDA_PROFILE=1 it always runs
// eagerly. Both must give the same rows (the same kernels on the same inputs), for each n:
// the first pass, the pass that captures and a replay with other sessions at other
// positions.
TEST(GpuBatchDecodeGraphs, GraphReplaysEqualTheEagerPass) {
    if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
    const std::string dir = model_dir("small");
    auto graphs = load_gpu(dir);
    setenv("KL_CUDA_PROFILE", "1", 1);
    std::unique_ptr<kl::Model> eager;
    try {
        eager = load_gpu(dir);
    } catch (...) {
        unsetenv("KL_CUDA_PROFILE");
        throw;
    }
    unsetenv("KL_CUDA_PROFILE");
    const size_t vocab = graphs->config().vocab_size;
    for (size_t n : {3, 8, 64})
        for (uint32_t round = 0; round < 3; ++round) {  // eager, captured, replayed
            const uint32_t seed = uint32_t(300 + 10 * n + round);
            Sessions a(graphs->backend(), vocab, n, seed), b(eager->backend(), vocab, n, seed);
            const std::vector<int32_t> tokens = random_tokens(n, int64_t(vocab), seed);
            auto pa = a.pointers(), pb = b.pointers();
            graphs->backend().forward_batch(pa.data(), a.positions.data(), tokens.data(), n);
            eager->backend().forward_batch(pb.data(), b.positions.data(), tokens.data(), n);
            for (size_t i = 0; i < n; ++i)
                EXPECT_LE(rel_error(logits_of(graphs->backend(), *a.states[i], vocab),
                                    logits_of(eager->backend(), *b.states[i], vocab)),
                          1e-6)
                    << "n=" << n << " round " << round << " session " << i;
        }
}

}  // namespace
