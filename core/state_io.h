// The backend state's part of a session snapshot, the same bytes whichever backend holds
// the state: per layer in order, a KDA layer's recurrent state (S, then the conv state) and
// an MLA layer's cache rows [0, position), all fp32 little-endian. The walk over the layers
// is written here once; a backend only copies one layer's part out (Backend::save_layer)
// or in (Backend::load_layer).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "backend.h"
#include "config.h"

namespace kl {

// Where the walk puts the parts, in order.
class StateWriter {
public:
    virtual ~StateWriter() = default;
    // A part of `bytes` bytes; fill(dst) writes it. A counting writer never calls fill.
    virtual void part(size_t bytes, const std::function<void(uint8_t*)>& fill) = 0;
};

// Adds up the sizes: the snapshot size without copying any state. Format if the sum
// overflows (a loaded snapshot's claimed position can be anything).
class CountingWriter final : public StateWriter {
public:
    void part(size_t bytes, const std::function<void(uint8_t*)>& fill) override;
    size_t bytes() const { return bytes_; }

private:
    size_t bytes_ = 0;
};

// Writes the parts back to back from `out` on.
class ByteWriter final : public StateWriter {
public:
    explicit ByteWriter(uint8_t* out) : out_(out) {}
    void part(size_t bytes, const std::function<void(uint8_t*)>& fill) override {
        fill(out_);
        out_ += bytes;
    }

private:
    uint8_t* out_;
};

// Hands out the parts a ByteWriter wrote, in the same order (the caller checked the size).
class StateReader {
public:
    explicit StateReader(const uint8_t* in) : in_(in) {}
    const uint8_t* part(size_t bytes) {
        const uint8_t* part = in_;
        in_ += bytes;
        return part;
    }

private:
    const uint8_t* in_;
};

void write_state(const ModelConfig& config, const Backend& backend, const BackendState& state,
                 uint64_t position, StateWriter& out);
void read_state(const ModelConfig& config, const Backend& backend, BackendState& state,
                uint64_t position, StateReader& in);
// The size write_state writes (a CountingWriter's count).
size_t state_bytes(const ModelConfig& config, const Backend& backend, const BackendState& state,
                   uint64_t position);

}  // namespace kl
