// Hostile inputs through the C API (issue 12, loading): each answers a clear status and a
// bounded message, never a crash, a hang or an allocation out of proportion to the input,
// and a failed call changes nothing (docs/design/capi.md; limits in docs/design/model.md).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "capi_test_support.h"
#include "kimi_linear.h"
#include "tiny_model.h"

namespace {

namespace fs = std::filesystem;
using kl::test::cpu_params;

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_text(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

// The small preset has tokenizer files (the tiny one's vocab is too small for them).
const char* const kWithTokenizer = "--preset small --seed 7";

// A copy of a model folder from make_tiny_model, free to damage.
std::string model_copy(const std::string& args = "--preset tiny --seed 1") {
    const std::string dir = kl::test::temp_dir() + "/m";
    fs::copy(kl::test::tiny_model_dir(args), dir, fs::copy_options::recursive);
    return dir;
}

// A config.json text with `key`'s value (the text after "key": up to the next , or
// newline) replaced by `value`.
std::string config_with(const std::string& config, const std::string& key,
                        const std::string& value) {
    std::string edited = config;
    const size_t at = edited.find("\"" + key + "\": ");
    EXPECT_NE(at, std::string::npos) << key;
    if (at == std::string::npos) return edited;
    const size_t begin = at + key.size() + 4;
    const size_t end = edited.find_first_of(",\n}", begin);
    edited.replace(begin, end - begin, value);
    return edited;
}

std::string nested(size_t depth) {
    return std::string(depth, '[') + "1" + std::string(depth, ']');
}

// A safetensors file of `header` followed by `data_bytes` zero bytes.
std::string safetensors_bytes(const std::string& header, size_t data_bytes) {
    std::string bytes(8, '\0');
    const uint64_t n = header.size();
    std::memcpy(&bytes[0], &n, 8);
    return bytes + header + std::string(data_bytes, '\0');
}

// Expects `status` and a bounded message (4 KB) naming every fragment.
void expect_status(kl_status got, kl_status want, const std::vector<std::string>& fragments) {
    EXPECT_EQ(got, want) << kl_status_string(got) << ": " << kl_last_error();
    const std::string message = kl_last_error();
    EXPECT_LE(message.size(), 4096u + 64u);
    for (const std::string& fragment : fragments)
        EXPECT_NE(message.find(fragment), std::string::npos)
            << "message \"" << message.substr(0, 300) << "\" lacks \"" << fragment << "\"";
}

kl_status load(const std::string& dir, kl_model** model) {
    const kl_model_params params = cpu_params();
    return kl_model_load(dir.c_str(), &params, model);
}

kl_status create_random(const std::string& config, kl_model** model) {
    const kl_model_params params = cpu_params();
    return kl_model_create_random(config.c_str(), 1, &params, model);
}

std::string tiny_config() {
    return read_text(kl::test::tiny_model_dir() + "/config.json");
}

TEST(HostileInputs, DeeplyNestedJsonIsAFormatErrorNotAStackOverflow) {
    // 100,000 levels in 200 KB: the error message was built with nlohmann's dump(), which
    // recursed once per level off the end of the stack.
    const std::string deep = nested(100000);
    const std::string config = tiny_config();
    kl_model* model = nullptr;
    expect_status(create_random(config_with(config, "hidden_size", deep), &model), KL_ERR_FORMAT,
                  {"config_json", "nested deeper than 64"});
    EXPECT_EQ(model, nullptr);

    const std::string dir = model_copy();
    write_text(dir + "/config.json", config_with(config, "num_experts", deep));
    expect_status(load(dir, &model), KL_ERR_FORMAT, {"config.json", "nested deeper"});
    write_text(dir + "/config.json", config);

    // In a tensor's shape in a safetensors header.
    const std::string shard = dir + "/model-00001-of-00002.safetensors";
    write_text(shard,
               safetensors_bytes(
                   "{\"x\":{\"dtype\":\"F32\",\"shape\":" + deep + ",\"data_offsets\":[0,4]}}", 4));
    expect_status(load(dir, &model), KL_ERR_FORMAT, {shard, "nested deeper"});

    // In the index and in tokenizer_config.json.
    const std::string indexed = model_copy();
    write_text(indexed + "/model.safetensors.index.json", "{\"weight_map\": " + deep + "}");
    expect_status(load(indexed, &model), KL_ERR_FORMAT,
                  {"model.safetensors.index.json", "nested deeper"});
    const std::string tokenized = model_copy(kWithTokenizer);
    ASSERT_TRUE(fs::exists(tokenized + "/tokenizer_config.json"));
    write_text(tokenized + "/tokenizer_config.json", "{\"bos_token\": " + deep + "}");
    expect_status(load(tokenized, &model), KL_ERR_FORMAT,
                  {"tokenizer_config.json", "nested deeper"});
    EXPECT_EQ(model, nullptr);

    // Nesting within the limit is still read (unknown keys are ignored).
    ASSERT_EQ(create_random(
                  config_with(config, "num_shared_experts", "1, \"extra\": " + nested(40)), &model),
              KL_OK)
        << kl_last_error();
    kl_model_free(model);
}

TEST(HostileInputs, HugeOrAbsurdConfigValuesAreFormatErrorsNamingTheKey) {
    const std::string config = tiny_config();
    const std::string dir = model_copy();
    kl_model* model = nullptr;
    struct Case {
        const char* key;
        std::string value;
        std::vector<std::string> fragments;
    };
    const std::vector<Case> cases = {
        // Millions of expert tensor descriptions; a 2^40-entry layer table; products near
        // 2^32 and 2^62 that overflowed int64 (UBSan).
        {"num_experts", "4000000", {"num_experts", "at most 16384"}},
        {"num_hidden_layers", "1099511627776", {"num_hidden_layers", "at most 1024"}},
        {"hidden_size", "4294967296", {"hidden_size", "at most"}},
        {"vocab_size", "4611686018427387904", {"vocab_size", "at most"}},
        {"moe_intermediate_size", "4611686018427387904", {"moe_intermediate_size", "at most"}},
        {"num_attention_heads", "4294967297", {"num_attention_heads", "at most"}},
        {"model_max_length", "9223372036854775807", {"model_max_length", "at most"}},
        {"short_conv_kernel_size",
         "4294967296",
         {"linear_attn_config.short_conv_kernel_size", "at most"}},
        // Floats that loaded and gave NaN logits.
        {"rms_norm_eps", "1e308", {"rms_norm_eps", "float range"}},
        {"rms_norm_eps", "1e-60", {"rms_norm_eps", "> 0"}},
        {"rms_norm_eps", "5", {"rms_norm_eps", "at most 1"}},
        {"routed_scaling_factor", "1e308", {"routed_scaling_factor", "float range"}},
        {"routed_scaling_factor", "-2", {"routed_scaling_factor", "> 0"}},
        {"routed_scaling_factor", "1e30", {"routed_scaling_factor", "at most 1000"}},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(std::string(c.key) + " = " + c.value);
        const std::string text = config_with(config, c.key, c.value);
        const auto start = std::chrono::steady_clock::now();
        expect_status(create_random(text, &model), KL_ERR_FORMAT, c.fragments);
        write_text(dir + "/config.json", text);
        expect_status(load(dir, &model), KL_ERR_FORMAT, c.fragments);
        EXPECT_EQ(model, nullptr);
        EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
    }
}

TEST(HostileInputs, AConfigWantingMoreTensorsThanTheCheckpointHoldsNamesOneQuickly) {
    // 16,384 experts (the limit) in each of 3 MoE layers describe 147,000 tensors; the
    // checkpoint holds about 100. The load names the first missing one without building the
    // description of the others.
    const std::string dir = model_copy();
    write_text(dir + "/config.json", config_with(tiny_config(), "num_experts", "16384"));
    kl_model* model = nullptr;
    const auto start = std::chrono::steady_clock::now();
    expect_status(load(dir, &model), KL_ERR_FORMAT,
                  {"tensor model.layers.1.block_sparse_moe.experts.8.w1.weight is missing"});
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
    EXPECT_EQ(model, nullptr);
}

TEST(HostileInputs, RandomWeightsThatCannotFitInMemoryAreRefusedBeforeAllocating) {
    const std::string config = tiny_config();
    // 2^20 x 2^20 embeddings: 4 TiB of fp32 weights each way, within the parameter limit.
    std::string huge = config_with(config, "hidden_size", "1048576");
    huge = config_with(huge, "vocab_size", "1048576");
    kl_model* model = nullptr;
    expect_status(create_random(huge, &model), KL_ERR_OUT_OF_MEMORY, {"bytes", "memory"});
    EXPECT_EQ(model, nullptr);
    // Past the parameter limit (2^46): a format error saying so.
    std::string more = config_with(config, "num_experts", "16384");
    more = config_with(more, "moe_intermediate_size", "1048576");
    more = config_with(more, "hidden_size", "1048576");
    expect_status(create_random(more, &model), KL_ERR_FORMAT, {"parameters", "limit"});
    EXPECT_EQ(model, nullptr);
}

// Loads `dir` on another thread, so that a hang fails the test instead of hanging it: on a
// timeout the FIFO is opened for writing, which releases a reader blocked in open(). The
// status and that thread's kl_last_error().
std::pair<kl_status, std::string> load_with_timeout(const std::string& dir, const std::string& fifo,
                                                    kl_model** model) {
    auto result = std::async(std::launch::async, [&] {
        const kl_status status = load(dir, model);
        return std::make_pair(status, std::string(kl_last_error()));
    });
    if (result.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
        ADD_FAILURE() << "loading " << dir << " hangs on the FIFO " << fifo;
        const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
        if (fd >= 0) ::close(fd);
    }
    return result.get();
}

void expect_io_error(const std::pair<kl_status, std::string>& got,
                     const std::vector<std::string>& fragments) {
    EXPECT_EQ(got.first, KL_ERR_IO) << kl_status_string(got.first) << ": " << got.second;
    for (const std::string& fragment : fragments)
        EXPECT_NE(got.second.find(fragment), std::string::npos)
            << "message \"" << got.second << "\" lacks \"" << fragment << "\"";
}

TEST(HostileInputs, AFifoOrDirectoryInPlaceOfAModelFileIsAnIoErrorNotAHang) {
    for (const char* name :
         {"config.json", "model-00001-of-00002.safetensors", "model.safetensors.index.json",
          "tiktoken.model", "tokenizer_config.json"}) {
        SCOPED_TRACE(name);
        const std::string dir = model_copy(kWithTokenizer);
        const std::string path = dir + "/" + name;
        ASSERT_TRUE(fs::remove(path));
        ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
        kl_model* model = nullptr;
        expect_io_error(load_with_timeout(dir, path, &model),
                        {path, "not a readable regular file"});
        EXPECT_EQ(model, nullptr);
        kl_model_free(model);

        ASSERT_TRUE(fs::remove(path));
        ASSERT_TRUE(fs::create_directory(path));
        expect_status(load(dir, &model), KL_ERR_IO, {path});
        EXPECT_EQ(model, nullptr);
    }
    // Without an index every *.safetensors is a shard, a FIFO too.
    const std::string dir = model_copy("--preset tiny --seed 1 --shards 1");
    const std::string fifo = dir + "/extra.safetensors";
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    kl_model* model = nullptr;
    expect_io_error(load_with_timeout(dir, fifo, &model), {fifo});
    EXPECT_EQ(model, nullptr);
}

TEST(HostileInputs, SmallFilesPastTheirCapAreRefusedBeforeTheyAreRead) {
    struct Case {
        const char* name;
        uintmax_t bytes;  // one past the file's cap (docs/design/model.md, "Limits")
    };
    for (const Case& c :
         {Case{"config.json", (1u << 20) + 1},
          Case{"model.safetensors.index.json", (64u << 20) + 1},
          Case{"tokenizer_config.json", (64u << 20) + 1}, Case{"tiktoken.model", (64u << 20) + 1}}) {
        SCOPED_TRACE(c.name);
        const std::string dir = model_copy(kWithTokenizer);
        const std::string path = dir + "/" + c.name;
        fs::resize_file(path, c.bytes);  // zeros past the text, sparse: no disk used
        kl_model* model = nullptr;
        expect_status(load(dir, &model), KL_ERR_FORMAT, {path, "limit"});
        EXPECT_EQ(model, nullptr);
    }
    // At the cap, a config padded with spaces still loads.
    const std::string dir = model_copy();
    std::string config = read_text(dir + "/config.json");
    config.append((1u << 20) - config.size(), ' ');
    write_text(dir + "/config.json", config);
    kl_model* model = nullptr;
    ASSERT_EQ(load(dir, &model), KL_OK) << kl_last_error();
    kl_model_free(model);
}

TEST(HostileInputs, ASafetensorsHeaderLengthAByteOrTwoShortIsRejected) {
    // The header's trailing spaces hid the shortfall: every tensor was read a byte or two
    // early, and the model loaded with KL_OK and gave NaN logits.
    for (uint64_t short_by : {1u, 2u}) {
        SCOPED_TRACE(short_by);
        const std::string dir = model_copy("--preset tiny --seed 1 --shards 1");
        const std::string path = dir + "/model.safetensors";
        std::string bytes = read_text(path);
        uint64_t header_len;
        std::memcpy(&header_len, bytes.data(), 8);
        ASSERT_EQ(bytes.substr(8 + header_len - 2, 2), "  ") << "the writer pads with spaces";
        header_len -= short_by;
        std::memcpy(&bytes[0], &header_len, 8);
        write_text(path, bytes);
        kl_model* model = nullptr;
        expect_status(load(dir, &model), KL_ERR_FORMAT, {path, "data region"});
        EXPECT_EQ(model, nullptr);
    }
}

// The snapshot of `session` with its header's position replaced and the checksum redone,
// as a crafted file would carry them.
std::vector<uint8_t> snapshot_claiming(kl_session* session, uint64_t position) {
    size_t n = 0;
    EXPECT_EQ(kl_session_state_size(session, &n), KL_OK);
    std::vector<uint8_t> blob(n);
    EXPECT_EQ(kl_session_state_save(session, blob.data(), n, &n), KL_OK) << kl_last_error();
    std::memcpy(&blob[24], &position, 8);   // after magic, version, reserved, fingerprint
    uint64_t hash = 0xcbf29ce484222325ull;  // the trailer: FNV-1a 64 of the rest
    for (size_t i = 0; i + 8 < blob.size(); ++i) hash = (hash ^ blob[i]) * 0x100000001b3ull;
    std::memcpy(&blob[blob.size() - 8], &hash, 8);
    return blob;
}

TEST(HostileInputs, CraftedSnapshotPositionsAreFormatErrors) {
    kl_model* model = nullptr;
    ASSERT_EQ(load(kl::test::tiny_model_dir(), &model), KL_OK) << kl_last_error();
    kl_session_params params;
    kl_session_params_default(&params);
    params.max_context = UINT64_MAX;  // a capacity no position exceeds
    kl_session* session = nullptr;
    ASSERT_EQ(kl_session_create(model, &params, &session), KL_OK) << kl_last_error();
    // At 2^62 the history (4 bytes a token) and the MLA layer's cache (160 bytes a token)
    // both wrap to 0 bytes: the sizes of a position-0 snapshot matched, and a history of
    // 2^62 ids threw std::length_error (KL_ERR_INTERNAL).
    for (uint64_t position :
         {uint64_t(1) << 62, (uint64_t(1) << 62) + 1, UINT64_MAX, uint64_t(1) << 60, uint64_t(7)}) {
        SCOPED_TRACE(position);
        const std::vector<uint8_t> blob = snapshot_claiming(session, position);
        expect_status(kl_session_state_load(session, blob.data(), blob.size()), KL_ERR_FORMAT,
                      {"bad snapshot"});
        uint64_t now = 99;
        ASSERT_EQ(kl_session_position(session, &now), KL_OK);
        EXPECT_EQ(now, 0u);  // a failed load changes nothing
    }
    kl_session_free(session);
    kl_model_free(model);
}

TEST(HostileInputs, SnapshotsAtPositionZeroAndWithConvKernelOneRoundTrip) {
    // A model whose short convolution keeps no state (kernel 1) passed NULL to memcpy when
    // saving and loading (UBSan aborts the sanitizer build); position 0 is checked too.
    const std::string config = tiny_config();
    for (const std::string& text : {config, config_with(config, "short_conv_kernel_size", "1")}) {
        kl_model* model = nullptr;
        ASSERT_EQ(create_random(text, &model), KL_OK) << kl_last_error();
        kl_session *a = nullptr, *b = nullptr;
        ASSERT_EQ(kl_session_create(model, nullptr, &a), KL_OK);
        ASSERT_EQ(kl_session_create(model, nullptr, &b), KL_OK);
        for (int round = 0; round < 2; ++round) {  // at position 0, then at 3
            size_t n = 0;
            ASSERT_EQ(kl_session_state_size(a, &n), KL_OK);
            std::vector<uint8_t> blob(n);
            ASSERT_EQ(kl_session_state_save(a, blob.data(), n, &n), KL_OK) << kl_last_error();
            ASSERT_EQ(kl_session_state_load(b, blob.data(), blob.size()), KL_OK) << kl_last_error();
            const int32_t tokens[] = {5, 7, 11};
            std::vector<float> la(256), lb(256);
            ASSERT_EQ(kl_session_append(a, tokens, 3, KL_LOGITS_LAST, la.data()), KL_OK);
            ASSERT_EQ(kl_session_append(b, tokens, 3, KL_LOGITS_LAST, lb.data()), KL_OK);
            EXPECT_EQ(la, lb);
        }
        kl_session_free(a);
        kl_session_free(b);
        kl_model_free(model);
    }
}

TEST(HostileInputs, SizesPastWhatAContainerCanHoldAreOutOfMemoryNotInternal) {
    kl_model* model = nullptr;
    ASSERT_EQ(load(kl::test::tiny_model_dir(), &model), KL_OK) << kl_last_error();
    kl_session_params params;
    kl_session_params_default(&params);
    params.max_context = UINT64_MAX;
    kl_session* session = nullptr;
    ASSERT_EQ(kl_session_create(model, &params, &session), KL_OK) << kl_last_error();
    // 2^62 history ids are past std::vector's max_size(): std::length_error.
    expect_status(kl_session_fill_synthetic(session, uint64_t(1) << 62, 1), KL_ERR_OUT_OF_MEMORY,
                  {"out of memory"});
    uint64_t position = 99;
    ASSERT_EQ(kl_session_position(session, &position), KL_OK);
    EXPECT_EQ(position, 0u);
    kl_session_free(session);
    kl_model_free(model);
}

TEST(HostileInputs, ErrorMessagesQuotingAnInputAreBounded) {
    const std::string config = tiny_config();
    const std::string long_text(15u << 20, 'x');  // 15 MB
    kl_model* model = nullptr;
    // A config value quoted in the message.
    expect_status(
        create_random(config_with(config, "moe_router_activation_func", "\"" + long_text + "\""),
                      &model),
        KL_ERR_UNSUPPORTED, {"moe_router_activation_func", "bytes"});
    // nlohmann's own message quotes the token it stopped at: 15 MB of an unfinished string.
    expect_status(create_random("{\"a\": \"" + long_text, &model), KL_ERR_FORMAT,
                  {"config_json", "not valid JSON"});
    // A caller's folder path.
    expect_status(load("/nonexistent/" + long_text, &model), KL_ERR_IO, {"/nonexistent/"});
    // A tensor name in a safetensors header.
    const std::string dir = model_copy("--preset tiny --seed 1 --shards 1");
    write_text(dir + "/model.safetensors",
               safetensors_bytes("{\"" + std::string(1u << 20, 'n') +
                                     "\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}",
                                 8));
    expect_status(load(dir, &model), KL_ERR_FORMAT, {"F64", "bytes)"});
    EXPECT_EQ(model, nullptr);
}

}  // namespace
