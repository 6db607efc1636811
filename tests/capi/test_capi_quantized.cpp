// Quantized weights through the C API: kl_model_params.weight_format (an older struct_size
// reads as KL_WEIGHTS_AUTO, a value outside the enum is refused), kl_checkpoint_quantize's
// bad arguments and failures (a clear error, nothing left behind), and a quantized
// checkpoint asked of the CUDA backend.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "capi_test_support.h"
#include "kimi_linear.h"
#include "quantized_checkpoint_support.h"
#include "tiny_model.h"

namespace {

namespace fs = std::filesystem;
using kl::test::cpu_params;
using kl::test::expect_failure;
using kl::test::last_logits;
using kl::test::names_in;

// What a C caller could store in the enum: any int.
kl_weight_format weight_format_of(int value) {
    kl_weight_format format;
    std::memcpy(&format, &value, sizeof(value));
    return format;
}

TEST(CApiWeightFormat, AnOlderStructSizeLoadsTheWeightsAsStored) {
    const std::string dir = kl::test::tiny_model_dir();
    const std::vector<float> stored = last_logits(dir, KL_WEIGHTS_AUTO);
    ASSERT_FALSE(stored.empty());
    ASSERT_NE(last_logits(dir, KL_WEIGHTS_FP8), stored);  // FP8 would show
    // A caller compiled before weight_format: its struct ends there, what follows is not its.
    for (int past_the_end : {int(KL_WEIGHTS_FP8), 99}) {
        kl_model_params mp = cpu_params();
        mp.weight_format = weight_format_of(past_the_end);
        mp.struct_size = static_cast<uint32_t>(offsetof(kl_model_params, weight_format));
        EXPECT_EQ(last_logits(dir, mp), stored) << "bytes past struct_size: " << past_the_end;
    }
}

TEST(CApiWeightFormat, AValueOutsideTheEnumIsRefusedByName) {
    std::ifstream config_file(kl::test::tiny_model_dir() + "/config.json");
    const std::string config((std::istreambuf_iterator<char>(config_file)),
                             std::istreambuf_iterator<char>());
    for (int bad : {4, -1, 1000}) {
        kl_model_params mp = cpu_params();
        mp.weight_format = weight_format_of(bad);
        kl_model* model = nullptr;
        expect_failure(kl_model_load(kl::test::tiny_model_dir().c_str(), &mp, &model),
                       KL_ERR_INVALID_ARGUMENT, "weight_format is " + std::to_string(bad));
        EXPECT_EQ(model, nullptr);
        expect_failure(kl_model_create_random(config.c_str(), 1, &mp, &model),
                       KL_ERR_INVALID_ARGUMENT, "weight_format");
        EXPECT_EQ(model, nullptr);
    }
}

TEST(CApiCheckpointQuantize, WritesWhatALoadInThatFormatHolds) {
    const std::string in = kl::test::tiny_model_dir();
    for (kl_weight_format format : {KL_WEIGHTS_FP8, KL_WEIGHTS_INT4}) {
        const std::string out = kl::test::temp_dir() + "/q";
        ASSERT_EQ(kl_checkpoint_quantize(in.c_str(), out.c_str(), format, 0), KL_OK)
            << kl_last_error();
        EXPECT_EQ(last_logits(out, KL_WEIGHTS_AUTO), last_logits(in, format)) << format;
    }
}

TEST(CApiCheckpointQuantize, BadArgumentsAreRefusedAndWriteNothing) {
    const std::string in = kl::test::tiny_model_dir();
    const std::string out = kl::test::temp_dir() + "/never";
    expect_failure(kl_checkpoint_quantize(nullptr, out.c_str(), KL_WEIGHTS_FP8, 0),
                   KL_ERR_INVALID_ARGUMENT, "in_dir");
    expect_failure(kl_checkpoint_quantize(in.c_str(), nullptr, KL_WEIGHTS_FP8, 0),
                   KL_ERR_INVALID_ARGUMENT, "out_dir");
    for (kl_weight_format format : {KL_WEIGHTS_AUTO, KL_WEIGHTS_BF16})
        expect_failure(kl_checkpoint_quantize(in.c_str(), out.c_str(), format, 0),
                       KL_ERR_INVALID_ARGUMENT, "KL_WEIGHTS_FP8 or KL_WEIGHTS_INT4");
    expect_failure(kl_checkpoint_quantize(in.c_str(), out.c_str(), weight_format_of(7), 0),
                   KL_ERR_INVALID_ARGUMENT, "weight_format is 7");
    // Not a model: an empty folder, and a folder whose safetensors is garbage.
    const std::string empty = kl::test::temp_dir();
    const kl_status status = kl_checkpoint_quantize(empty.c_str(), out.c_str(), KL_WEIGHTS_FP8, 0);
    EXPECT_EQ(status, KL_ERR_IO) << kl_status_string(status);
    EXPECT_NE(std::string(kl_last_error()).find("config.json"), std::string::npos)
        << kl_last_error();
    const std::string garbage = kl::test::temp_dir();
    fs::copy_file(in + "/config.json", garbage + "/config.json");
    std::ofstream(garbage + "/model.safetensors", std::ios::binary) << "not a safetensors file";
    expect_failure(kl_checkpoint_quantize(garbage.c_str(), out.c_str(), KL_WEIGHTS_INT4, 0),
                   KL_ERR_FORMAT, "model.safetensors");
    EXPECT_FALSE(fs::exists(out)) << "a refused call made its output folder";
    // The input folder as the output.
    expect_failure(kl_checkpoint_quantize(in.c_str(), in.c_str(), KL_WEIGHTS_FP8, 0),
                   KL_ERR_INVALID_ARGUMENT, "is the input folder");
}

TEST(CApiCheckpointQuantize, AnOutputFolderItCannotUseIsAClearError) {
    const std::string in = kl::test::tiny_model_dir();
    // Below a regular file: no folder can be made there (whoever runs the test).
    const std::string file = kl::test::temp_dir() + "/a-file";
    std::ofstream(file) << "x";
    const std::string below = file + "/out";
    expect_failure(kl_checkpoint_quantize(in.c_str(), below.c_str(), KL_WEIGHTS_FP8, 0), KL_ERR_IO,
                   "cannot create the folder " + below);
    expect_failure(kl_checkpoint_quantize(in.c_str(), file.c_str(), KL_WEIGHTS_FP8, 0), KL_ERR_IO,
                   "cannot create the folder " + file);
    // A folder that holds anything: refused, its files untouched.
    const std::string used = kl::test::temp_dir();
    std::ofstream(used + "/notes.txt") << "mine";
    expect_failure(kl_checkpoint_quantize(in.c_str(), used.c_str(), KL_WEIGHTS_INT4, 0),
                   KL_ERR_INVALID_ARGUMENT, "not empty");
    EXPECT_EQ(names_in(used), std::vector<std::string>{"notes.txt"});
}

// Files this process writes are cut at `bytes` while it lives (RLIMIT_FSIZE binds root too);
// a write past it fails with EFBIG instead of raising SIGXFSZ.
class FileSizeLimit {
public:
    explicit FileSizeLimit(rlim_t bytes) {
        getrlimit(RLIMIT_FSIZE, &saved_);
        rlimit cut = saved_;
        cut.rlim_cur = bytes;
        setrlimit(RLIMIT_FSIZE, &cut);
        saved_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    }
    ~FileSizeLimit() {
        setrlimit(RLIMIT_FSIZE, &saved_);
        std::signal(SIGXFSZ, saved_handler_);
    }

private:
    rlimit saved_{};
    void (*saved_handler_)(int) = nullptr;
};

// A failure after the shards were written (the copy of a file too large for the file size
// limit) removes them: the output folder is as before, or gone when the call made it.
TEST(CApiCheckpointQuantize, AFailedWriteLeavesNothingBehind) {
    const std::string in = kl::test::temp_dir() + "/in";
    fs::copy(kl::test::tiny_model_dir(), in, fs::copy_options::recursive);
    std::ofstream(in + "/large.bin", std::ios::binary) << std::string(400000, 'x');
    const std::string made = kl::test::temp_dir() + "/made/here";
    const std::string existing = kl::test::temp_dir();
    kl_status to_new = KL_OK, to_existing = KL_OK;
    std::string new_error, existing_error;
    {
        const FileSizeLimit limit(200000);  // above every shard, index and config; below large.bin
        to_new = kl_checkpoint_quantize(in.c_str(), made.c_str(), KL_WEIGHTS_FP8, 1000);
        new_error = kl_last_error();
        to_existing = kl_checkpoint_quantize(in.c_str(), existing.c_str(), KL_WEIGHTS_INT4, 1000);
        existing_error = kl_last_error();
    }
    EXPECT_EQ(to_new, KL_ERR_IO) << new_error;
    EXPECT_NE(new_error.find("large.bin"), std::string::npos) << new_error;
    EXPECT_FALSE(fs::exists(made));
    EXPECT_EQ(to_existing, KL_ERR_IO) << existing_error;
    EXPECT_TRUE(fs::is_directory(existing));
    EXPECT_TRUE(fs::is_empty(existing)) << names_in(existing).size() << " files left";
    // The same call without the limit writes the checkpoint (the failure was the limit's).
    ASSERT_EQ(kl_checkpoint_quantize(in.c_str(), made.c_str(), KL_WEIGHTS_FP8, 1000), KL_OK)
        << kl_last_error();
    EXPECT_GT(names_in(made).size(), 10u);  // shards of 1000 bytes
}

// This machine's CUDA backend (absent, without a GPU, or present but without quantized
// kernels) either runs the quantized checkpoint or refuses it cleanly.
TEST(CApiCheckpointQuantize, AQuantizedCheckpointOnTheCudaBackendRunsOrIsRefused) {
    const std::string in = kl::test::tiny_model_dir();
    const std::string out = kl::test::temp_dir() + "/q";
    ASSERT_EQ(kl_checkpoint_quantize(in.c_str(), out.c_str(), KL_WEIGHTS_FP8, 0), KL_OK)
        << kl_last_error();
    for (const auto& [dir, format] : {std::pair{out, KL_WEIGHTS_AUTO}, {in, KL_WEIGHTS_INT4}}) {
        kl_model_params mp;
        kl_model_params_default(&mp);
        mp.device = KL_DEVICE_CUDA;
        mp.weight_format = format;
        kl_model* model = nullptr;
        const kl_status status = kl_model_load(dir.c_str(), &mp, &model);
        if (status == KL_OK) {
            kl_session* s = nullptr;
            EXPECT_EQ(kl_session_create(model, nullptr, &s), KL_OK) << kl_last_error();
            EXPECT_EQ(kl_session_append(s, kl::test::kQuantizedPrompt.data(),
                                        kl::test::kQuantizedPrompt.size(), KL_LOGITS_NONE, nullptr),
                      KL_OK)
                << kl_last_error();
            kl_session_free(s);
            kl_model_free(model);
            continue;
        }
        EXPECT_TRUE(status == KL_ERR_UNSUPPORTED || status == KL_ERR_DEVICE)
            << kl_status_string(status) << ": " << kl_last_error();
        const std::string message = kl_last_error();
        EXPECT_TRUE(message.find("CUDA") != std::string::npos ||
                    message.find("GPU") != std::string::npos)
            << message;
        EXPECT_EQ(model, nullptr);
    }
}

}  // namespace
