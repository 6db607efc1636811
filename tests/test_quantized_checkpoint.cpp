// FP8 and INT4 checkpoints end to end on the CPU: kimi quantize's writer (core/
// checkpoint_writer.h), loading them as stored, dequantized, or quantized on load
// (core/weight_store.h), and the errors a malformed one gives.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "allocation_failure.h"
#include "core/checkpoint_writer.h"
#include "core/model.h"
#include "core/quantize.h"
#include "core/safetensors.h"
#include "core/weight_store.h"
#include "expect_error.h"
#include "tiny_model.h"

namespace {

namespace fs = std::filesystem;
using kl::Status;
using kl::WeightFormat;
using kl::WeightRequest;
using kl::test::expect_error;

const std::string kTiny = "--preset tiny --seed 3";

std::string quantized_dir(WeightRequest format, uint64_t shard_bytes = 20000) {
    const std::string out = kl::test::temp_dir() + "/q";
    kl::write_checkpoint(kl::test::tiny_model_dir(kTiny), out, format, shard_bytes);
    return out;
}

std::vector<float> logits(const std::string& dir, WeightRequest weights) {
    kl::ModelLoadOptions options;
    options.device = kl::DeviceRequest::Cpu;
    options.n_threads = 1;
    options.weights = weights;
    const auto model = kl::Model::load(dir, options);
    auto state = model->backend().create_state(64);
    const std::vector<int32_t> tokens = {1, 5, 9, 2, 7, 3};
    std::vector<float> last(static_cast<size_t>(model->config().vocab_size));
    std::atomic<bool> cancel{false};
    model->backend().forward(*state, 0, tokens.data(), tokens.size(), last.data(), nullptr, cancel);
    return last;
}

std::map<std::string, std::string> files_of(const std::string& dir) {
    std::map<std::string, std::string> files;
    for (const auto& e : fs::directory_iterator(dir))
        files[e.path().filename().string()] = kl::test::read_file(e.path().string());
    return files;
}

nlohmann::json config_of(const std::string& dir) {
    return nlohmann::json::parse(kl::test::read_file(dir + "/config.json"));
}

void set_config(const std::string& dir, const nlohmann::json& config) {
    kl::test::write_file(dir + "/config.json", config.dump());
}

// Rewrites a checkpoint folder's tensors as one model.safetensors after `edit` changed them.
void rewrite(const std::string& dir,
             const std::function<void(std::vector<kl::TensorToWrite>&)>& edit) {
    std::vector<kl::TensorToWrite> tensors;
    {
        const auto checkpoint = kl::Checkpoint::open(dir);
        for (const auto& [name, v] : checkpoint->tensors())
            tensors.push_back({name, v.dtype, v.shape, {}, {v.data, v.data + v.nbytes}});
    }
    for (const auto& e : fs::directory_iterator(dir))
        if (e.path().extension() == ".safetensors" || e.path().extension() == ".json")
            if (e.path().filename() != "config.json") fs::remove(e.path());
    edit(tensors);
    kl::write_safetensors(dir + "/model.safetensors", tensors);
}

kl::TensorToWrite& find(std::vector<kl::TensorToWrite>& tensors, const std::string& name) {
    for (auto& t : tensors)
        if (t.name == name) return t;
    throw std::runtime_error("no tensor " + name);
}

const std::string kExpert = "model.layers.1.block_sparse_moe.experts.0.w1";

// The linear modules quantized_by_default keeps plain in the tiny model (KDA layers 0-2),
// in the writer's order: the KDA low-rank projections, then lm_head.
nlohmann::json plain_linear_modules() {
    nlohmann::json modules = nlohmann::json::array();
    for (int layer = 0; layer < 3; ++layer)
        for (const char* p : {"f_a_proj", "f_b_proj", "b_proj", "g_a_proj", "g_b_proj"})
            modules.push_back("model.layers." + std::to_string(layer) + ".self_attn." + p);
    modules.push_back("lm_head");
    return modules;
}

TEST(QuantizedCheckpoint, WriterShardsAndRecordsTheFormat) {
    const std::string fp8 = quantized_dir(WeightRequest::Fp8);
    const nlohmann::json q = config_of(fp8)["quantization_config"];
    EXPECT_EQ(q["quant_method"], "fp8");
    EXPECT_EQ(q["weight_block_size"], nlohmann::json::array({128, 128}));
    EXPECT_EQ(q["modules_to_not_convert"], plain_linear_modules());
    const auto index =
        nlohmann::json::parse(kl::test::read_file(fp8 + "/model.safetensors.index.json"));
    EXPECT_GT(files_of(fp8).size(), 4u);  // several shards at 20 kB each
    EXPECT_EQ(index["weight_map"][kExpert + ".weight_scale_inv"].get<std::string>().rfind(
                  "model-0000", 0),
              0u);
    const auto checkpoint = kl::Checkpoint::open(fp8);
    EXPECT_EQ(checkpoint->find(kExpert + ".weight")->dtype, kl::DType::F8_E4M3);
    EXPECT_EQ(checkpoint->find("lm_head.weight")->dtype, kl::DType::BF16);
    EXPECT_EQ(checkpoint->find("model.layers.0.self_attn.f_a_proj.weight")->dtype, kl::DType::BF16);
    EXPECT_EQ(checkpoint->find("model.layers.0.self_attn.q_proj.weight")->dtype,
              kl::DType::F8_E4M3);
    EXPECT_EQ(checkpoint->find("model.layers.1.block_sparse_moe.gate.weight")->dtype,
              kl::DType::BF16);

    const std::string int4 = quantized_dir(WeightRequest::Int4);
    const nlohmann::json c = config_of(int4)["quantization_config"];
    EXPECT_EQ(c["quant_method"], "compressed-tensors");
    EXPECT_EQ(c["format"], "pack-quantized");
    EXPECT_EQ(c["config_groups"]["group_0"]["weights"]["group_size"], 128);
    EXPECT_EQ(c["ignore"], plain_linear_modules());
    const auto packed = kl::Checkpoint::open(int4);
    EXPECT_EQ(packed->find(kExpert + ".weight"), nullptr);
    EXPECT_EQ(packed->find(kExpert + ".weight_packed")->dtype, kl::DType::I32);
    EXPECT_EQ(packed->find(kExpert + ".weight_scale")->dtype, kl::DType::BF16);
    EXPECT_EQ(packed->find(kExpert + ".weight_shape")->dtype, kl::DType::I64);
}

TEST(QuantizedCheckpoint, RewritingInItsOwnFormatGivesIdenticalFiles) {
    for (WeightRequest format : {WeightRequest::Fp8, WeightRequest::Int4}) {
        const std::string first = quantized_dir(format);
        const std::string extra = first + "/tokenizer_config.json";
        kl::test::write_file(extra, "{\"copied\": true}");
        const std::string second = kl::test::temp_dir() + "/again";
        kl::write_checkpoint(first, second, format, 20000);
        EXPECT_EQ(files_of(first), files_of(second));  // the copied file included
    }
}

// What a write into a single shard (of many tensors) held on the heap at its peak, and its
// largest tensor.
struct HeldByAWrite {
    uint64_t heap = 0;
    uint64_t largest = 0;
    uint64_t shard = 0;  // the shard's data bytes
};

// A checkpoint to write, and the weights to write it with.
struct WriteCase {
    const char* what;
    std::string in;
    WeightRequest format;
};

// `bf16` written as FP8 (in shards of 1 MB), an input whose tensors are stored quantized.
std::string fp8_of(const std::string& bf16) {
    const std::string fp8 = kl::test::temp_dir() + "/fp8";
    kl::write_checkpoint(bf16, fp8, WeightRequest::Fp8, 1u << 20);
    return fp8;
}

HeldByAWrite write_into_one_shard(const std::string& in, WeightRequest format) {
    const std::string out = kl::test::temp_dir() + "/out";
    kl::test::HeapPeak peak;
    const kl::CheckpointWriteSummary summary =
        kl::write_checkpoint(in, out, format, uint64_t(1) << 40);
    HeldByAWrite held;
    held.heap = peak.bytes();
    held.shard = summary.bytes;
    const auto written = kl::Checkpoint::open(out);
    for (const auto& entry : written->tensors())
        held.largest = std::max<uint64_t>(held.largest, entry.second.nbytes);
    EXPECT_EQ(summary.shards, 1u);
    return held;
}

// The writer holds one tensor at a time, not a shard: the most heap a write into a single
// shard of hundreds of tensors holds at once stays under twice its largest tensor, for each
// way a tensor is made (quantized, dequantized to F32), where holding the shard's tensors
// together would take the shard's bytes. Measured: 1.4-2.2 MB held for a 2 MB largest tensor
// in shards of 8-34 MB (2.9-3.4 MB while kept tensors were copied onto the heap); the writer
// that made a shard whole in memory held 11-35 MB.
TEST(QuantizedCheckpoint, AShardIsWrittenATensorAtATime) {
    if (!kl::test::HeapPeak::available()) GTEST_SKIP() << "operator new is not ours to count";
    const std::string bf16 = kl::test::tiny_model_dir("--preset small --seed 3");
    const std::string fp8 = fp8_of(bf16);
    for (const WriteCase& c : {WriteCase{"bf16 to fp8", bf16, WeightRequest::Fp8},
                               WriteCase{"bf16 to int4", bf16, WeightRequest::Int4},
                               WriteCase{"fp8 to f32", fp8, WeightRequest::Bf16}}) {
        SCOPED_TRACE(c.what);
        const HeldByAWrite held = write_into_one_shard(c.in, c.format);
        ASSERT_GT(held.shard, 3 * held.largest) << "the shard is not many tensors";
        EXPECT_LT(held.heap, 2 * held.largest) << "of a " << held.shard << "-byte shard";
    }
}

// A tensor kept in its stored form goes from the input's mapping to the file, never onto the
// heap: a write holds about the largest tensor that changes form, not the largest tensor. A
// tiny model with a 32768-token vocabulary has a 4 MB embedding and lm_head (kept bf16 in
// every format) and no other tensor over 32 kB; written as stored, quantized, and its FP8 form
// rewritten as FP8 and as stored (every tensor kept), it holds a small part of its largest
// tensor. Measured: 0.32-0.59 MB (the headers, index and checks) for a 4 MB largest tensor;
// copying each kept tensor onto the heap held 4.4-4.6 MB.
TEST(QuantizedCheckpoint, AKeptTensorIsWrittenFromTheMappedInput) {
    if (!kl::test::HeapPeak::available()) GTEST_SKIP() << "operator new is not ours to count";
    nlohmann::json config = config_of(kl::test::tiny_model_dir(kTiny));
    config["vocab_size"] = 32768;
    const std::string config_path = kl::test::temp_dir() + "/config.json";
    kl::test::write_file(config_path, config.dump());
    const std::string bf16 = kl::test::tiny_model_dir("--config " + config_path + " --seed 3");
    const std::string fp8 = fp8_of(bf16);
    for (const WriteCase& c : {WriteCase{"bf16 as stored", bf16, WeightRequest::AsStored},
                               WriteCase{"bf16 to fp8", bf16, WeightRequest::Fp8},
                               WriteCase{"bf16 to int4", bf16, WeightRequest::Int4},
                               WriteCase{"fp8 as fp8", fp8, WeightRequest::Fp8},
                               WriteCase{"fp8 as stored", fp8, WeightRequest::AsStored}}) {
        SCOPED_TRACE(c.what);
        const HeldByAWrite held = write_into_one_shard(c.in, c.format);
        EXPECT_EQ(held.largest, 32768u * 64 * 2);  // the embedding and lm_head
        EXPECT_LT(held.heap, held.largest / 4) << "of a " << held.shard << "-byte shard";
    }
}

TEST(QuantizedCheckpoint, StoredAndQuantizedOnLoadRunTheSameValues) {
    const std::string base = kl::test::tiny_model_dir(kTiny);
    const std::vector<float> bf16 = logits(base, WeightRequest::AsStored);
    std::vector<double> errors;
    for (WeightRequest format : {WeightRequest::Fp8, WeightRequest::Int4}) {
        const std::string dir = quantized_dir(format);
        const std::vector<float> stored = logits(dir, WeightRequest::AsStored);
        EXPECT_EQ(stored, logits(base, format));  // quantized on load: the same weights
        EXPECT_EQ(stored, logits(dir, format));
        EXPECT_EQ(stored, logits(dir, WeightRequest::Bf16));  // dequantized: the same values
        EXPECT_NE(stored, bf16);
        double diff = 0, norm = 0;
        for (size_t i = 0; i < bf16.size(); ++i)
            diff += std::fabs(stored[i] - bf16[i]), norm += std::fabs(bf16[i]);
        errors.push_back(diff / norm);
    }
    // FP8 (3 mantissa bits) is closer to bf16 than INT4 (16 levels a group); on this tiny
    // random model, measured: 0.10 and 0.56.
    EXPECT_LT(errors[0], 0.2);
    EXPECT_LT(errors[0], errors[1] / 2);
    EXPECT_LT(errors[1], 1.0);
}

TEST(QuantizedCheckpoint, DequantizedIsExactlyDequantizeOfTheStoredForm) {
    for (WeightRequest format : {WeightRequest::Fp8, WeightRequest::Int4}) {
        const std::string dir = quantized_dir(format);
        const auto checkpoint = kl::Checkpoint::open(dir);
        const kl::ModelConfig config = kl::ModelConfig::load(dir);
        const kl::ModelLayout layout(config);
        const auto store = kl::WeightStore::open(
            layout, *checkpoint, kl::load_quantization_config(dir), WeightRequest::AsStored);
        const auto base = kl::Checkpoint::open(kl::test::tiny_model_dir(kTiny));
        size_t quantized = 0;
        layout.visit([&](const kl::TensorSpec& spec) {
            std::vector<float> values(spec.numel()), expected(spec.numel());
            store->dequantized(spec, values.data());
            if (store->format(spec) == WeightFormat::Plain) {
                base->find(spec.name)->to_f32(expected.data());
                EXPECT_EQ(values, expected) << spec.name;
                return;
            }
            ++quantized;
            const kl::QuantizedTensor q = store->quantized(spec);
            kl::dequantize(q, expected.data());
            EXPECT_EQ(values, expected) << spec.name;
            // The stored form is what quantize() makes of the bf16 values.
            std::vector<float> original(spec.numel());
            base->find(spec.name)->to_f32(original.data());
            const kl::QuantizedTensor again =
                kl::quantize(q.format, original.data(), q.rows, q.cols);
            EXPECT_EQ(q.data, again.data) << spec.name;
            EXPECT_EQ(q.scales, again.scales) << spec.name;
        });
        EXPECT_GT(quantized, 10u);
    }
}

TEST(QuantizedCheckpoint, QuantizationConfigErrorsNameTheKey) {
    const std::string dir = quantized_dir(WeightRequest::Fp8);
    const nlohmann::json good = config_of(dir);
    struct Case {
        const char* key;
        nlohmann::json value;
        Status status;
        const char* fragment;
    } cases[] = {
        {"quant_method", "gptq", Status::Unsupported, "quantization_config.quant_method"},
        {"quant_method", 3, Status::Format, "quantization_config.quant_method"},
        {"fmt", "e5m2", Status::Unsupported, "quantization_config.fmt"},
        {"activation_scheme", "static", Status::Unsupported, "activation_scheme"},
        {"weight_block_size", {64, 64}, Status::Unsupported, "weight_block_size"},
        {"weight_block_size", nullptr, Status::Format, "weight_block_size"},
        {"modules_to_not_convert", "lm_head", Status::Format, "modules_to_not_convert"},
    };
    for (const Case& c : cases) {
        nlohmann::json config = good;
        config["quantization_config"][c.key] = c.value;
        set_config(dir, config);
        expect_error([&] { logits(dir, WeightRequest::AsStored); }, c.status, {c.fragment});
    }
    const std::string int4 = quantized_dir(WeightRequest::Int4);
    const nlohmann::json good4 = config_of(int4);
    for (auto [key, value] : {std::pair<const char*, nlohmann::json>{"num_bits", 8},
                              {"symmetric", false},
                              {"strategy", "channel"},
                              {"group_size", 32},
                              {"type", "float"}}) {
        nlohmann::json config = good4;
        config["quantization_config"]["config_groups"]["group_0"]["weights"][key] = value;
        set_config(int4, config);
        expect_error([&] { logits(int4, WeightRequest::AsStored); }, Status::Unsupported,
                     {std::string("config_groups.group_0.weights.") + key});
    }
}

TEST(QuantizedCheckpoint, MalformedFp8TensorsAreFormatErrorsNamingThem) {
    const std::string dir = quantized_dir(WeightRequest::Fp8);
    const std::string scale = kExpert + ".weight_scale_inv";
    rewrite(dir, [&](auto& t) {
        find(t, scale).shape = {1, 2};
        find(t, scale).bytes.resize(8);
    });
    expect_error([&] { logits(dir, WeightRequest::AsStored); }, Status::Format,
                 {scale, "[1,2]", "[1,1]"});

    const std::string missing = quantized_dir(WeightRequest::Fp8);
    rewrite(missing, [&](auto& t) {
        t.erase(std::find_if(t.begin(), t.end(), [&](auto& x) { return x.name == scale; }));
    });
    expect_error([&] { logits(missing, WeightRequest::AsStored); }, Status::Format,
                 {kExpert + ".weight", "weight_scale_inv", "missing"});

    const std::string nan = quantized_dir(WeightRequest::Fp8);
    rewrite(nan, [&](auto& t) {
        const float bad = std::nanf("");
        std::memcpy(find(t, scale).bytes.data(), &bad, 4);
    });
    expect_error([&] { logits(nan, WeightRequest::AsStored); }, Status::Format, {scale, "finite"});

    // FP8 codes in a checkpoint whose config.json says nothing of quantization.
    const std::string unsaid = quantized_dir(WeightRequest::Fp8);
    nlohmann::json config = config_of(unsaid);
    config.erase("quantization_config");
    set_config(unsaid, config);
    expect_error([&] { logits(unsaid, WeightRequest::AsStored); }, Status::Format,
                 {"self_attn.q_proj.weight has dtype F8_E4M3", "must be BF16"});

    // A non-linear tensor (the router) stored as FP8.
    const std::string router = quantized_dir(WeightRequest::Fp8);
    const std::string gate = "model.layers.1.block_sparse_moe.gate.weight";
    rewrite(router, [&](auto& t) {
        kl::TensorToWrite& g = find(t, gate);
        g.dtype = kl::DType::F8_E4M3;
        g.bytes.resize(g.bytes.size() / 2);
    });
    expect_error([&] { logits(router, WeightRequest::AsStored); }, Status::Format,
                 {gate, "only linear"});
}

TEST(QuantizedCheckpoint, MalformedInt4TensorsAreNamed) {
    const std::string packed = kExpert + ".weight_packed";
    const std::string dir = quantized_dir(WeightRequest::Int4);
    rewrite(dir, [&](auto& t) {
        find(t, packed).shape[1] += 1, find(t, packed).bytes.resize(find(t, packed).bytes.size() +
                                                                    4 * find(t, packed).shape[0]);
    });
    expect_error([&] { logits(dir, WeightRequest::AsStored); }, Status::Format, {packed, "shape"});

    const std::string zp = quantized_dir(WeightRequest::Int4);
    rewrite(zp, [&](auto& t) {
        t.push_back({kExpert + ".weight_zero_point", kl::DType::I32, {1}, {}, {0, 0, 0, 0}});
    });
    expect_error([&] { logits(zp, WeightRequest::AsStored); }, Status::Unsupported,
                 {kExpert + ".weight_zero_point", "symmetric"});

    const std::string shape = quantized_dir(WeightRequest::Int4);
    rewrite(shape, [&](auto& t) { find(t, kExpert + ".weight_shape").bytes[0] ^= 1; });
    expect_error([&] { logits(shape, WeightRequest::AsStored); }, Status::Format,
                 {kExpert + ".weight_shape", "says"});

    const std::string scale = quantized_dir(WeightRequest::Int4);
    rewrite(scale, [&](auto& t) {
        auto& s = find(t, kExpert + ".weight_scale");
        s.shape = {s.shape[1], s.shape[0]};
        if (s.shape[0] == s.shape[1]) s.shape = {1, s.shape[0] * s.shape[1]};
    });
    expect_error([&] { logits(scale, WeightRequest::AsStored); }, Status::Format,
                 {kExpert + ".weight_scale", "groups of 128"});
}

TEST(QuantizedCheckpoint, ScaleShapesThatOverflowFailBeforeAnyAllocation) {
    const std::string dir = quantized_dir(WeightRequest::Fp8);
    const std::string scale = kExpert + ".weight_scale_inv";
    rewrite(dir, [](auto&) {});
    // The header claims 2^60 scales for its 4 bytes: the safetensors parser refuses it
    // before anything is read or allocated from the claim.
    const std::string path = dir + "/model.safetensors";
    const std::string bytes = kl::test::read_file(path);
    uint64_t length = 0;
    std::memcpy(&length, bytes.data(), 8);
    nlohmann::json header = nlohmann::json::parse(bytes.substr(8, length));
    header[scale]["shape"] = {int64_t(1) << 30, int64_t(1) << 30};
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    const uint64_t new_length = text.size();
    std::string patched(reinterpret_cast<const char*>(&new_length), 8);
    kl::test::write_file(path, patched + text + bytes.substr(8 + length));
    expect_error([&] { logits(dir, WeightRequest::AsStored); }, Status::Format, {scale, "needs"});
}

TEST(QuantizedCheckpoint, RandomModelsQuantizeLikeTheirFiles) {
    // Model::create_random with a weight format equals the same random checkpoint on disk
    // quantized on load.
    const std::string base = kl::test::tiny_model_dir(kTiny);
    const kl::ModelConfig config = kl::ModelConfig::load(base);
    kl::ModelLoadOptions options;
    options.device = kl::DeviceRequest::Cpu;
    options.n_threads = 1;
    options.weights = WeightRequest::Int4;
    const auto model = kl::Model::create_random(config, 3, options);
    auto state = model->backend().create_state(64);
    const std::vector<int32_t> tokens = {1, 5, 9, 2, 7, 3};
    std::vector<float> last(static_cast<size_t>(config.vocab_size));
    std::atomic<bool> cancel{false};
    model->backend().forward(*state, 0, tokens.data(), tokens.size(), last.data(), nullptr, cancel);
    EXPECT_EQ(last, logits(base, WeightRequest::Int4));
}

TEST(QuantizedCheckpoint, ParameterCountsGiveTheBytesOfTheWeightsAsTheyLoad) {
    const kl::ModelConfig config = kl::ModelConfig::load(kl::test::tiny_model_dir(kTiny));
    const kl::ModelLayout layout(config);
    const kl::ParameterCounts plain = kl::count_parameters(config, layout);
    EXPECT_EQ(plain.active_plain, plain.active);
    EXPECT_EQ(plain.routed_plain, plain.routed);
    EXPECT_EQ(plain.active_quantized_bytes + plain.routed_quantized_bytes, 0u);
    EXPECT_EQ(plain.decode_bytes(kl::DeviceKind::Cpu), plain.active * 4);
    EXPECT_EQ(plain.decode_bytes(kl::DeviceKind::Cuda), plain.active * 2);
    EXPECT_EQ(plain.routed_bytes(kl::DeviceKind::Cuda), plain.routed * 2);

    // The tiny preset's tensors that FP8 and INT4 loads quantize (quantized_by_default: the
    // linear weights but lm_head and KDA's low-rank f/g/b projections), by shape [rows, cols]:
    // how many a decode step reads (2 of the 8 routed experts of each of the 3 MoE layers) and
    // how many are routed experts'.
    struct Group {
        int64_t rows, cols;
        uint64_t active, routed;
    };
    const std::vector<Group> groups = {
        {32, 64, 3 * 3 + 3 + 3 + 3 * 2 * 2, 3 * 8 * 2},  // KDA q/k/v, shared and routed w1, w3
        {64, 32, 3 + 2 + 3 + 3 * 2, 3 * 8},  // KDA o_proj, MLA kv_b/o_proj, shared, routed w2
        {48, 64, 1, 0},                      // MLA q_proj
        {40, 64, 1, 0},                      // MLA kv_a_proj_with_mqa
        {128, 64, 2, 0},                     // layer 0's dense MLP gate, up
        {64, 128, 1, 0},                     // and down
    };
    // Each is one 128 x 128 FP8 block (one fp32 scale) and one 128-column INT4 group a row
    // (8 values a 32-bit word, one fp32 scale).
    auto fp8 = [](const Group& g) { return static_cast<uint64_t>(g.rows * g.cols + 4); };
    auto int4 = [](const Group& g) { return static_cast<uint64_t>(g.rows * (g.cols / 8 * 4 + 4)); };
    for (WeightRequest request : {WeightRequest::Fp8, WeightRequest::Int4}) {
        SCOPED_TRACE(request == WeightRequest::Fp8 ? "fp8" : "int4");
        const auto store = kl::WeightStore::random(layout, 1, request);
        const kl::ParameterCounts counts = kl::count_parameters(
            config, layout, [&](const kl::TensorSpec& s) { return store->format(s); });
        uint64_t params = 0, active = 0, routed = 0;
        for (const Group& g : groups) {
            const uint64_t bytes = request == WeightRequest::Fp8 ? fp8(g) : int4(g);
            params += g.active * static_cast<uint64_t>(g.rows * g.cols);
            active += g.active * bytes;
            routed += g.routed * bytes;
        }
        EXPECT_EQ(counts.total, plain.total);
        EXPECT_EQ(counts.active, plain.active);
        EXPECT_EQ(counts.routed, plain.routed);
        EXPECT_EQ(counts.active_plain, plain.active - params);
        EXPECT_EQ(counts.active_quantized_bytes, active);
        EXPECT_EQ(counts.routed_plain, 0u);
        EXPECT_EQ(counts.routed_quantized_bytes, routed);
        // The CPU backend holds every weight as fp32; the CUDA one plain weights as bf16 and
        // quantized ones as they load.
        EXPECT_EQ(counts.decode_bytes(kl::DeviceKind::Cpu), plain.active * 4);
        EXPECT_EQ(counts.routed_bytes(kl::DeviceKind::Cpu), plain.routed * 4);
        EXPECT_EQ(counts.decode_bytes(kl::DeviceKind::Cuda), (plain.active - params) * 2 + active);
        EXPECT_EQ(counts.routed_bytes(kl::DeviceKind::Cuda), routed);
    }
}

}  // namespace
