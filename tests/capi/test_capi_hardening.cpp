// Failure paths found in the hardening pass (issue 12): each must fail cleanly and change
// nothing (docs/design/capi.md "A failed call changes nothing").
//  - kl_session_append checks capacity before it reads a token (a short array with a large
//    n was read past its end);
//  - a generation step whose token has no text in the tokenizer fails before it appends;
//  - n_threads has an upper bound;
//  - the log callback may call back into the library (it ran under the log mutex).
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "capi_test_support.h"
#include "kimi_linear.h"
#include "tiny_model.h"

namespace {

namespace fs = std::filesystem;

TEST(CApiHardening, AppendChecksCapacityBeforeReadingAnyToken) {
    kl_model* model = nullptr;
    ASSERT_EQ(kl_model_load(kl::test::tiny_model_dir().c_str(), nullptr, &model), KL_OK);
    kl_session_params sp;
    kl_session_params_default(&sp);
    sp.max_context = 8;
    kl_session* s = nullptr;
    ASSERT_EQ(kl_session_create(model, &sp, &s), KL_OK);
    // One token at the very end of a readable page, an unreadable page after it: reading a
    // second token faults.
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    void* map = mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(map, MAP_FAILED);
    ASSERT_EQ(mprotect(static_cast<char*>(map) + page, page, PROT_NONE), 0);
    int32_t* last = reinterpret_cast<int32_t*>(static_cast<char*>(map) + page) - 1;
    *last = 7;
    EXPECT_EQ(kl_session_append(s, last, 1u << 20, KL_LOGITS_NONE, nullptr), KL_ERR_CONTEXT_FULL)
        << kl_last_error();
    EXPECT_NE(std::string(kl_last_error()).find("max_context 8"), std::string::npos);
    EXPECT_EQ(kl_session_append(s, last, 9, KL_LOGITS_NONE, nullptr), KL_ERR_CONTEXT_FULL);
    EXPECT_EQ(kl_session_append(s, last, 1, KL_LOGITS_NONE, nullptr), KL_OK) << kl_last_error();
    munmap(map, 2 * page);
    kl_session_free(s);
    kl_model_free(model);
}

// The small model's folder with some added tokens taken out of tokenizer_config.json: the
// model can still sample their ids, which then have no text.
std::string model_with_textless_ids(std::set<int32_t>& textless) {
    const std::string dir = kl::test::temp_dir() + "/textless";
    fs::copy(kl::test::tiny_model_dir("--preset small --seed 7"), dir, fs::copy_options::recursive);
    nlohmann::json config;
    std::ifstream(dir + "/tokenizer_config.json") >> config;
    nlohmann::json& added = config["added_tokens_decoder"];
    std::vector<std::string> drop;
    for (auto& [id, token] : added.items())
        if (token["content"].get<std::string>().rfind("<|reserved_token_", 0) == 0) drop.push_back(id);
    for (const std::string& id : drop) {
        added.erase(id);
        textless.insert(std::stoi(id));
    }
    std::ofstream(dir + "/tokenizer_config.json") << config.dump(2);
    return dir;
}

TEST(CApiHardening, AGenerateStepWhoseTokenHasNoTextChangesNothing) {
    std::set<int32_t> textless;
    const std::string dir = model_with_textless_ids(textless);
    ASSERT_FALSE(textless.empty());
    kl_model* model = nullptr;
    ASSERT_EQ(kl_model_load(dir.c_str(), nullptr, &model), KL_OK) << kl_last_error();
    kl_session* s = nullptr;
    ASSERT_EQ(kl_session_create(model, nullptr, &s), KL_OK);
    const int32_t prompt[] = {10, 20, 30};
    ASSERT_EQ(kl_session_append(s, prompt, 3, KL_LOGITS_NONE, nullptr), KL_OK);
    // A seed whose draw at this position is a textless id (a draw depends on (seed, position)
    // only; at a high temperature every id is likely enough).
    kl_generate_params gp;
    kl_generate_params_default(&gp);
    gp.sampling.temperature = 1000.0f;
    gp.max_new_tokens = 4;
    bool found = false;
    for (uint64_t seed = 0; seed < 200000 && !found; ++seed) {
        gp.sampling.seed = seed;
        int32_t token = -1;
        ASSERT_EQ(kl_session_sample(s, &gp.sampling, &token), KL_OK);
        found = textless.count(token) > 0;
    }
    ASSERT_TRUE(found);
    size_t generated = 99;
    const kl_status status = kl_session_generate(s, &gp, nullptr, nullptr, &generated);
    EXPECT_EQ(status, KL_ERR_INVALID_ARGUMENT) << kl_status_string(status);
    EXPECT_NE(std::string(kl_last_error()).find("not in the tokenizer"), std::string::npos)
        << kl_last_error();
    EXPECT_EQ(generated, 0u);
    uint64_t position = 0;
    ASSERT_EQ(kl_session_position(s, &position), KL_OK);
    EXPECT_EQ(position, 3u) << "the failed step appended its token";
    // The generator and kl_session_next follow the same rule.
    kl_generator* g = nullptr;
    ASSERT_EQ(kl_generator_create(s, &gp, &g), KL_OK);
    kl_generation_step step;
    step.struct_size = sizeof(step);
    EXPECT_EQ(kl_generator_next(g, &step), KL_ERR_INVALID_ARGUMENT);
    kl_generator_free(g);
    int32_t token = -1;
    char piece[64];
    EXPECT_EQ(kl_session_next(s, &gp.sampling, &token, piece, sizeof piece, nullptr),
              KL_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(kl_session_position(s, &position), KL_OK);
    EXPECT_EQ(position, 3u);
    kl_session_free(s);
    kl_model_free(model);
}

TEST(CApiHardening, TooManyThreadsIsAnInvalidArgument) {
    kl_model_params mp;
    kl_model_params_default(&mp);
    mp.device = KL_DEVICE_CPU;
    mp.n_threads = 1025;
    kl_model* model = nullptr;
    EXPECT_EQ(kl_model_load(kl::test::tiny_model_dir().c_str(), &mp, &model),
              KL_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(kl_last_error()).find("1024"), std::string::npos) << kl_last_error();
    EXPECT_EQ(model, nullptr);
    mp.n_threads = 1 << 30;
    EXPECT_EQ(kl_model_load(kl::test::tiny_model_dir().c_str(), &mp, &model),
              KL_ERR_INVALID_ARGUMENT);
}

// Runs body on a thread; fails the test and ends the process if it does not return in time
// (a deadlocked thread cannot be joined).
template <typename Body>
void within_seconds(int seconds, Body body, const char* what) {
    std::packaged_task<void()> task(body);
    std::future<void> done = task.get_future();
    std::thread(std::move(task)).detach();
    if (done.wait_for(std::chrono::seconds(seconds)) != std::future_status::ready) {
        ADD_FAILURE() << what << " did not return in " << seconds << " s (deadlock)";
        std::fflush(stdout);
        std::_Exit(1);
    }
    done.get();
}

struct Reentry {
    std::string dir;
    int calls = 0;
    kl_status nested_load = KL_OK;
};

void reentrant_sink(int level, const char*, void* user) {
    if (level > KL_LOG_WARN) return;  // an AUTO load may also say, once, why it runs on the CPU
    auto* r = static_cast<Reentry*>(user);
    if (++r->calls > 1) return;
    // Re-register (itself), and run a call that logs again, from inside the callback.
    kl_set_log_callback(reentrant_sink, user);
    kl_model* nested = nullptr;
    r->nested_load = kl_model_load(r->dir.c_str(), nullptr, &nested);
    kl_model_free(nested);
}

TEST(CApiHardening, TheLogCallbackMayCallTheLibrary) {
    Reentry r;
    r.dir = kl::test::model_that_warns();
    within_seconds(
        30,
        [&] {
            kl_set_log_callback(reentrant_sink, &r);
            kl_model* model = nullptr;
            EXPECT_EQ(kl_model_load(r.dir.c_str(), nullptr, &model), KL_OK) << kl_last_error();
            kl_model_free(model);
            kl_set_log_callback(nullptr, nullptr);
        },
        "a load whose log callback calls kl_set_log_callback and kl_model_load");
    EXPECT_EQ(r.calls, 2) << "the outer warning and the nested load's";
    EXPECT_EQ(r.nested_load, KL_OK);
}

}  // namespace
