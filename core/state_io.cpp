#include "state_io.h"

#include <string>

#include "error.h"

namespace kl {
namespace {

// A KDA layer's part is fixed by the config (limited by ModelConfig::validate); an MLA
// layer's grows with the position, which a snapshot being loaded claims: overflow-checked,
// Format when it would not fit size_t.
size_t layer_part_bytes(const ModelConfig& config, size_t layer, uint64_t position) {
    if (config.is_kda_layer(static_cast<int64_t>(layer)))
        return static_cast<size_t>(config.recurrent_floats_per_kda_layer()) * sizeof(float);
    size_t bytes = 0;
    if (__builtin_mul_overflow(
            position, static_cast<uint64_t>(config.mla_cache_width()) * sizeof(float), &bytes))
        fail(Status::Format,
             "position " + std::to_string(position) + ": the MLA cache would not fit in memory");
    return bytes;
}

}  // namespace

void write_state(const ModelConfig& config, const Backend& backend, const BackendState& state,
                 uint64_t position, StateWriter& out) {
    for (size_t layer = 0; layer < static_cast<size_t>(config.num_hidden_layers); ++layer)
        out.part(layer_part_bytes(config, layer, position),
                 [&](uint8_t* dst) { backend.save_layer(state, layer, position, dst); });
}

void read_state(const ModelConfig& config, const Backend& backend, BackendState& state,
                uint64_t position, StateReader& in) {
    for (size_t layer = 0; layer < static_cast<size_t>(config.num_hidden_layers); ++layer)
        backend.load_layer(state, layer, position,
                           in.part(layer_part_bytes(config, layer, position)));
}

size_t state_bytes(const ModelConfig& config, const Backend& backend, const BackendState& state,
                   uint64_t position) {
    CountingWriter counter;
    write_state(config, backend, state, position, counter);
    return counter.bytes();
}

void CountingWriter::part(size_t bytes, const std::function<void(uint8_t*)>&) {
    if (__builtin_add_overflow(bytes_, bytes, &bytes_))
        fail(Status::Format, "the session state would not fit in memory");
}

}  // namespace kl
