#include "session.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "error.h"
#include "hash.h"
#include "sampler.h"
#include "state_io.h"

namespace kl {
namespace {

// Snapshot layout (little-endian):
//   header: magic "KLSNAP\r\n" (8), format version u32, reserved u32, model fingerprint u64,
//           position u64, vocab u64, has_logits u64, backend bytes u64
//   body:   history int32[position], logits f32[vocab] if has_logits, backend state
//           (core/state_io.h)
//   trailer: FNV-1a 64 of everything before it
constexpr char kMagic[8] = {'K', 'L', 'S', 'N', 'A', 'P', '\r', '\n'};
constexpr uint32_t kFormatVersion = 1;

struct SnapshotHeader {
    char magic[8];
    uint32_t version;
    uint32_t reserved;
    uint64_t fingerprint;
    uint64_t position;
    uint64_t vocab;
    uint64_t has_logits;
    uint64_t backend_bytes;
};
static_assert(sizeof(SnapshotHeader) == 56, "snapshot header must have no padding");

}  // namespace

Session::Session(const Model& model, uint64_t max_context) : model_(&model) {
    const ModelConfig& config = model.config();
    if (max_context == 0) max_context = static_cast<uint64_t>(config.max_context);
    state_ = model.backend().create_state(max_context);
    vocab_ = static_cast<size_t>(config.vocab_size);
}

Session::Session(const Session& other)
    : model_(other.model_),
      state_(other.backend().clone_state(*other.state_)),
      position_(other.position_),
      history_(other.history_),
      vocab_(other.vocab_),
      has_logits_(other.has_logits_) {}

std::unique_ptr<Session> Session::fork() const {
    return std::unique_ptr<Session>(new Session(*this));
}

void Session::throw_if_cancelled() {
    if (cancel_.exchange(false)) fail(Status::Cancelled, "cancelled");
}

void Session::append(const int32_t* tokens, size_t n, float* all_logits, float* last_logits) {
    const int64_t vocab = model_->config().vocab_size;
    if (n == 0) fail(Status::InvalidArgument, "n_tokens is 0: nothing to append");
    // Capacity first: n may be larger than the caller's array (then no token may be read).
    if (n > capacity() - position_)
        fail(Status::ContextFull, "context full: position " + std::to_string(position_) + " + " +
                                      std::to_string(n) + " tokens exceeds max_context " +
                                      std::to_string(capacity()));
    for (size_t i = 0; i < n; ++i)
        if (tokens[i] < 0 || tokens[i] >= vocab)
            fail(Status::InvalidArgument, "token " + std::to_string(tokens[i]) + " at index " +
                                              std::to_string(i) + " is out of range [0, " +
                                              std::to_string(vocab) + ")");

    history_.reserve(history_.size() + n);  // may throw: before any state changes
    try {
        // A decode step of a model that batches them joins the other threads' steps.
        DecodeBatcher* batcher = model_->batcher();
        if (batcher && n == 1 && !last_logits && !all_logits)
            batcher->step(*state_, position_, tokens[0], cancel_);
        else
            model_->backend().forward(*state_, position_, tokens, n, last_logits, all_logits,
                                      cancel_);
    } catch (const Error& e) {
        // The call a cancel stops consumes it (docs/design/capi.md "Cancel").
        if (e.status() == Status::Cancelled) cancel_.store(false);
        throw;
    }
    history_.insert(history_.end(), tokens, tokens + n);
    has_logits_ = true;
    position_ += n;
}

namespace {

std::string row_name(size_t i) {
    return "sessions[" + std::to_string(i) + "]";
}

}  // namespace

void Session::check_batch(const Session* const* sessions, size_t n) {
    if (n == 0) fail(Status::InvalidArgument, "n is 0: an empty batch");
    std::vector<std::pair<const Session*, size_t>> seen;
    seen.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        if (!sessions[i]) fail(Status::InvalidArgument, row_name(i) + " is NULL");
        if (&sessions[i]->model() != &sessions[0]->model())
            fail(Status::InvalidArgument,
                 row_name(i) + " belongs to another model than sessions[0]: a batch runs one model");
        seen.emplace_back(sessions[i], i);
    }
    std::sort(seen.begin(), seen.end());
    for (size_t i = 1; i < n; ++i)
        if (seen[i].first == seen[i - 1].first)
            fail(Status::InvalidArgument,
                 row_name(std::min(seen[i].second, seen[i - 1].second)) + " and " +
                     row_name(std::max(seen[i].second, seen[i - 1].second)) +
                     " are the same session: each session advances by one token per batch");
}

void Session::append_batch(Session* const* sessions, const int32_t* tokens, size_t n) {
    check_batch(sessions, n);
    const Model& model = sessions[0]->model();
    const int64_t vocab = model.config().vocab_size;
    for (size_t i = 0; i < n; ++i) {
        const Session& s = *sessions[i];
        if (s.position_ >= s.capacity())
            fail(Status::ContextFull, row_name(i) + ": context full at position " +
                                          std::to_string(s.position_) + " = max_context");
        if (tokens[i] < 0 || tokens[i] >= vocab)
            fail(Status::InvalidArgument, "token " + std::to_string(tokens[i]) + " of " +
                                              row_name(i) + " is out of range [0, " +
                                              std::to_string(vocab) + ")");
    }
    // Cancel: this call is the next cancellable call of every session in it, so it consumes
    // each pending request and runs nothing.
    std::string cancelled;
    for (size_t i = 0; i < n; ++i)
        if (sessions[i]->cancel_.exchange(false))
            cancelled += (cancelled.empty() ? "" : ", ") + row_name(i);
    if (!cancelled.empty()) fail(Status::Cancelled, "cancelled: " + cancelled);

    std::vector<BackendState*> states(n);
    std::vector<uint64_t> positions(n);
    for (size_t i = 0; i < n; ++i) {
        sessions[i]->history_.reserve(sessions[i]->history_.size() + 1);  // before any change
        states[i] = sessions[i]->state_.get();
        positions[i] = sessions[i]->position_;
    }
    model.backend().forward_batch(states.data(), positions.data(), tokens, n);
    for (size_t i = 0; i < n; ++i) {  // cannot throw: room was reserved
        Session& s = *sessions[i];
        s.history_.push_back(tokens[i]);
        s.has_logits_ = true;
        ++s.position_;
    }
}

void Session::sample_batch(const Session* const* sessions, const SamplingParams* params, size_t n,
                           int32_t* out) {
    check_batch(sessions, n);
    std::vector<const BackendState*> states(n);
    std::vector<const int32_t*> histories(n);
    std::vector<size_t> history_lens(n);
    std::vector<uint64_t> positions(n);
    for (size_t i = 0; i < n; ++i) {
        const Session& s = *sessions[i];
        try {
            validate_sampling(params[i]);
        } catch (const Error& e) {
            fail(e.status(), row_name(i) + ": " + e.what());
        }
        if (!s.has_logits_)
            fail(Status::InvalidArgument, row_name(i) +
                                              " has no logits to sample from: append a prompt first");
        states[i] = s.state_.get();
        histories[i] = s.history_.data();
        history_lens[i] = s.history_.size();
        positions[i] = s.position_;
    }
    sessions[0]->backend().sample_batch(states.data(), params, histories.data(),
                                        history_lens.data(), positions.data(), n, out);
}

void Session::reset() {
    backend().reset_state(*state_);
    position_ = 0;
    history_.clear();
    has_logits_ = false;
}

void Session::fill_synthetic(uint64_t n, uint64_t seed) {
    if (n > capacity())
        fail(Status::ContextFull, "synthetic context of " + std::to_string(n) +
                                      " tokens exceeds max_context " + std::to_string(capacity()));
    std::vector<int32_t> history(static_cast<size_t>(n));
    for (size_t i = 0; i < history.size(); ++i)  // a splitmix-style hash of (seed, i)
        history[i] = static_cast<int32_t>(((seed + i) * 0x9e3779b97f4a7c15ull >> 33) % vocab_);
    // On a copy: a failure changes nothing.
    std::unique_ptr<BackendState> state = backend().clone_state(*state_);
    backend().fill_synthetic(*state, n, seed);
    state_.swap(state);
    history_.swap(history);
    position_ = n;
    has_logits_ = true;
}

int32_t Session::sample(const SamplingParams& params) const {
    validate_sampling(params);
    if (!has_logits_)
        fail(Status::InvalidArgument,
             "the session has no logits to sample from: append a prompt first");
    // A model that batches decode steps batches their samples too (one device round trip).
    if (DecodeBatcher* batcher = model_->batcher())
        return batcher->sample(*state_, params, history_.data(), history_.size(), position_);
    return backend().sample(*state_, params, history_.data(), history_.size(), position_);
}

int32_t Session::sample_from(const float* logits, const SamplingParams& params) const {
    validate_sampling(params);
    return sample_token(logits, vocab_, params, history_.data(), history_.size(), position_);
}

std::vector<float> Session::last_logits() const {
    if (!has_logits_)
        fail(Status::InvalidArgument, "the session has no logits yet: append a prompt first");
    std::vector<float> logits(vocab_);
    backend().read_logits(*state_, logits.data());
    return logits;
}

size_t Session::state_bytes(uint64_t position) const {
    return kl::state_bytes(model_->config(), backend(), *state_, position);
}

size_t Session::snapshot_size() const {
    return sizeof(SnapshotHeader) + history_.size() * sizeof(int32_t) +
           (has_logits_ ? vocab_ * sizeof(float) : 0) + state_bytes(position_) + sizeof(uint64_t);
}

void Session::save_snapshot(uint8_t* out) const {
    SnapshotHeader header{};
    std::memcpy(header.magic, kMagic, sizeof(kMagic));
    header.version = kFormatVersion;
    header.fingerprint = model_->fingerprint();
    header.position = position_;
    header.vocab = vocab_;
    header.has_logits = has_logits_ ? 1 : 0;
    header.backend_bytes = state_bytes(position_);

    uint8_t* p = out;
    std::memcpy(p, &header, sizeof(header));
    p += sizeof(header);
    if (!history_.empty())  // memcpy with a null pointer is undefined even for 0 bytes
        std::memcpy(p, history_.data(), history_.size() * sizeof(int32_t));
    p += history_.size() * sizeof(int32_t);
    if (has_logits_) {
        const std::vector<float> logits = last_logits();
        std::memcpy(p, logits.data(), vocab_ * sizeof(float));
        p += vocab_ * sizeof(float);
    }
    ByteWriter state_out(p);
    write_state(model_->config(), backend(), *state_, position_, state_out);
    p += header.backend_bytes;
    Fnv1a64 checksum;
    checksum.update(out, static_cast<size_t>(p - out));
    const uint64_t digest = checksum.digest();
    std::memcpy(p, &digest, sizeof(digest));
}

void Session::load_snapshot(const uint8_t* data, size_t size) {
    auto reject = [](const std::string& why) { fail(Status::Format, "bad snapshot: " + why); };
    SnapshotHeader header;
    if (size < sizeof(header) + sizeof(uint64_t))
        reject("only " + std::to_string(size) + " bytes, shorter than the header");
    std::memcpy(&header, data, sizeof(header));
    if (std::memcmp(header.magic, kMagic, sizeof(kMagic)) != 0)
        reject("wrong magic (not a kimi-linear session snapshot)");
    if (header.version != kFormatVersion)
        reject("format version " + std::to_string(header.version) + ", this library reads " +
               std::to_string(kFormatVersion));

    uint64_t stored_digest;
    std::memcpy(&stored_digest, data + size - sizeof(uint64_t), sizeof(uint64_t));
    Fnv1a64 checksum;
    checksum.update(data, size - sizeof(uint64_t));
    if (checksum.digest() != stored_digest) reject("checksum mismatch (corrupt or truncated)");

    if (header.fingerprint != model_->fingerprint())
        fail(Status::InvalidArgument,
             "snapshot was saved from another model (fingerprint mismatch)");
    if (header.vocab != vocab_)
        reject("vocab " + std::to_string(header.vocab) + " differs from the model's " +
               std::to_string(vocab_));
    // Sizes, overflow-checked: the position, the flag and the byte count are the file's
    // claims. The history must fit in the body before anything is computed from it.
    if (header.has_logits > 1) reject("has_logits flag is " + std::to_string(header.has_logits));
    const size_t body = size - sizeof(header) - sizeof(uint64_t);
    if (header.position > body / sizeof(int32_t))
        reject("position " + std::to_string(header.position) + " needs more history than the " +
               std::to_string(size) + "-byte snapshot holds");
    if (header.position > capacity())
        fail(Status::ContextFull, "snapshot position " + std::to_string(header.position) +
                                      " exceeds this session's max_context " +
                                      std::to_string(capacity()));
    const size_t history_bytes = static_cast<size_t>(header.position) * sizeof(int32_t);
    const size_t logits_bytes = header.has_logits ? vocab_ * sizeof(float) : 0;
    const size_t backend_bytes = state_bytes(header.position);  // Format if it overflows
    if (header.backend_bytes != backend_bytes || logits_bytes > body - history_bytes ||
        backend_bytes != body - history_bytes - logits_bytes)
        reject("sizes inconsistent with the model (" + std::to_string(size) + " bytes)");

    const uint8_t* p = data + sizeof(header);
    std::vector<int32_t> history(static_cast<size_t>(header.position));
    if (history_bytes > 0) std::memcpy(history.data(), p, history_bytes);
    p += history_bytes;
    for (int32_t token : history)
        if (token < 0 || token >= static_cast<int64_t>(vocab_))
            reject("token " + std::to_string(token) + " in the history is out of range");
    std::vector<float> logits(vocab_, 0.0f);
    if (header.has_logits) std::memcpy(logits.data(), p, logits_bytes);
    p += logits_bytes;

    // Restore into a fresh state so a failure cannot leave this session half-loaded.
    std::unique_ptr<BackendState> state = backend().clone_state(*state_);
    StateReader state_in(p);
    read_state(model_->config(), backend(), *state, header.position, state_in);
    backend().write_logits(*state, logits.data());

    state_.swap(state);
    history_.swap(history);
    has_logits_ = header.has_logits != 0;
    position_ = header.position;
}

}  // namespace kl
