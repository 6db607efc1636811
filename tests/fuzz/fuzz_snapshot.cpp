// libFuzzer target: kl_session_state_load on the fuzz bytes (docs/design/architecture.md,
// "Snapshots" and "Fuzzing"). A micro random model is made once; for each input a session
// is put at a known state, the bytes are loaded into it, and then:
//   - a failed load must leave the session exactly as it was (its own snapshot unchanged);
//   - a load that succeeds must give a session that runs a step and saves again.
//
// Input: one mode byte, then the snapshot. Mode bit 0 rewrites the trailer checksum and bit 1
// the model fingerprint before loading (so that mutations reach the checks behind them);
// bit 2 loads into a session of unbounded capacity (max_context UINT64_MAX) instead of 64.
//
// KL_FUZZ_WRITE_SEEDS=DIR fuzz_snapshot writes the seed corpus (snapshots of the micro model
// at a few positions) into DIR and exits.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "kimi_linear.h"

namespace {

// Two layers (KDA, then MLA with a MoE), widths of a few: a snapshot is about 1 KB.
const char* const kConfig = R"({
  "hidden_size": 8, "num_hidden_layers": 2, "vocab_size": 16, "intermediate_size": 8,
  "rms_norm_eps": 1e-5, "num_attention_heads": 1, "kv_lora_rank": 4, "qk_nope_head_dim": 4,
  "qk_rope_head_dim": 2, "v_head_dim": 4,
  "linear_attn_config": {"num_heads": 1, "head_dim": 4, "short_conv_kernel_size": 3,
                         "kda_layers": [1], "full_attn_layers": [2]},
  "num_experts": 2, "num_experts_per_token": 1, "num_shared_experts": 1,
  "moe_intermediate_size": 4, "first_k_dense_replace": 1, "model_max_length": 64
})";
constexpr size_t kHeaderBytes = 56, kReservedAt = 12, kFingerprintAt = 16;

kl_model* g_model = nullptr;
kl_session* g_bounded = nullptr;    // max_context 64
kl_session* g_unbounded = nullptr;  // max_context UINT64_MAX
uint64_t g_fingerprint = 0;

void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "fuzz_snapshot: %s: %s\n", what, kl_last_error());
        std::abort();
    }
}

kl_session* new_session(uint64_t max_context) {
    kl_session_params params;
    kl_session_params_default(&params);
    params.max_context = max_context;
    kl_session* session = nullptr;
    check(kl_session_create(g_model, &params, &session) == KL_OK, "session");
    return session;
}

std::vector<uint8_t> save(kl_session* session) {
    size_t n = 0;
    check(kl_session_state_size(session, &n) == KL_OK, "state size");
    std::vector<uint8_t> blob(n);
    check(kl_session_state_save(session, blob.data(), n, &n) == KL_OK, "save");
    return blob;
}

// Puts a session at the known state each input starts from.
void prepare(kl_session* session) {
    check(kl_session_reset(session) == KL_OK, "reset");
    const int32_t tokens[] = {3, 1, 4};
    check(kl_session_append(session, tokens, 3, KL_LOGITS_NONE, nullptr) == KL_OK, "append");
}

void fix_checksum(std::vector<uint8_t>& blob) {
    if (blob.size() < 8) return;
    uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a 64 (core/hash.h) of all but the trailer
    for (size_t i = 0; i + 8 < blob.size(); ++i) hash = (hash ^ blob[i]) * 0x100000001b3ull;
    std::memcpy(&blob[blob.size() - 8], &hash, 8);
}

void write_seeds(const std::string& dir) {
    std::filesystem::create_directories(dir);
    kl_session* session = new_session(64);
    auto write = [&](const std::string& name, uint8_t mode, const std::vector<uint8_t>& blob) {
        std::ofstream out(std::filesystem::path(dir) / name, std::ios::binary);
        out.put(static_cast<char>(mode));
        out.write(reinterpret_cast<const char*>(blob.data()),
                  static_cast<std::streamsize>(blob.size()));
        std::printf("%s: %zu bytes\n", name.c_str(), blob.size() + 1);
    };
    write("position_0", 3, save(session));  // no logits yet
    const int32_t tokens[] = {5, 9, 2, 6, 5, 3, 5, 8, 9, 7};
    check(kl_session_append(session, tokens, 1, KL_LOGITS_NONE, nullptr) == KL_OK, "append");
    write("position_1", 0, save(session));
    check(kl_session_append(session, tokens + 1, 9, KL_LOGITS_NONE, nullptr) == KL_OK, "append");
    write("position_10", 3, save(session));
    write("position_10_unbounded", 7, save(session));
    kl_session_free(session);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    kl_model_params params;
    kl_model_params_default(&params);
    params.device = KL_DEVICE_CPU;
    params.n_threads = 1;
    check(kl_model_create_random(kConfig, 5, &params, &g_model) == KL_OK, "model");
    if (const char* dir = std::getenv("KL_FUZZ_WRITE_SEEDS")) {
        write_seeds(dir);
        kl_model_free(g_model);
        std::exit(0);
    }
    g_bounded = new_session(64);
    g_unbounded = new_session(UINT64_MAX);
    const std::vector<uint8_t> blob = save(g_bounded);
    std::memcpy(&g_fingerprint, &blob[kFingerprintAt], 8);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const uint8_t mode = data[0];
    std::vector<uint8_t> blob(data + 1, data + size);
    if ((mode & 2) && blob.size() >= kHeaderBytes)
        std::memcpy(&blob[kFingerprintAt], &g_fingerprint, 8);
    if (mode & 1) fix_checksum(blob);

    kl_session* session = (mode & 4) ? g_unbounded : g_bounded;
    prepare(session);
    const std::vector<uint8_t> before = save(session);
    // blob.data() may be NULL for an empty vector: the API rejects NULL, so pass a byte.
    const uint8_t empty = 0;
    const kl_status status =
        kl_session_state_load(session, blob.empty() ? &empty : blob.data(), blob.size());
    if (status != KL_OK) {
        check(kl_last_error()[0] != '\0', "a failed load says why");
        check(status != KL_ERR_INTERNAL, "a bad snapshot is not an internal error");
        check(save(session) == before, "a failed load changed the session");
        return 0;
    }
    // Loaded: the session saves what it loaded, and goes on.
    uint64_t position = 0;
    check(kl_session_position(session, &position) == KL_OK, "position");
    // The same bytes, but for the reserved header field, which loading ignores and saving
    // writes as 0 (and so the checksum).
    std::vector<uint8_t> expected = blob;
    std::memset(&expected[kReservedAt], 0, 4);
    fix_checksum(expected);
    check(save(session) == expected, "a loaded snapshot saves back the same bytes");
    if (position < 64) {
        const int32_t token = 1;
        float logits[16];
        check(kl_session_append(session, &token, 1, KL_LOGITS_LAST, logits) == KL_OK, "step");
    }
    return 0;
}
