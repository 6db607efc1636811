// make_tiny_model: writes a random-weight Kimi Linear checkpoint of any config in the Hugging
// Face layout (config.json + safetensors, sharded through model.safetensors.index.json).
// Deterministic by seed on every platform: the counter-based values of core/random_init.h.
// With it, a tokenizer in the released model's format (tiktoken.model + tokenizer_config.json
// with the Kimi chat tokens and template), trained on a small corpus to fill the vocabulary.
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "core/tokenizer/tokenizer.h"
#include "core/weights.h"
#include "bpe_trainer.h"
#include "tokenizer_corpus.h"

namespace {

const char* kUsage =
    "usage: make_tiny_model OUT_DIR [--preset tiny|small|100m] [--config FILE.json]\n"
    "                       [--seed N] [--shards N] [--dtype bf16|f32] [--corpus FILE]\n"
    "  The tokenizer (vocab_size >= 272) is trained on --corpus (default: the bundled\n"
    "  tools/make_tiny_model/tokenizer_corpus.txt, compiled into this program).\n";

// Added tokens after the BPE ranks, as in the released model (which reserves 256): the chat
// tokens first, then reserved ones up to vocab_size.
const char* const kNamedSpecials[] = {"[BOS]",         "[EOS]",         "<|im_end|>",
                                      "<|im_user|>",   "<|im_assistant|>", "<|im_system|>",
                                      "<|im_middle|>", "[UNK]",         "[PAD]"};
constexpr int64_t kReservedSpecials = 16;

// The released models' template: a conversation without a system message opens with a
// default one; tool results are system-side messages.
const char* kChatTemplate =
    "{%- for message in messages -%}"
    "{%- if loop.first and messages[0]['role'] != 'system' -%}"
    "<|im_system|>system<|im_middle|>You are a helpful assistant<|im_end|>"
    "{%- endif -%}"
    "{%- if message['role'] == 'system' -%}<|im_system|>system<|im_middle|>"
    "{%- elif message['role'] == 'user' -%}<|im_user|>user<|im_middle|>"
    "{%- elif message['role'] == 'assistant' -%}<|im_assistant|>assistant<|im_middle|>"
    "{%- elif message['role'] == 'tool' -%}<|im_system|>tool<|im_middle|>"
    "{%- endif -%}"
    "{{ message['content'] }}<|im_end|>"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_assistant|>assistant<|im_middle|>{%- endif -%}";

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) kl::fail(kl::Status::Io, "cannot open " + path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

void write_text(const std::filesystem::path& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary);
    out << text;
    if (!out) kl::fail(kl::Status::Io, "cannot write " + path.string());
}

// Writes tiktoken.model and tokenizer_config.json covering ids 0..vocab_size-1; checks that
// the runtime's loader accepts them. False when the vocabulary is too small for one.
bool write_tokenizer(const std::filesystem::path& dir, const kl::ModelConfig& config,
                     std::string_view corpus) {
    if (config.vocab_size < 256 + kReservedSpecials) return false;
    const std::vector<std::string> tokens =
        kl::train_bpe(corpus, static_cast<size_t>(config.vocab_size - kReservedSpecials));
    const std::string model_text = kl::tiktoken_model_text(tokens);
    nlohmann::json added = nlohmann::json::object();
    const size_t named = sizeof(kNamedSpecials) / sizeof(kNamedSpecials[0]);
    for (int64_t id = static_cast<int64_t>(tokens.size()); id < config.vocab_size; ++id) {
        const size_t k = static_cast<size_t>(id) - tokens.size();
        const std::string content = k < named ? std::string(kNamedSpecials[k])
                                              : "<|reserved_token_" + std::to_string(k) + "|>";
        added[std::to_string(id)] = {{"content", content}, {"lstrip", false},
                                     {"normalized", false}, {"rstrip", false},
                                     {"single_word", false}, {"special", true}};
    }
    nlohmann::json tokenizer_config = {
        {"added_tokens_decoder", added}, {"bos_token", "[BOS]"},      {"eos_token", "[EOS]"},
        {"pad_token", "[PAD]"},          {"unk_token", "[UNK]"},      {"chat_template", kChatTemplate},
        {"model_max_length", config.max_context}, {"tokenizer_class", "TikTokenTokenizer"}};
    const std::string config_text = tokenizer_config.dump(2) + "\n";
    kl::Tokenizer::from_text(model_text, config_text, config.vocab_size, dir.string());
    write_text(dir / "tiktoken.model", model_text);
    write_text(dir / "tokenizer_config.json", config_text);
    std::printf("tokenizer: %zu BPE ranks, %lld added tokens\n", tokens.size(),
                static_cast<long long>(config.vocab_size - static_cast<int64_t>(tokens.size())));
    return true;
}

// A whole number in [lo, hi] for `flag`; std::stoull would accept "-1" and "3x".
uint64_t parse_number(const std::string& flag, const std::string& value, uint64_t lo, uint64_t hi) {
    char* end = nullptr;
    errno = 0;
    const unsigned long long n = std::strtoull(value.c_str(), &end, 10);
    if (value.empty() || !std::isdigit(static_cast<unsigned char>(value[0])) || *end != '\0' ||
        errno != 0 || n < lo || n > hi)
        kl::fail(kl::Status::InvalidArgument, flag + " wants a whole number in " +
                                                  std::to_string(lo) + ".." + std::to_string(hi) +
                                                  ", got \"" + value + "\"");
    return n;
}

kl::ModelConfig preset(const std::string& name) {
    kl::ModelConfig c;
    c.rms_norm_eps = 1e-5f;
    c.short_conv_kernel_size = 4;
    c.routed_scaling_factor = 2.446f;
    c.num_shared_experts = 1;
    c.first_k_dense_replace = 1;
    c.max_context = 4096;
    if (name == "tiny") {
        c.hidden_size = 64, c.num_hidden_layers = 4, c.vocab_size = 256, c.intermediate_size = 128;
        c.num_attention_heads = 2, c.kv_lora_rank = 32, c.qk_nope_head_dim = 16;
        c.qk_rope_head_dim = 8, c.v_head_dim = 16;
        c.kda_num_heads = 2, c.kda_head_dim = 16;
        c.kda_layers = {1, 2, 3}, c.full_attn_layers = {4};
        c.num_experts = 8, c.num_experts_per_token = 2, c.moe_intermediate_size = 32;
    } else if (name == "small") {
        c.hidden_size = 256, c.num_hidden_layers = 8, c.vocab_size = 4096,
        c.intermediate_size = 512;
        c.num_attention_heads = 4, c.kv_lora_rank = 64, c.qk_nope_head_dim = 32;
        c.qk_rope_head_dim = 16, c.v_head_dim = 32;
        c.kda_num_heads = 4, c.kda_head_dim = 32;
        c.kda_layers = {1, 2, 3, 5, 6, 7}, c.full_attn_layers = {4, 8};
        c.num_experts = 16, c.num_experts_per_token = 4, c.moe_intermediate_size = 64;
        c.use_grouped_topk = true, c.num_expert_group = 4, c.topk_group = 2;
    } else if (name == "100m") {
        // About 100M parameters with the released hybrid pattern (KDA:MLA = 3:1).
        c.hidden_size = 768, c.num_hidden_layers = 8, c.vocab_size = 32000,
        c.intermediate_size = 2048;
        c.num_attention_heads = 8, c.kv_lora_rank = 256, c.qk_nope_head_dim = 64;
        c.qk_rope_head_dim = 32, c.v_head_dim = 64;
        c.kda_num_heads = 6, c.kda_head_dim = 128;
        c.kda_layers = {1, 2, 3, 5, 6, 7}, c.full_attn_layers = {4, 8};
        c.num_experts = 16, c.num_experts_per_token = 4, c.moe_intermediate_size = 128;
        c.max_context = 32768;
    } else {
        kl::fail(kl::Status::InvalidArgument,
                 "unknown preset \"" + name + "\" (tiny, small, 100m)");
    }
    c.validate("preset " + name);
    return c;
}

int run(int argc, char** argv) {
    if (argc < 2 || std::string(argv[1]).rfind("--", 0) == 0) {
        std::fputs(kUsage, stderr);
        return 2;
    }
    const std::string out_dir = argv[1];
    std::string preset_name = "tiny", config_file, dtype_name = "bf16";
    std::string corpus_file;  // empty: the bundled corpus
    uint64_t seed = 0;
    int shards = 2;
    for (int i = 2; i < argc; ++i) {
        const std::string flag = argv[i];
        if (i + 1 >= argc) {
            std::fprintf(stderr, "%s needs a value\n%s", flag.c_str(), kUsage);
            return 2;
        }
        const std::string value = argv[++i];
        if (flag == "--preset")
            preset_name = value;
        else if (flag == "--config")
            config_file = value;
        else if (flag == "--seed")
            seed = parse_number(flag, value, 0, UINT64_MAX);
        else if (flag == "--shards")  // the shard names have five digits
            shards = static_cast<int>(parse_number(flag, value, 1, 99999));
        else if (flag == "--dtype")
            dtype_name = value;
        else if (flag == "--corpus")
            corpus_file = value;
        else {
            std::fprintf(stderr, "unknown option %s\n%s", flag.c_str(), kUsage);
            return 2;
        }
    }
    if (dtype_name != "bf16" && dtype_name != "f32")
        kl::fail(kl::Status::InvalidArgument, "--dtype must be bf16 or f32");
    const kl::DType matrix_dtype = dtype_name == "bf16" ? kl::DType::BF16 : kl::DType::F32;

    kl::ModelConfig config;
    if (!config_file.empty()) {
        std::ifstream in(config_file);
        if (!in) kl::fail(kl::Status::Io, "cannot open " + config_file);
        std::stringstream text;
        text << in.rdbuf();
        config = kl::ModelConfig::from_json(text.str(), config_file);
    } else {
        config = preset(preset_name);
    }

    namespace fs = std::filesystem;
    fs::create_directories(out_dir);
    {
        std::ofstream out(fs::path(out_dir) / "config.json");
        out << config.to_json();
        if (!out) kl::fail(kl::Status::Io, "cannot write config.json in " + out_dir);
    }

    // Tensors in expected order, split into shards of roughly equal byte counts.
    const std::vector<kl::TensorSpec> specs = kl::expected_tensors(config);
    uint64_t total_params = 0;
    for (const auto& s : specs) {
        uint64_t n = 1;
        for (int64_t d : s.shape) n *= static_cast<uint64_t>(d);
        total_params += n;
    }
    const kl::TensorSource random_values = kl::random_tensor_source(seed);
    std::map<std::string, std::string> weight_map;
    uint64_t total_bytes = 0, params_done = 0;
    size_t next = 0;
    for (int shard = 1; shard <= shards; ++shard) {
        std::vector<kl::TensorToWrite> batch;
        const uint64_t shard_end = total_params * static_cast<uint64_t>(shard) / shards;
        while (next < specs.size() && (params_done < shard_end || shard == shards)) {
            const kl::TensorSpec& spec = specs[next++];
            kl::TensorToWrite t;
            t.name = spec.name;
            t.shape = spec.shape;
            t.dtype = spec.dtype == kl::DType::F32 ? kl::DType::F32 : matrix_dtype;
            uint64_t n = 1;
            for (int64_t d : spec.shape) n *= static_cast<uint64_t>(d);
            t.values.resize(n);
            random_values(spec, t.values.data());
            params_done += n;
            total_bytes += n * kl::dtype_size(t.dtype);
            batch.push_back(std::move(t));
        }
        char name[64];
        if (shards == 1)
            std::snprintf(name, sizeof(name), "model.safetensors");
        else
            std::snprintf(name, sizeof(name), "model-%05d-of-%05d.safetensors", shard, shards);
        for (const auto& t : batch) weight_map[t.name] = name;
        kl::write_safetensors((fs::path(out_dir) / name).string(), batch);
    }
    if (shards > 1) {
        nlohmann::json index;
        index["metadata"] = {{"total_size", total_bytes}};
        index["weight_map"] = weight_map;
        std::ofstream out(fs::path(out_dir) / "model.safetensors.index.json");
        out << index.dump(2) << "\n";
        if (!out) kl::fail(kl::Status::Io, "cannot write the index in " + out_dir);
    }
    const std::string corpus_text = corpus_file.empty() ? std::string() : read_text(corpus_file);
    const std::string_view corpus =
        corpus_file.empty() ? kl::bundled_tokenizer_corpus() : std::string_view(corpus_text);
    if (!write_tokenizer(out_dir, config, corpus))
        std::printf("no tokenizer: vocab_size %lld leaves no room for 256 bytes + %lld added tokens\n",
                    static_cast<long long>(config.vocab_size), static_cast<long long>(kReservedSpecials));
    std::printf("wrote %s (%zu tensors, %llu parameters, %d shards)\n", out_dir.c_str(),
                specs.size(), static_cast<unsigned long long>(total_params), shards);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "make_tiny_model: %s\n", e.what());
        return 1;
    }
}
