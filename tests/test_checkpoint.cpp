// Checkpoint folders (sharded through the index or not) validated against a config, the
// fp32 load, and make_tiny_model's output: layout, determinism by seed and init scales.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "backends/cpu/cpu_weights.h"
#include "core/config.h"
#include "core/error.h"
#include "core/limits.h"
#include "core/safetensors.h"
#include "core/weights.h"
#include "expect_error.h"
#include "tiny_config.h"
#include "tiny_model.h"

namespace {

namespace fs = std::filesystem;
using kl::DType;
using kl::Status;
using kl::test::expect_error;
using kl::test::read_file;
using kl::test::tiny_config;
using kl::test::write_file;
using nlohmann::json;

// The tiny preset, spelled out so these tests do not depend on the tool's presets.
const kl::TensorSpec* find_spec(const std::vector<kl::TensorSpec>& specs, const std::string& name) {
    auto it = std::find_if(specs.begin(), specs.end(),
                           [&](const kl::TensorSpec& s) { return s.name == name; });
    return it == specs.end() ? nullptr : &*it;
}

uint64_t numel(const std::vector<int64_t>& shape) {
    uint64_t n = 1;
    for (int64_t d : shape) n *= static_cast<uint64_t>(d);
    return n;
}

std::string tool_path() {
    const char* tool = std::getenv("KL_MAKE_TINY_MODEL");
    return tool ? tool : KL_MAKE_TINY_MODEL;
}

// Runs make_tiny_model with `args`; returns its exit status and what it printed.
int run_tool(const std::string& args, std::string* out = nullptr, std::string* err = nullptr) {
    const std::string dir = kl::test::temp_dir();
    const std::string command =
        "\"" + tool_path() + "\" " + args + " > " + dir + "/out 2> " + dir + "/err";
    const int status = std::system(command.c_str());
    if (out) *out = read_file(dir + "/out");
    if (err) *err = read_file(dir + "/err");
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string copy_model(const std::string& from) {
    const std::string to = kl::test::temp_dir() + "/m";
    fs::copy(from, to, fs::copy_options::recursive);
    return to;
}

TEST(Checkpoint, ExpectedTensorsFollowTheReleasedNamesAndShapes) {
    const kl::ModelConfig c = tiny_config();
    const auto specs = kl::expected_tensors(c);
    // 3 top-level, 2 norms x 4 layers, 3 KDA x 15, 1 MLA x 5, 1 dense MLP x 3,
    // 3 MoE x (router 2 + 8 experts x 3 + shared 3).
    EXPECT_EQ(specs.size(), 3u + 8 + 45 + 5 + 3 + 3 * 29);
    std::set<std::string> names;
    for (const auto& s : specs) EXPECT_TRUE(names.insert(s.name).second) << s.name;

    struct Want {
        const char* name;
        std::vector<int64_t> shape;
        DType dtype;
    };
    const std::vector<Want> wants = {
        {"model.embed_tokens.weight", {256, 64}, DType::BF16},
        {"model.norm.weight", {64}, DType::BF16},
        {"lm_head.weight", {256, 64}, DType::BF16},
        {"model.layers.0.input_layernorm.weight", {64}, DType::BF16},
        {"model.layers.3.post_attention_layernorm.weight", {64}, DType::BF16},
        {"model.layers.0.self_attn.q_proj.weight", {32, 64}, DType::BF16},
        {"model.layers.0.self_attn.v_conv1d.weight", {32, 1, 4}, DType::BF16},
        {"model.layers.0.self_attn.f_a_proj.weight", {16, 64}, DType::BF16},
        {"model.layers.0.self_attn.f_b_proj.weight", {32, 16}, DType::BF16},
        {"model.layers.1.self_attn.b_proj.weight", {2, 64}, DType::BF16},
        {"model.layers.1.self_attn.A_log", {1, 1, 2, 1}, DType::F32},
        {"model.layers.1.self_attn.dt_bias", {32}, DType::F32},
        {"model.layers.2.self_attn.g_a_proj.weight", {16, 64}, DType::BF16},
        {"model.layers.2.self_attn.g_b_proj.weight", {32, 16}, DType::BF16},
        {"model.layers.2.self_attn.o_norm.weight", {16}, DType::BF16},
        {"model.layers.2.self_attn.o_proj.weight", {64, 32}, DType::BF16},
        {"model.layers.3.self_attn.q_proj.weight", {2 * 24, 64}, DType::BF16},
        {"model.layers.3.self_attn.kv_a_proj_with_mqa.weight", {40, 64}, DType::BF16},
        {"model.layers.3.self_attn.kv_a_layernorm.weight", {32}, DType::BF16},
        {"model.layers.3.self_attn.kv_b_proj.weight", {2 * 32, 32}, DType::BF16},
        {"model.layers.3.self_attn.o_proj.weight", {64, 32}, DType::BF16},
        {"model.layers.0.mlp.gate_proj.weight", {128, 64}, DType::BF16},
        {"model.layers.0.mlp.down_proj.weight", {64, 128}, DType::BF16},
        {"model.layers.1.block_sparse_moe.gate.weight", {8, 64}, DType::BF16},
        {"model.layers.1.block_sparse_moe.gate.e_score_correction_bias", {8}, DType::F32},
        {"model.layers.1.block_sparse_moe.experts.7.w1.weight", {32, 64}, DType::BF16},
        {"model.layers.3.block_sparse_moe.experts.0.w3.weight", {32, 64}, DType::BF16},
        {"model.layers.2.block_sparse_moe.experts.3.w2.weight", {64, 32}, DType::BF16},
        {"model.layers.1.block_sparse_moe.shared_experts.up_proj.weight", {32, 64}, DType::BF16},
    };
    for (const auto& w : wants) {
        const kl::TensorSpec* s = find_spec(specs, w.name);
        ASSERT_NE(s, nullptr) << w.name;
        EXPECT_EQ(s->shape, w.shape) << w.name;
        EXPECT_EQ(s->dtype, w.dtype) << w.name;
    }
    for (const char* absent :
         {"model.layers.0.block_sparse_moe.gate.weight", "model.layers.1.mlp.gate_proj.weight",
          "model.layers.3.self_attn.A_log", "model.layers.0.self_attn.kv_b_proj.weight",
          "model.layers.1.block_sparse_moe.experts.8.w1.weight"})
        EXPECT_EQ(find_spec(specs, absent), nullptr) << absent;
}

TEST(Checkpoint, SharedExpertsScaleWithTheirCountAndTiedEmbeddingsDropLmHead) {
    kl::ModelConfig c = tiny_config();
    c.num_shared_experts = 2;
    c.tie_word_embeddings = true;
    auto specs = kl::expected_tensors(c);
    EXPECT_EQ(find_spec(specs, "lm_head.weight"), nullptr);
    const auto* shared =
        find_spec(specs, "model.layers.2.block_sparse_moe.shared_experts.down_proj.weight");
    ASSERT_NE(shared, nullptr);
    EXPECT_EQ(shared->shape, (std::vector<int64_t>{64, 64}));  // [hidden, 32 x 2]

    c.num_shared_experts = 0;
    specs = kl::expected_tensors(c);
    for (const auto& s : specs)
        EXPECT_EQ(s.name.find("shared_experts"), std::string::npos) << s.name;
}

// Two hand-written shards and their index.
std::string write_sharded(const std::string& dir) {
    kl::write_safetensors(
        dir + "/model-00001-of-00002.safetensors",
        {{"a", DType::BF16, {2, 3}, {1, 2, 3, 4, 5, 6}}, {"b", DType::F32, {1}, {-7.5f}}});
    kl::write_safetensors(dir + "/model-00002-of-00002.safetensors",
                          {{"c", DType::F16, {4}, {0.5f, 0.25f, -1, 2}}});
    json index;
    index["metadata"] = {{"total_size", 12 + 4 + 8}};
    index["weight_map"] = {{"a", "model-00001-of-00002.safetensors"},
                           {"b", "model-00001-of-00002.safetensors"},
                           {"c", "model-00002-of-00002.safetensors"}};
    write_file(dir + "/model.safetensors.index.json", index.dump());
    return dir;
}

TEST(Checkpoint, LayoutSizeCountsWhatTheLayoutHoldsWithoutBuildingIt) {
    std::vector<kl::ModelConfig> configs = {tiny_config()};
    kl::ModelConfig c = tiny_config();
    c.num_shared_experts = 0, c.tie_word_embeddings = true, c.moe_layer_freq = 2;
    configs.push_back(c);
    c = tiny_config();
    c.num_experts = 0;  // all dense
    configs.push_back(c);
    // The released model's config (configs/, next to tests/).
    const fs::path released =
        fs::path(__FILE__).parent_path().parent_path() / "configs" / "kimi-linear-48b-a3b.json";
    configs.push_back(kl::ModelConfig::from_json(read_file(released.string()), released.string()));
    EXPECT_EQ(kl::layout_size(configs.back()).tensors,
              20u * 15 + 7 * 5 + 27 * 2 + 3 + 26 * (2 + 3 * 256 + 3) + 3);
    for (const kl::ModelConfig& config : configs) {
        const kl::ModelLayout layout(config);
        const kl::LayoutSize size = kl::layout_size(config);
        EXPECT_EQ(size.tensors, layout.size());
        EXPECT_EQ(size.parameters, kl::count_parameters(config, layout).total);
    }
    // Past the tensor limit: 1024 layers of 16,384 experts. Refused before any is built.
    c = tiny_config();
    c.num_hidden_layers = 1024;
    c.kda_layers.clear();
    c.full_attn_layers.clear();
    for (int64_t l = 1; l <= 1024; ++l) c.kda_layers.push_back(l);
    c.num_experts = kl::limits::kExperts;
    c.validate("many experts");
    expect_error([&] { kl::ModelLayout layout(c); }, Status::Format, {"tensors", "limit"});
}

TEST(Checkpoint, AConfigWantingMoreTensorsThanTheCheckpointHoldsNamesTheFirstMissing) {
    const std::string dir = kl::test::tiny_model_dir();
    auto checkpoint = kl::Checkpoint::open(dir);
    kl::ModelConfig c = kl::ModelConfig::load(dir);
    EXPECT_NO_THROW(kl::check_tensor_count(c, *checkpoint));
    // 16,384 experts in each MoE layer: 147,000 tensors, found short by counting; the first
    // missing one is named without describing the others.
    c.num_experts = kl::limits::kExperts;
    expect_error(
        [&] { kl::check_tensor_count(c, *checkpoint); }, Status::Format,
        {"tensor model.layers.1.block_sparse_moe.experts.8.w1.weight is missing", "[32,64]"});
    // The same through validate_checkpoint(config, ...).
    expect_error([&] { kl::validate_checkpoint(c, *checkpoint); }, Status::Format,
                 {"experts.8.w1.weight is missing"});
}

TEST(Checkpoint, AnIndexNamingManyShardsIsReadInLinearTime) {
    // The shard list was built with a linear search per entry: 200,000 distinct names took
    // minutes. Now a set: the first missing shard is reported at once.
    const std::string dir = kl::test::temp_dir();
    json index;
    index["weight_map"] = json::object();
    for (int i = 0; i < 200000; ++i)
        index["weight_map"]["t" + std::to_string(i)] = "s" + std::to_string(i) + ".safetensors";
    write_file(dir + "/model.safetensors.index.json", index.dump());
    const auto start = std::chrono::steady_clock::now();
    expect_error([&] { kl::Checkpoint::open(dir); }, Status::Io, {"s0.safetensors", "missing"});
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
}

TEST(Checkpoint, ShardedIndexRoundTrip) {
    const std::string dir = write_sharded(kl::test::temp_dir());
    auto checkpoint = kl::Checkpoint::open(dir);
    EXPECT_EQ(checkpoint->tensors().size(), 3u);
    EXPECT_EQ(checkpoint->total_bytes(), 24u);
    EXPECT_EQ(checkpoint->find("missing"), nullptr);
    const kl::TensorView* c = checkpoint->find("c");
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->dtype, DType::F16);
    EXPECT_NE(c->file.find("model-00002-of-00002.safetensors"), std::string::npos);
    float values[4];
    c->to_f32(values);
    EXPECT_EQ(std::vector<float>(values, values + 4), (std::vector<float>{0.5f, 0.25f, -1, 2}));
    const kl::TensorView* a = checkpoint->find("a");
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
    float a_values[6];
    a->to_f32(a_values);
    EXPECT_EQ(a_values[5], 6.0f);
}

TEST(Checkpoint, IndexProblemsAreReported) {
    std::string dir = write_sharded(kl::test::temp_dir());
    fs::remove(dir + "/model-00002-of-00002.safetensors");
    expect_error([&] { kl::Checkpoint::open(dir); }, Status::Io,
                 {"model-00002-of-00002.safetensors"});

    // The index says "b" lives in shard 2, but only shard 1 holds it.
    dir = write_sharded(kl::test::temp_dir());
    json index = json::parse(read_file(dir + "/model.safetensors.index.json"));
    index["weight_map"]["b"] = "model-00002-of-00002.safetensors";
    write_file(dir + "/model.safetensors.index.json", index.dump());
    expect_error([&] { kl::Checkpoint::open(dir); }, Status::Format,
                 {"tensor b", "model-00002-of-00002.safetensors"});

    index["weight_map"]["b"] = "../elsewhere.safetensors";
    write_file(dir + "/model.safetensors.index.json", index.dump());
    expect_error([&] { kl::Checkpoint::open(dir); }, Status::Format, {"../elsewhere.safetensors"});

    write_file(dir + "/model.safetensors.index.json", "{\"weight_map\": ");
    expect_error([&] { kl::Checkpoint::open(dir); }, Status::Format,
                 {"model.safetensors.index.json", "JSON"});
    write_file(dir + "/model.safetensors.index.json", "{\"weight_map\": [1]}");
    expect_error([&] { kl::Checkpoint::open(dir); }, Status::Format,
                 {"model.safetensors.index.json", "weight_map"});
}

TEST(Checkpoint, WithoutAnIndexEverySafetensorsFileCounts) {
    const std::string dir = kl::test::temp_dir();
    expect_error([&] { kl::Checkpoint::open(dir); }, Status::Io, {"no *.safetensors in " + dir});
    expect_error([] { kl::Checkpoint::open("/nonexistent/model"); }, Status::Io,
                 {"/nonexistent/model"});

    kl::write_safetensors(dir + "/b.safetensors", {{"y", DType::F32, {2}, {1, 2}}});
    kl::write_safetensors(dir + "/a.safetensors", {{"x", DType::BF16, {1}, {3}}});
    write_file(dir + "/notes.txt", "not a tensor file");
    auto checkpoint = kl::Checkpoint::open(dir);
    EXPECT_EQ(checkpoint->tensors().size(), 2u);
    ASSERT_NE(checkpoint->find("x"), nullptr);
    ASSERT_NE(checkpoint->find("y"), nullptr);

    kl::write_safetensors(dir + "/c.safetensors", {{"y", DType::F32, {2}, {3, 4}}});
    expect_error([&] { kl::Checkpoint::open(dir); }, Status::Format,
                 {"tensor y", "b.safetensors", "c.safetensors"});
}

TEST(Checkpoint, TinyModelValidatesAndLoadsTheSameValues) {
    const std::string dir = kl::test::tiny_model_dir();
    ASSERT_FALSE(dir.empty());
    ASSERT_TRUE(fs::exists(dir + "/model.safetensors.index.json"));
    const kl::ModelConfig config = kl::ModelConfig::load(dir);
    EXPECT_EQ(config.to_json(), tiny_config().to_json());
    auto checkpoint = kl::Checkpoint::open(dir);
    const auto specs = kl::expected_tensors(config);
    EXPECT_EQ(checkpoint->tensors().size(), specs.size());
    kl::validate_checkpoint(config, *checkpoint);

    std::vector<float> seen;
    const kl::ModelWeights w = kl::load_weights_f32(config, *checkpoint, [&](float f) {
        seen.push_back(f);
        return true;
    });
    ASSERT_EQ(seen.size(), specs.size());
    EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
    EXPECT_GT(seen.front(), 0.0f);
    EXPECT_FLOAT_EQ(seen.back(), 1.0f);

    auto expect_same = [&](const std::string& name, const std::vector<float>& loaded) {
        const kl::TensorView* view = checkpoint->find(name);
        ASSERT_NE(view, nullptr) << name;
        std::vector<float> direct(static_cast<size_t>(view->numel()));
        view->to_f32(direct.data());
        EXPECT_EQ(loaded, direct) << name;
    };
    ASSERT_EQ(w.layers.size(), 4u);
    EXPECT_EQ(w.embed_tokens.rows, 256);
    EXPECT_EQ(w.embed_tokens.cols, 64);
    expect_same("model.embed_tokens.weight", w.embed_tokens.data);
    expect_same("lm_head.weight", w.lm_head.data);
    expect_same("model.norm.weight", w.final_norm);
    const kl::LayerWeights& kda = w.layers[0];
    EXPECT_TRUE(kda.is_kda);
    EXPECT_FALSE(kda.is_moe);
    EXPECT_EQ(kda.kda.f_b_proj.rows, 32);
    EXPECT_EQ(kda.kda.f_b_proj.cols, 16);
    expect_same("model.layers.0.self_attn.k_conv1d.weight", kda.kda.k_conv);
    expect_same("model.layers.0.self_attn.A_log", kda.kda.a_log);
    expect_same("model.layers.0.self_attn.dt_bias", kda.kda.dt_bias);
    expect_same("model.layers.0.self_attn.o_proj.weight", kda.kda.o_proj.data);
    expect_same("model.layers.0.mlp.down_proj.weight", kda.mlp.down.data);
    const kl::LayerWeights& mla = w.layers[3];
    EXPECT_FALSE(mla.is_kda);
    EXPECT_TRUE(mla.is_moe);
    EXPECT_EQ(mla.mla.kv_b_proj.rows, 64);
    EXPECT_EQ(mla.mla.kv_b_proj.cols, 32);
    expect_same("model.layers.3.self_attn.kv_a_layernorm.weight", mla.mla.kv_a_layernorm);
    expect_same("model.layers.3.input_layernorm.weight", mla.input_layernorm);
    ASSERT_EQ(mla.moe.experts.size(), 8u);
    EXPECT_TRUE(mla.moe.has_shared);
    expect_same("model.layers.3.block_sparse_moe.experts.5.w2.weight",
                mla.moe.experts[5].down.data);
    expect_same("model.layers.3.block_sparse_moe.experts.5.w3.weight", mla.moe.experts[5].up.data);
    expect_same("model.layers.3.block_sparse_moe.gate.e_score_correction_bias",
                mla.moe.e_score_correction_bias);
    expect_same("model.layers.3.block_sparse_moe.shared_experts.gate_proj.weight",
                mla.moe.shared.gate.data);

    uint64_t params = 0;
    for (const auto& s : specs) params += numel(s.shape);
    EXPECT_EQ(w.bytes(), params * sizeof(float));
}

TEST(Checkpoint, TiedEmbeddingsLoadTheEmbeddingAsLmHead) {
    kl::ModelConfig config = tiny_config();
    config.tie_word_embeddings = true;
    const std::string config_path = kl::test::temp_dir() + "/tied.json";
    write_file(config_path, config.to_json());
    const std::string dir = kl::test::tiny_model_dir("--config " + config_path + " --seed 3");
    ASSERT_FALSE(dir.empty());
    auto checkpoint = kl::Checkpoint::open(dir);
    EXPECT_EQ(checkpoint->find("lm_head.weight"), nullptr);
    const kl::ModelWeights w =
        kl::load_weights_f32(kl::ModelConfig::load(dir), *checkpoint, nullptr);
    EXPECT_EQ(w.lm_head.rows, 256);
    EXPECT_EQ(w.lm_head.data, w.embed_tokens.data);
}

TEST(Checkpoint, ProgressCallbackCanCancel) {
    const std::string dir = kl::test::tiny_model_dir();
    const kl::ModelConfig config = kl::ModelConfig::load(dir);
    auto checkpoint = kl::Checkpoint::open(dir);
    int calls = 0;
    expect_error(
        [&] {
            kl::load_weights_f32(config, *checkpoint, [&](float f) {
                ++calls;
                return f < 0.5f;
            });
        },
        Status::Cancelled, {"model load cancelled"});
    EXPECT_LT(calls, static_cast<int>(kl::expected_tensors(config).size()));
}

TEST(Checkpoint, WrongShapeNamesTheTensorAndBothShapes) {
    const std::string dir = copy_model(kl::test::tiny_model_dir());
    json j = json::parse(read_file(dir + "/config.json"));
    j["intermediate_size"] = 96;  // the dense MLP of layer 0 was written with 128
    write_file(dir + "/config.json", j.dump());
    const kl::ModelConfig config = kl::ModelConfig::load(dir);
    auto checkpoint = kl::Checkpoint::open(dir);
    const std::vector<std::string> fragments = {
        "tensor model.layers.0.mlp.gate_proj.weight has shape [128,64], config wants [96,64]"};
    expect_error([&] { kl::validate_checkpoint(config, *checkpoint); }, Status::Format, fragments);
    expect_error([&] { kl::load_weights_f32(config, *checkpoint, nullptr); }, Status::Format,
                 fragments);
}

TEST(Checkpoint, MissingTensorNamesTheShapeTheConfigWants) {
    const std::string dir = copy_model(kl::test::tiny_model_dir());
    json j = json::parse(read_file(dir + "/config.json"));
    j["first_k_dense_replace"] = 0;  // layer 0 becomes MoE: its router was never written
    write_file(dir + "/config.json", j.dump());
    auto checkpoint = kl::Checkpoint::open(dir);
    expect_error([&] { kl::validate_checkpoint(kl::ModelConfig::load(dir), *checkpoint); },
                 Status::Format,
                 {"tensor model.layers.0.block_sparse_moe.gate.weight is missing (config wants "
                  "shape [8,64])"});
}

TEST(Checkpoint, MakeTinyModelWritesTheHuggingFaceLayout) {
    const std::string dir = kl::test::temp_dir() + "/m";
    std::string out;
    ASSERT_EQ(run_tool("\"" + dir + "\" --shards 3 --seed 4", &out), 0);
    const kl::ModelConfig config = kl::ModelConfig::load(dir);
    EXPECT_EQ(config.to_json(), tiny_config().to_json());  // the default preset is tiny
    const auto specs = kl::expected_tensors(config);
    uint64_t params = 0;
    for (const auto& s : specs) params += numel(s.shape);
    // The tiny preset's 256-token vocabulary leaves no room for a tokenizer.
    EXPECT_EQ(out, "no tokenizer: vocab_size 256 leaves no room for 256 bytes + 16 added tokens\n"
                   "wrote " + dir + " (" + std::to_string(specs.size()) + " tensors, " +
                       std::to_string(params) + " parameters, 3 shards)\n");
    EXPECT_FALSE(fs::exists(dir + "/tiktoken.model"));

    const json index = json::parse(read_file(dir + "/model.safetensors.index.json"));
    ASSERT_EQ(index["weight_map"].size(), specs.size());
    std::set<std::string> shards;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it)
        shards.insert(it.value().get<std::string>());
    EXPECT_EQ(shards, (std::set<std::string>{"model-00001-of-00003.safetensors",
                                             "model-00002-of-00003.safetensors",
                                             "model-00003-of-00003.safetensors"}));
    auto checkpoint = kl::Checkpoint::open(dir);
    EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), checkpoint->total_bytes());
    kl::validate_checkpoint(config, *checkpoint);
    for (const auto& s : specs) {
        const kl::TensorView* view = checkpoint->find(s.name);
        ASSERT_NE(view, nullptr) << s.name;
        // bf16 as released, with the released fp32 exceptions.
        EXPECT_EQ(view->dtype, s.dtype) << s.name;
        EXPECT_NE(view->file.find(index["weight_map"][s.name].get<std::string>()),
                  std::string::npos);
    }

    const std::string f32_dir = kl::test::temp_dir() + "/m";
    ASSERT_EQ(run_tool("\"" + f32_dir + "\" --shards 1 --dtype f32"), 0);
    EXPECT_FALSE(fs::exists(f32_dir + "/model.safetensors.index.json"));
    ASSERT_TRUE(fs::exists(f32_dir + "/model.safetensors"));
    auto f32 = kl::Checkpoint::open(f32_dir);
    for (const auto& entry : f32->tensors())
        EXPECT_EQ(entry.second.dtype, DType::F32) << entry.first;
    kl::validate_checkpoint(config, *f32);
}

TEST(Checkpoint, MakeTinyModelIsDeterministicBySeed) {
    const std::string a = kl::test::tiny_model_dir("--preset tiny --seed 1");
    const std::string b = kl::test::temp_dir() + "/m";
    ASSERT_EQ(run_tool("\"" + b + "\" --preset tiny --seed 1"), 0);
    const std::string c = kl::test::tiny_model_dir("--preset tiny --seed 2");
    for (const char* file :
         {"/config.json", "/model.safetensors.index.json", "/model-00001-of-00002.safetensors",
          "/model-00002-of-00002.safetensors"})
        EXPECT_EQ(read_file(a + file), read_file(b + file)) << file;
    for (const char* shard :
         {"/model-00001-of-00002.safetensors", "/model-00002-of-00002.safetensors"}) {
        EXPECT_EQ(read_file(a + shard).size(), read_file(c + shard).size());
        EXPECT_NE(read_file(a + shard), read_file(c + shard)) << shard;
    }
}

double mean(const std::vector<float>& v) {
    double s = 0;
    for (float x : v) s += x;
    return s / static_cast<double>(v.size());
}

double rms(const std::vector<float>& v, double center) {
    double s = 0;
    for (float x : v) s += (x - center) * (x - center);
    return std::sqrt(s / static_cast<double>(v.size()));
}

TEST(Checkpoint, MakeTinyModelInitKeepsActivationsOrderOne) {
    const std::string dir = kl::test::tiny_model_dir("--preset small --seed 6");
    ASSERT_FALSE(dir.empty());
    const kl::ModelConfig config = kl::ModelConfig::load(dir);
    EXPECT_EQ(config.hidden_size, 256);
    EXPECT_TRUE(config.use_grouped_topk);
    auto checkpoint = kl::Checkpoint::open(dir);
    const kl::ModelWeights w = kl::load_weights_f32(config, *checkpoint, nullptr);
    const double in = 1.0 / std::sqrt(256.0);
    const kl::LayerWeights& kda = w.layers[1];
    const kl::LayerWeights& mla = w.layers[3];
    // Each matrix holds >= 4096 values: sampling moves the spread by ~1% and the mean by
    // <= 1.6% of the scale, well inside the bounds below.
    struct Spread {
        const char* what;
        const std::vector<float>& values;
        double center, scale;
    };
    const std::vector<Spread> spreads = {
        {"kda q_proj", kda.kda.q_proj.data, 0.0, in},
        {"kda o_proj", kda.kda.o_proj.data, 0.0, 0.5 / std::sqrt(128.0)},
        {"mla kv_b_proj", mla.mla.kv_b_proj.data, 0.0, 1.0 / std::sqrt(64.0)},
        {"router", mla.moe.gate.data, 0.0, in},
        {"expert w2", mla.moe.experts[0].down.data, 0.0, 0.5 / std::sqrt(64.0)},
        {"dense down", w.layers[0].mlp.down.data, 0.0, 0.5 / std::sqrt(512.0)},
    };
    for (const auto& s : spreads) {
        EXPECT_NEAR(mean(s.values), s.center, 0.05 * s.scale) << s.what;
        EXPECT_NEAR(rms(s.values, s.center), s.scale, 0.1 * s.scale) << s.what;
    }
    EXPECT_NEAR(mean(kda.input_layernorm), 1.0, 0.03);
    EXPECT_NEAR(rms(kda.input_layernorm, 1.0), 0.1, 0.03);
    EXPECT_NEAR(mean(kda.kda.dt_bias), -1.0, 0.15);
    for (float a : kda.kda.a_log) {
        EXPECT_GE(a, 0.0f);
        EXPECT_LE(a, std::log(16.0f));
    }
    EXPECT_NEAR(rms(kda.kda.q_conv, 0.0), 0.5, 0.06);  // 512 values
}

TEST(Checkpoint, MakeTinyModelErrorsExitNonZeroWithAMessage) {
    const std::string dir = kl::test::temp_dir() + "/m";
    struct Case {
        std::string args;
        int code;
        std::string fragment;
    };
    const std::vector<Case> cases = {
        {"", 2, "usage"},
        {"\"" + dir + "\" --preset huge", 1, "huge"},
        {"\"" + dir + "\" --dtype f16", 1, "--dtype"},
        {"\"" + dir + "\" --shards 0", 1, "--shards"},
        {"\"" + dir + "\" --seed -3", 1, "--seed"},
        {"\"" + dir + "\" --seed", 2, "--seed"},
        {"\"" + dir + "\" --colour red", 2, "--colour"},
        {"\"" + dir + "\" --config /nonexistent/config.json", 1, "/nonexistent/config.json"},
    };
    for (const auto& c : cases) {
        std::string err;
        EXPECT_EQ(run_tool(c.args, nullptr, &err), c.code) << c.args;
        EXPECT_NE(err.find(c.fragment), std::string::npos) << c.args << ": " << err;
    }
    const std::string bad_config = kl::test::temp_dir() + "/bad.json";
    write_file(bad_config, "{\"hidden_size\": \"wide\"}");
    std::string err;
    EXPECT_EQ(run_tool("\"" + dir + "\" --config " + bad_config, nullptr, &err), 1);
    EXPECT_NE(err.find("hidden_size"), std::string::npos) << err;
}

}  // namespace
