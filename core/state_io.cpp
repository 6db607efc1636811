#include "state_io.h"

namespace kl {
namespace {

size_t layer_part_bytes(const ModelConfig& config, size_t layer, uint64_t position) {
    const int64_t floats = config.is_kda_layer(static_cast<int64_t>(layer))
                               ? config.recurrent_floats_per_kda_layer()
                               : static_cast<int64_t>(position) * config.mla_cache_width();
    return static_cast<size_t>(floats) * sizeof(float);
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

}  // namespace kl
