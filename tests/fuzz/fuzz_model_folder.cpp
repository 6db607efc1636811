// libFuzzer target: a whole model folder from the fuzz bytes, loaded through the C API
// (docs/design/architecture.md, "Fuzzing"; the rules it checks: docs/design/capi.md).
//
// Input: one flags byte, then up to six files separated by the line "\n#@#\n", in this
// order: config.json, model-00001-of-00002.safetensors, model-00002-of-00002.safetensors,
// model.safetensors.index.json, tiktoken.model, tokenizer_config.json. An empty part is a
// missing file. Flags: bit 0 also builds random weights from the config text
// (kl_model_create_random) when the config describes a small model; bit 1 names the first
// shard model.safetensors instead; bits 2-3 are the kl_weight_format both load with (so a
// bf16 folder is quantized on load, an FP8 or INT4 one kept or dequantized).
// The folder is one directory per process, emptied and rewritten for each input. A load
// that fails must leave *out NULL; one that succeeds must run a token and tokenize.
//
// KL_FUZZ_WRITE_SEEDS=DIR fuzz_model_folder writes the seed corpus (valid folders of a few
// micro models made by make_tiny_model, two of them rewritten in FP8 and INT4 by
// kl_checkpoint_quantize) into DIR and exits.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/weights.h"
#include "kimi_linear.h"

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kSeparator = "\n#@#\n";
const char* const kFileNames[] = {"config.json",
                                  "model-00001-of-00002.safetensors",
                                  "model-00002-of-00002.safetensors",
                                  "model.safetensors.index.json",
                                  "tiktoken.model",
                                  "tokenizer_config.json"};
constexpr size_t kFiles = sizeof(kFileNames) / sizeof(kFileNames[0]);
// Random weights only for configs this small: the library allocates what a valid config
// asks for, and the fuzzer's memory limit is 2 GB.
constexpr uint64_t kRandomParameterLimit = 1u << 18;

std::string g_dir;  // this process's model folder

void quiet_log(int, const char*, void*) {}

std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const fs::path& path, std::string_view bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

kl_model_params cpu_params(uint8_t flags) {
    kl_model_params params;
    kl_model_params_default(&params);
    params.device = KL_DEVICE_CPU;
    params.n_threads = 1;
    params.weight_format = static_cast<kl_weight_format>((flags >> 2) & 3);
    return params;
}

// A loaded model works: one token through a session, the info, and (with a tokenizer)
// tokenize and detokenize a short text.
void exercise(kl_model* model) {
    struct kl_model_info info = {};
    info.struct_size = sizeof(info);
    if (kl_model_info(model, &info) != KL_OK) std::abort();
    kl_session_params session_params;
    kl_session_params_default(&session_params);
    session_params.max_context = 8;
    kl_session* session = nullptr;
    if (kl_session_create(model, &session_params, &session) != KL_OK) std::abort();
    const int32_t token = static_cast<int32_t>(info.vocab_size - 1);
    if (kl_session_append(session, &token, 1, KL_LOGITS_NONE, nullptr) != KL_OK) std::abort();
    kl_session_free(session);
    int32_t ids[64];
    size_t n = 0;
    if (kl_tokenize(model, "Hi <|im_end|> 42", 16, 1, ids, 64, &n) == KL_OK) {
        char text[256];
        size_t len = 0;
        kl_detokenize(model, ids, n, text, sizeof text, &len);
    }
}

void try_random(const std::string& config_text, uint8_t flags) {
    try {  // size the config first, with the library's own parser
        const kl::ModelConfig config = kl::ModelConfig::from_json(config_text, "fuzz");
        if (kl::layout_size(config).parameters > kRandomParameterLimit) return;
    } catch (const std::exception&) {
        // Not valid: the C API must say so as well.
    }
    kl_model* model = nullptr;
    const kl_model_params params = cpu_params(flags);
    const kl_status status = kl_model_create_random(config_text.c_str(), 7, &params, &model);
    if ((status == KL_OK) != (model != nullptr)) std::abort();
    if (model) exercise(model);
    kl_model_free(model);
}

// ---- seeds ---------------------------------------------------------------------------------

// A micro model: two layers (KDA, then MLA with a MoE), widths of a few.
std::string micro_config(int vocab, bool tied) {
    return std::string(R"({
  "hidden_size": 8, "num_hidden_layers": 2, "vocab_size": )") +
           std::to_string(vocab) + R"(, "intermediate_size": 8,
  "rms_norm_eps": 1e-5, "num_attention_heads": 1, "kv_lora_rank": 4, "q_lora_rank": null,
  "qk_nope_head_dim": 4, "qk_rope_head_dim": 2, "v_head_dim": 4, "mla_use_nope": true,
  "linear_attn_config": {"num_heads": 1, "head_dim": 4, "short_conv_kernel_size": 2,
                         "kda_layers": [1], "full_attn_layers": [2]},
  "num_experts": 2, "num_experts_per_token": 1, "num_shared_experts": 1,
  "moe_intermediate_size": 4, "moe_router_activation_func": "sigmoid",
  "routed_scaling_factor": 2.0, "first_k_dense_replace": 1, "tie_word_embeddings": )" +
           (tied ? "true" : "false") + R"(, "model_max_length": 64
})";
}

// make_tiny_model's folder for `config` packed as one input; with `format` FP8 or INT4, that
// folder rewritten by kl_checkpoint_quantize in one shard (packed as model.safetensors, its
// index left out: the index names the shard by its written name).
std::string packed_folder(const std::string& config, const std::string& args, uint8_t flags,
                          bool tokenizer, kl_weight_format format) {
    const fs::path work = fs::path(g_dir) / "seed";
    fs::remove_all(work);
    fs::create_directories(work);
    write_file(work / "config.in.json", config);
    const std::string command = std::string(KL_MAKE_TINY_MODEL) + " " + (work / "m").string() +
                                " --config " + (work / "config.in.json").string() + " " + args +
                                " > /dev/null";
    if (std::system(command.c_str()) != 0) {
        std::fprintf(stderr, "failed: %s\n", command.c_str());
        std::exit(1);
    }
    fs::path m = work / "m";
    fs::path shard = m / "model.safetensors";
    if (format != KL_WEIGHTS_AUTO) {
        const fs::path q = work / "q";
        if (kl_checkpoint_quantize(m.c_str(), q.c_str(), format, 0) != KL_OK) {
            std::fprintf(stderr, "kl_checkpoint_quantize: %s\n", kl_last_error());
            std::exit(1);
        }
        fs::remove(q / "model.safetensors.index.json");
        m = q;
        shard = q / "model-00001-of-00001.safetensors";
    }
    const bool one_shard = fs::exists(shard);
    std::string packed(1, static_cast<char>(flags | (one_shard ? 2 : 0)));
    for (size_t i = 0; i < kFiles; ++i) {
        if (i) packed += kSeparator;
        fs::path file = m / kFileNames[i];
        if (i == 1 && one_shard) file = shard;
        if (i >= 4 && !tokenizer) continue;
        if (fs::exists(file)) packed += read_file(file);
    }
    return packed;
}

void write_seeds(const std::string& out_dir) {
    fs::create_directories(out_dir);
    struct Seed {
        const char* name;
        std::string config, args;
        uint8_t flags;
        bool tokenizer;
        kl_weight_format format = KL_WEIGHTS_AUTO;  // FP8 / INT4: the folder quantized
    };
    const uint8_t load_int4 = KL_WEIGHTS_INT4 << 2, load_bf16 = KL_WEIGHTS_BF16 << 2;
    const Seed seeds[] = {
        {"sharded_bf16", micro_config(16, false), "--seed 1 --shards 2", 1, false},
        {"one_shard_f32_tied", micro_config(16, true), "--seed 2 --shards 1 --dtype f32", 0, false},
        {"tokenizer_one_shard", micro_config(300, true), "--seed 3 --shards 1", 1, true},
        {"tokenizer_sharded", micro_config(300, false), "--seed 4 --shards 2", 0, true},
        {"fp8_stored", micro_config(16, false), "--seed 5 --shards 1", 1, false, KL_WEIGHTS_FP8},
        {"int4_stored_as_bf16", micro_config(16, true), "--seed 6 --shards 1", load_bf16, false,
         KL_WEIGHTS_INT4},
        {"bf16_int4_on_load", micro_config(16, false), "--seed 7 --shards 2", 1 | load_int4, false},
    };
    for (const Seed& seed : seeds) {
        const std::string packed =
            packed_folder(seed.config, seed.args, seed.flags, seed.tokenizer, seed.format);
        write_file(fs::path(out_dir) / seed.name, packed);
        std::printf("%s: %zu bytes\n", seed.name, packed.size());
    }
    fs::remove_all(fs::path(g_dir) / "seed");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    std::string pattern = (fs::temp_directory_path() / "kl_fuzz_model_folder_XXXXXX").string();
    if (!mkdtemp(pattern.data())) std::abort();
    g_dir = pattern;
    std::atexit([] {
        std::error_code ignored;
        fs::remove_all(g_dir, ignored);
    });
    kl_set_log_callback(quiet_log, nullptr);  // unused-tensor warnings on every input
    if (const char* out = std::getenv("KL_FUZZ_WRITE_SEEDS")) {
        write_seeds(out);
        std::exit(0);
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const uint8_t flags = data[0];
    const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);

    // Split into the files; an empty part is a missing file.
    std::vector<std::string_view> parts;
    for (size_t begin = 0;;) {
        const size_t end = input.find(kSeparator, begin);
        parts.push_back(input.substr(begin, end == std::string_view::npos ? end : end - begin));
        if (end == std::string_view::npos || parts.size() == kFiles) break;
        begin = end + kSeparator.size();
    }
    std::error_code ignored;
    for (const auto& entry : fs::directory_iterator(g_dir, ignored))
        fs::remove_all(entry.path(), ignored);
    for (size_t i = 0; i < parts.size(); ++i) {
        if (parts[i].empty()) continue;
        const char* name = (i == 1 && (flags & 2)) ? "model.safetensors" : kFileNames[i];
        write_file(fs::path(g_dir) / name, parts[i]);
    }

    kl_model* model = nullptr;
    const kl_model_params params = cpu_params(flags);
    const kl_status status = kl_model_load(g_dir.c_str(), &params, &model);
    if ((status == KL_OK) != (model != nullptr)) std::abort();        // a failure creates nothing
    if (status != KL_OK && kl_last_error()[0] == '\0') std::abort();  // and says why
    if (model) exercise(model);
    kl_model_free(model);

    if ((flags & 1) && !parts.empty()) try_random(std::string(parts[0]), flags);
    return 0;
}
