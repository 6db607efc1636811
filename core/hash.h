// FNV-1a 64: the model fingerprint and the snapshot checksum. Not cryptographic: it guards
// against accidents (corruption, the wrong model), not against an adversary.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace kl {

class Fnv1a64 {
public:
    void update(const void* data, size_t n) {
        const auto* bytes = static_cast<const uint8_t*>(data);
        for (size_t i = 0; i < n; ++i) {
            hash_ ^= bytes[i];
            hash_ *= 0x100000001b3ull;
        }
    }
    void update(const std::string& text) { update(text.data(), text.size()); }
    template <typename T>
    void update_value(const T& value) {
        update(&value, sizeof(value));
    }
    uint64_t digest() const { return hash_; }

private:
    uint64_t hash_ = 0xcbf29ce484222325ull;
};

}  // namespace kl
