// Device sampling against kl::sample_token: the identical token on fresh random rows over the
// parameter grid, and on hard rows (exact ties, all-equal, +-0, -inf and +inf, huge spread,
// near-equal values, vocab sizes that are no multiple of a block), with random histories that
// repeat tokens and hold ids outside the vocabulary.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "backends/cuda/ops.h"
#include "core/error.h"
#include "core/sampler.h"
#include "gpu_test_util.h"

namespace {

class GpuSampling : public ::testing::Test {
    void SetUp() override {
        if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
    }
};

// One vocabulary size's device buffers, reused across cases.
struct DeviceSampler {
    explicit DeviceSampler(size_t vocab_size)
        : vocab(vocab_size),
          logits(vocab_size),
          workspace(kl::cuda::sampling_workspace_bytes(vocab_size)),
          token(1) {}

    int32_t sample(const std::vector<float>& row, const kl::SamplingParams& p,
                   const std::vector<int32_t>& history, uint64_t position) {
        cudaMemcpy(logits.ptr, row.data(), vocab * sizeof(float), cudaMemcpyHostToDevice);
        Dev<int32_t> dev_history(history);
        const int32_t poison = -7;
        cudaMemcpy(token.ptr, &poison, sizeof(poison), cudaMemcpyHostToDevice);
        kl::cuda::sample_token_on_device(logits.ptr, vocab, p,
                                         history.empty() ? nullptr : dev_history.ptr,
                                         history.size(), position, workspace.ptr, token.ptr,
                                         nullptr);
        const cudaError_t status = cudaDeviceSynchronize();
        EXPECT_EQ(status, cudaSuccess) << cudaGetErrorString(status);
        return token.get()[0];
    }

    size_t vocab;
    Dev<float> logits;
    Dev<unsigned char> workspace;
    Dev<int32_t> token;
};

// Tokens drawn mostly from the highest-scoring ids (so the penalty changes the outcome),
// with repeats, some random ids and some outside [0, vocab) that both sides must skip.
std::vector<int32_t> make_history(const std::vector<float>& row, size_t length, std::mt19937_64& rng) {
    const size_t vocab = row.size();
    std::vector<int32_t> order(vocab);
    std::iota(order.begin(), order.end(), 0);
    const size_t pool = std::min<size_t>(vocab, 64);
    std::partial_sort(order.begin(), order.begin() + pool, order.end(),
                      [&](int32_t a, int32_t b) { return row[a] > row[b]; });
    std::vector<int32_t> history(length);
    for (int32_t& token : history) {
        const uint64_t r = rng() % 10;
        if (r < 6)
            token = order[rng() % pool];
        else if (r < 9)
            token = static_cast<int32_t>(rng() % vocab);
        else
            token = (rng() & 1) ? -1 : static_cast<int32_t>(vocab + rng() % 100);
    }
    return history;
}

std::string describe(size_t vocab, const kl::SamplingParams& p, size_t history_len,
                     uint64_t position, const std::string& row_kind) {
    std::ostringstream s;
    s << "vocab=" << vocab << " row=" << row_kind << " T=" << p.temperature
      << " top_k=" << p.top_k << " top_p=" << p.top_p << " min_p=" << p.min_p
      << " penalty=" << p.repetition_penalty << " window=" << p.repetition_window
      << " history=" << history_len << " seed=" << p.seed << " position=" << position;
    return s.str();
}

struct Grid {
    std::vector<float> temperatures{0.0f, 0.3f, 1.0f, 2.0f};
    std::vector<int32_t> top_ks{0, 1, 40, 1000};
    std::vector<float> top_ps{1.0f, 0.9f, 0.5f};
    std::vector<float> min_ps{0.0f, 0.05f};
    std::vector<std::pair<float, int32_t>> penalties{{1.0f, 0}, {1.3f, 0}, {1.3f, 64}};

    template <typename Fn>
    void for_each(Fn fn) const {
        for (float t : temperatures)
            for (int32_t k : top_ks)
                for (float tp : top_ps)
                    for (float mp : min_ps)
                        for (const auto& [penalty, window] : penalties) {
                            kl::SamplingParams p;
                            p.temperature = t;
                            p.top_k = k;
                            p.top_p = tp;
                            p.min_p = mp;
                            p.repetition_penalty = penalty;
                            p.repetition_window = window;
                            fn(p);
                        }
    }
};

TEST_F(GpuSampling, MatchesCpuOnRandomRowsOverTheParameterGrid) {
    for (size_t vocab : {163840, 1000, 7}) {
        DeviceSampler dev(vocab);
        std::mt19937_64 rng(vocab);
        std::set<int32_t> distinct;
        int cases = 0;
        Grid().for_each([&](kl::SamplingParams p) {
            const float scale = std::array<float, 3>{1.0f, 2.5f, 6.0f}[cases % 3];
            const auto row = randn(vocab, static_cast<uint32_t>(rng()), scale);
            const auto history = make_history(row, 40 + rng() % 400, rng);
            p.seed = rng();
            const uint64_t position = rng() % 1000000;
            const int32_t want = kl::sample_token(row.data(), vocab, p, history.data(),
                                                  history.size(), position);
            const int32_t got = dev.sample(row, p, history, position);
            EXPECT_EQ(got, want) << describe(vocab, p, history.size(), position, "randn");
            distinct.insert(got);
            ++cases;
        });
        EXPECT_EQ(cases, 288);
        // The grid must exercise the draw, not only the argmax.
        if (vocab > 100) {
            EXPECT_GT(distinct.size(), 50u) << "vocab=" << vocab;
        }
    }
}

// Hard rows. kinds: all +-0, all equal, integer ties, -inf holes, all -inf, two +inf,
// huge spread, adjacent floats.
std::vector<float> hard_row(int kind, size_t vocab, std::mt19937_64& rng, std::string* name) {
    const float inf = std::numeric_limits<float>::infinity();
    std::vector<float> row = randn(vocab, static_cast<uint32_t>(rng()));
    switch (kind) {
        case 0:
            *name = "signed_zeros";
            for (float& x : row) x = (rng() & 1) ? 0.0f : -0.0f;
            break;
        case 1:
            *name = "all_equal";
            for (float& x : row) x = 1.5f;
            break;
        case 2:
            *name = "integer_ties";
            for (float& x : row) x = std::round(x * 2.0f);
            break;
        case 3:
            *name = "neg_inf_holes";
            for (float& x : row)
                if (rng() % 10 < 3) x = -inf;
            break;
        case 4:
            *name = "all_neg_inf";
            for (float& x : row) x = -inf;
            break;
        case 5:
            *name = "two_pos_inf";
            row[rng() % vocab] = inf;
            row[rng() % vocab] = inf;
            break;
        case 6:
            *name = "huge_spread";
            for (float& x : row) x *= 1000.0f;
            break;
        default:
            *name = "adjacent_floats";
            for (float& x : row) {
                x = 1.0f;  // 1 and the next three floats above it
                for (uint64_t steps = rng() % 4; steps > 0; --steps) x = std::nextafter(x, 2.0f);
            }
            break;
    }
    return row;
}

TEST_F(GpuSampling, MatchesCpuOnHardRows) {
    constexpr int kKinds = 8;
    for (size_t vocab : {163840, 4099, 1000, 7}) {
        DeviceSampler dev(vocab);
        std::mt19937_64 rng(vocab + 17);
        std::vector<kl::SamplingParams> grid;
        Grid g;
        g.penalties = {{1.0f, 0}, {1.3f, 64}};
        g.for_each([&](const kl::SamplingParams& p) { grid.push_back(p); });
        for (int kind = 0; kind < kKinds; ++kind) {
            std::string name;
            const auto row = hard_row(kind, vocab, rng, &name);
            // The full grid on small rows; on the real vocabulary a random share of it plus
            // the cuts that land exactly on tie boundaries (top-p 0.5, min-p over ties).
            std::vector<kl::SamplingParams> cases;
            if (vocab <= 4099) {
                cases = grid;
            } else {
                for (int i = 0; i < 40; ++i) cases.push_back(grid[rng() % grid.size()]);
                for (float tp : {0.5f, 0.9f, 1.0f})
                    for (float mp : {0.0f, 0.05f}) {
                        kl::SamplingParams p;
                        p.temperature = 1.0f;
                        p.top_p = tp;
                        p.min_p = mp;
                        cases.push_back(p);
                    }
            }
            for (kl::SamplingParams p : cases) {
                const auto history = make_history(row, 200, rng);
                p.seed = rng();
                const uint64_t position = rng() % 1000000;
                const int32_t want = kl::sample_token(row.data(), vocab, p, history.data(),
                                                      history.size(), position);
                const int32_t got = dev.sample(row, p, history, position);
                EXPECT_EQ(got, want) << describe(vocab, p, history.size(), position, name);
            }
        }
    }
}

// A long history: only the window is read, and window 0 means all of it.
TEST_F(GpuSampling, MatchesCpuWithLongHistory) {
    const size_t vocab = 163840;
    DeviceSampler dev(vocab);
    std::mt19937_64 rng(99);
    for (int32_t window : {0, 256, 100000})
        for (float temperature : {0.0f, 1.0f})
            for (float penalty : {1.3f, 0.8f}) {
                const auto row = randn(vocab, static_cast<uint32_t>(rng()), 2.5f);
                const auto history = make_history(row, size_t{1} << 20, rng);
                kl::SamplingParams p;
                p.temperature = temperature;
                p.top_k = 40;
                p.repetition_penalty = penalty;
                p.repetition_window = window;
                p.seed = rng();
                const uint64_t position = rng();
                const int32_t want = kl::sample_token(row.data(), vocab, p, history.data(),
                                                      history.size(), position);
                EXPECT_EQ(dev.sample(row, p, history, position), want)
                    << describe(vocab, p, history.size(), position, "randn");
            }
}

void expect_status(const std::function<void()>& fn, kl::Status status, const char* what) {
    try {
        fn();
        ADD_FAILURE() << what << ": no error";
    } catch (const kl::Error& e) {
        EXPECT_EQ(e.status(), status) << what << ": " << e.what();
    }
}

TEST_F(GpuSampling, RejectsBadArguments) {
    const size_t vocab = 100;
    DeviceSampler dev(vocab);
    kl::SamplingParams ok;
    ok.temperature = 1.0f;
    auto call = [&](const kl::SamplingParams& p, size_t v, void* workspace,
                    const int32_t* history, size_t history_len) {
        return [=, &dev] {
            kl::cuda::sample_token_on_device(dev.logits.ptr, v, p, history, history_len, 0,
                                             workspace, dev.token.ptr, nullptr);
        };
    };
    kl::SamplingParams bad = ok;
    bad.top_p = 0.0f;
    expect_status(call(bad, vocab, dev.workspace.ptr, nullptr, 0), kl::Status::InvalidArgument,
                  "top_p 0");
    bad = ok;
    bad.temperature = -1.0f;
    expect_status(call(bad, vocab, dev.workspace.ptr, nullptr, 0), kl::Status::InvalidArgument,
                  "temperature -1");
    expect_status(call(ok, 0, dev.workspace.ptr, nullptr, 0), kl::Status::InvalidArgument,
                  "vocab 0");
    expect_status(call(ok, vocab, nullptr, nullptr, 0), kl::Status::InvalidArgument,
                  "null workspace");
    bad = ok;
    bad.repetition_penalty = 1.3f;
    expect_status(call(bad, vocab, dev.workspace.ptr, nullptr, 5), kl::Status::InvalidArgument,
                  "null history");
    expect_status([] { kl::cuda::sampling_workspace_bytes(0); }, kl::Status::InvalidArgument,
                  "workspace of vocab 0");
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace
