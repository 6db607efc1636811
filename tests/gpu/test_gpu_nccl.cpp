// The NCCL layer of CUDA shards (backends/cuda/nccl_group.h): a missing or wrong library is
// a clear Unsupported, and a group of the visible GPUs sums and gathers as the host does,
// survives an abort and is usable again after reset(). Runs without a GPU as far as it can
// (the library checks); the collectives need a GPU and NCCL (KL_NCCL_LIBRARY), one GPU
// giving a group of one (NCCL refuses two ranks on one device).
#include <gtest/gtest.h>

#include <thread>

#include "backends/cuda/cuda_util.h"
#include "backends/cuda/nccl_group.h"
#include "core/error.h"
#include "gpu_test_util.h"

namespace {

using kl::Status;
using kl::cuda::NcclGroup;

Status status_of(const std::function<void()>& f, std::string* message = nullptr) {
    try {
        f();
    } catch (const kl::Error& e) {
        if (message) *message = e.what();
        return e.status();
    }
    return Status::Ok;
}

TEST(NcclLibrary, AMissingLibraryIsUnsupportedAndSaysWhereToGetIt) {
    std::string message;
    EXPECT_EQ(status_of([] { kl::cuda::open_nccl("/nonexistent/libnccl.so.2"); }, &message),
              Status::Unsupported);
    EXPECT_NE(message.find("/nonexistent/libnccl.so.2"), std::string::npos) << message;
    EXPECT_NE(message.find("nvidia-nccl-cu13"), std::string::npos) << message;
    EXPECT_NE(message.find("KL_NCCL_LIBRARY"), std::string::npos) << message;
}

TEST(NcclLibrary, ALibraryWithoutNcclIsUnsupportedNamingTheEntryPoint) {
    std::string message;
    EXPECT_EQ(status_of([] { kl::cuda::open_nccl("libc.so.6"); }, &message), Status::Unsupported);
    EXPECT_NE(message.find("lacks ncclGetVersion"), std::string::npos) << message;
}

TEST(NcclGroup, RefusesAnEmptyOrRepeatedDeviceListBeforeOpeningNccl) {
    std::string message;
    EXPECT_EQ(status_of([] { NcclGroup group({}); }), Status::InvalidArgument);
    EXPECT_EQ(status_of([] { NcclGroup group({0, 0}); }, &message), Status::InvalidArgument);
    EXPECT_NE(message.find("distinct"), std::string::npos) << message;
    EXPECT_EQ(status_of([] { NcclGroup group({-1}); }), Status::InvalidArgument);
}

// Up to 4 visible GPUs, or a skip saying what is missing.
std::vector<int> group_devices() {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) cudaGetLastError(), count = 0;
    std::vector<int> devices;
    for (int d = 0; d < std::min(count, 4); ++d) devices.push_back(d);
    return devices;
}

// Every rank's `step(rank)` on its own thread, as the shards run; the first error rethrown.
void on_every_rank(int ranks, const std::function<void(int)>& step) {
    std::vector<std::exception_ptr> errors(static_cast<size_t>(ranks));
    std::vector<std::thread> threads;
    for (int r = 0; r < ranks; ++r)
        threads.emplace_back([&, r] {
            try {
                kl::cuda::DeviceGuard guard(r);
                step(r);
            } catch (...) {
                errors[static_cast<size_t>(r)] = std::current_exception();
            }
        });
    for (std::thread& t : threads) t.join();
    for (const std::exception_ptr& e : errors)
        if (e) std::rethrow_exception(e);
}

TEST(NcclGroup, SumsAndGathersLikeTheHostAndRecoversFromAnAbort) {
    const std::vector<int> devices = group_devices();
    if (devices.empty()) GTEST_SKIP() << "no CUDA device";
    std::string why;
    if (status_of([] { kl::cuda::open_nccl(kl::cuda::nccl_library_path()); }, &why) != Status::Ok)
        GTEST_SKIP() << why;
    const int G = static_cast<int>(devices.size());
    NcclGroup group(devices);
    ASSERT_EQ(group.size(), G);
    const size_t count = 100003;  // odd: no multiple of NCCL's chunks
    std::vector<std::vector<float>> parts;
    for (int r = 0; r < G; ++r) parts.push_back(randn(count, 100 + static_cast<uint32_t>(r)));
    std::vector<float> expected(count, 0.0f);
    for (const auto& p : parts)
        for (size_t i = 0; i < count; ++i) expected[i] += p[i];

    auto run_sum_and_gather = [&] {
        std::vector<std::vector<float>> sums(static_cast<size_t>(G)), wholes(sums.size());
        on_every_rank(G, [&](int r) {
            const size_t i = static_cast<size_t>(r);
            cudaStream_t stream;
            kl::cuda::check(cudaStreamCreate(&stream), "stream");
            Dev<float> values(parts[i]), whole(G * count);
            group.sum(r, values.ptr, count, stream);
            group.gather(r, values.ptr, count, whole.ptr, stream);
            kl::cuda::check(cudaStreamSynchronize(stream), "collectives");
            cudaStreamDestroy(stream);
            sums[i] = values.get();
            wholes[i] = whole.get();
        });
        for (int r = 0; r < G; ++r) {
            const size_t i = static_cast<size_t>(r);
            for (size_t j = 0; j < count; j += 997)
                ASSERT_NEAR(sums[i][j], expected[j], 1e-5f * (1.0f + std::abs(expected[j])))
                    << "rank " << r << " value " << j;
            EXPECT_EQ(sums[i], sums[0]) << "every rank holds the same bits";
            for (int from = 0; from < G; ++from)
                EXPECT_TRUE(std::equal(sums[0].begin(), sums[0].end(),
                                       wholes[i].begin() + static_cast<ptrdiff_t>(from * count)))
                    << "rank " << r << " gathered part " << from;
        }
    };
    run_sum_and_gather();
    EXPECT_EQ(group.generation(), 0u);

    group.abort();
    std::string message;
    EXPECT_EQ(status_of(
                  [&] {
                      kl::cuda::DeviceGuard guard(devices[0]);
                      Dev<float> values(count);
                      group.sum(0, values.ptr, count, nullptr);
                  },
                  &message),
              Status::Cancelled);
    EXPECT_NE(message.find("abandoned"), std::string::npos) << message;
    group.reset();
    EXPECT_EQ(group.generation(), 1u);
    run_sum_and_gather();
}

}  // namespace
