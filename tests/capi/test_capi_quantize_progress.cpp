// kl_checkpoint_quantize_with_progress: the fractions it reports (rising within [0, 1], the
// last exactly 1.0), a NULL callback as the plain kl_checkpoint_quantize, and a callback
// that stops it, at the first, a middle and the last call: KL_ERR_CANCELLED, nothing left in
// the output folder, and the same folder then taking a whole write.
#include <gtest/gtest.h>

#include <cstddef>
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
using kl::test::expect_failure;
using kl::test::last_logits;
using kl::test::names_in;

// Small shards: the tiny model's tensors go to many files, so that a stop in the middle
// comes after some were written.
constexpr uint64_t kShardBytes = 1000;

// Records every fraction; the call numbered stop_at (1 = the first; 0 = none) asks to stop.
struct Recorder {
    std::vector<float> fractions;
    size_t stop_at = 0;

    static int call(float fraction, void* user) {
        auto* self = static_cast<Recorder*>(user);
        self->fractions.push_back(fraction);
        return self->fractions.size() == self->stop_at ? 1 : 0;
    }
};

kl_status quantize(const std::string& out, kl_weight_format format, Recorder& recorder) {
    return kl_checkpoint_quantize_with_progress(kl::test::tiny_model_dir().c_str(), out.c_str(),
                                                format, kShardBytes, &Recorder::call, &recorder);
}

std::string file_text(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST(CApiQuantizeProgress, FractionsRiseWithinZeroToOneAndEndAtExactlyOne) {
    for (kl_weight_format format : {KL_WEIGHTS_FP8, KL_WEIGHTS_INT4}) {
        const std::string out = kl::test::temp_dir() + "/q";
        Recorder recorder;
        ASSERT_EQ(quantize(out, format, recorder), KL_OK) << kl_last_error();
        const std::vector<float>& f = recorder.fractions;
        ASSERT_GE(f.size(), 10u) << "a report per tensor made and per tensor written";
        for (size_t i = 0; i < f.size(); ++i) {
            EXPECT_GE(f[i], 0.0f) << i;
            EXPECT_LE(f[i], 1.0f) << i;
            if (i > 0) {
                EXPECT_GE(f[i], f[i - 1]) << "call " << i << " went back";
            }
        }
        EXPECT_EQ(f.back(), 1.0f);
        EXPECT_LT(f[f.size() - 2], 1.0f) << "1.0 before the folder was complete";
        EXPECT_LT(f.front(), 0.5f);
        EXPECT_EQ(last_logits(out, KL_WEIGHTS_AUTO),
                  last_logits(kl::test::tiny_model_dir(), format))
            << format;
    }
}

// kl_checkpoint_quantize is the NULL-callback case: the same files, byte for byte.
TEST(CApiQuantizeProgress, WithoutACallbackItWritesWhatThePlainCallWrites) {
    const std::string in = kl::test::tiny_model_dir();
    const std::string plain = kl::test::temp_dir() + "/plain";
    const std::string with = kl::test::temp_dir() + "/with";
    ASSERT_EQ(kl_checkpoint_quantize(in.c_str(), plain.c_str(), KL_WEIGHTS_INT4, kShardBytes),
              KL_OK)
        << kl_last_error();
    ASSERT_EQ(kl_checkpoint_quantize_with_progress(in.c_str(), with.c_str(), KL_WEIGHTS_INT4,
                                                   kShardBytes, nullptr, nullptr),
              KL_OK)
        << kl_last_error();
    const std::vector<std::string> names = names_in(plain);
    ASSERT_EQ(names.size(), names_in(with).size());
    for (const std::string& name : names)
        EXPECT_EQ(file_text(fs::path(plain) / name), file_text(fs::path(with) / name)) << name;
}

// A stop at the first call, in the middle (shards already written) and at 1.0 (every file
// there): cancelled, the folder gone (it was made by the call) or empty (it was there, empty),
// and a whole write into it afterwards loads like the bf16 model quantized on load.
TEST(CApiQuantizeProgress, AStopLeavesNothingAndTheFolderThenTakesAWholeWrite) {
    Recorder whole;
    ASSERT_EQ(quantize(kl::test::temp_dir() + "/q", KL_WEIGHTS_FP8, whole), KL_OK)
        << kl_last_error();
    const size_t calls = whole.fractions.size();
    const std::vector<float> on_load = last_logits(kl::test::tiny_model_dir(), KL_WEIGHTS_FP8);
    for (size_t stop_at : {size_t(1), calls / 2, calls}) {
        for (bool existed : {false, true}) {
            SCOPED_TRACE("stop at call " + std::to_string(stop_at) + " of " +
                         std::to_string(calls) + (existed ? ", an empty folder" : ", a new one"));
            const std::string out = kl::test::temp_dir() + (existed ? "" : "/made/here");
            Recorder stopping;
            stopping.stop_at = stop_at;
            expect_failure(quantize(out, KL_WEIGHTS_FP8, stopping), KL_ERR_CANCELLED, "cancelled");
            EXPECT_EQ(stopping.fractions.size(), stop_at) << "called again after the stop";
            if (existed) {
                ASSERT_TRUE(fs::is_directory(out));
                EXPECT_TRUE(fs::is_empty(out)) << names_in(out).size() << " files left";
            } else {
                EXPECT_FALSE(fs::exists(out));
            }
            Recorder again;
            ASSERT_EQ(quantize(out, KL_WEIGHTS_FP8, again), KL_OK) << kl_last_error();
            EXPECT_EQ(again.fractions, whole.fractions);
            EXPECT_EQ(last_logits(out, KL_WEIGHTS_AUTO), on_load);
        }
    }
}

}  // namespace
