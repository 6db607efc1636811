// SafetensorsWriter and write_safetensors (declared in safetensors.h): one way to write a
// .safetensors file, a tensor at a time.
#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <utility>

#include "error.h"
#include "safetensors.h"

namespace kl {
namespace {

using nlohmann::json;

// Values converted to the written dtype at a time: a bounded buffer, not a second copy of a
// tensor that may be gigabytes.
constexpr size_t kChunkValues = size_t(1) << 16;

uint64_t checked_numel(const std::string& name, const std::vector<int64_t>& shape) {
    uint64_t numel = 1;
    for (int64_t d : shape) {
        if (d < 0)
            fail(Status::InvalidArgument,
                 "tensor " + name + " has a negative dim in " + shape_string(shape));
        numel *= static_cast<uint64_t>(d);
    }
    return numel;
}

// Checks that `count` values (or bytes, when from_bytes) are what `dtype` and `shape` need.
void check_size(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                bool from_bytes, uint64_t count) {
    if (!from_bytes && !is_float_dtype(dtype))
        fail(Status::InvalidArgument,
             "tensor " + name + ": " + dtype_name(dtype) + " is written from its bytes");
    const uint64_t numel = checked_numel(name, shape);
    if (count != (from_bytes ? numel * dtype_size(dtype) : numel))
        fail(Status::InvalidArgument, "tensor " + name + " has " + std::to_string(count) +
                                          (from_bytes ? " bytes" : " values") + " for " +
                                          dtype_name(dtype) + " " + shape_string(shape));
}

// Checks that `t`'s values or bytes are what its dtype and shape need.
void check_data(const TensorToWrite& t) {
    const bool from_bytes = !t.bytes.empty();
    check_size(t.name, t.dtype, t.shape, from_bytes, from_bytes ? t.bytes.size() : t.values.size());
}

// Writes fp32 `values` as `dtype` (F32, BF16 or F16); returns the bytes written.
uint64_t write_values(std::ofstream& out, const std::vector<float>& values, DType dtype) {
    const size_t size = dtype_size(dtype);
    std::vector<uint8_t> chunk(std::min(values.size(), kChunkValues) * size);
    for (size_t begin = 0; begin < values.size(); begin += kChunkValues) {
        const size_t count = std::min(kChunkValues, values.size() - begin);
        for (size_t i = 0; i < count; ++i) {
            const float value = values[begin + i];
            if (dtype == DType::F32) {
                std::memcpy(&chunk[4 * i], &value, 4);
            } else {
                const uint16_t bits = dtype == DType::BF16 ? f32_to_bf16(value) : f32_to_f16(value);
                std::memcpy(&chunk[2 * i], &bits, 2);
            }
        }
        out.write(reinterpret_cast<const char*>(chunk.data()),
                  static_cast<std::streamsize>(count * size));
    }
    return values.size() * size;
}

std::string entry_text(const std::string& name, DType dtype, const std::vector<int64_t>& shape) {
    return name + " (" + dtype_name(dtype) + " " + shape_string(shape) + ")";
}

}  // namespace

SafetensorsWriter::SafetensorsWriter(const std::string& path, std::vector<SafetensorsEntry> entries)
    : path_(path), entries_(std::move(entries)) {
    std::string text;
    {  // the header's json is freed before any tensor's data is made
        json header = json::object();
        uint64_t offset = 0;
        for (const SafetensorsEntry& e : entries_) {
            const uint64_t bytes = checked_numel(e.name, e.shape) * dtype_size(e.dtype);
            header[e.name] = {{"dtype", dtype_name(e.dtype)},
                              {"shape", e.shape},
                              {"data_offsets", {offset, offset + bytes}}};
            offset += bytes;
        }
        header["__metadata__"] = {{"format", "pt"}};
        text = header.dump();
    }
    text.append((8 - text.size() % 8) % 8, ' ');

    out_ = std::make_unique<std::ofstream>(path, std::ios::binary | std::ios::trunc);
    if (!*out_) fail(Status::Io, "cannot create " + path);
    uint8_t length[8];
    for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(text.size() >> (8 * i));
    out_->write(reinterpret_cast<const char*>(length), 8);
    out_->write(text.data(), static_cast<std::streamsize>(text.size()));
    if (!*out_) fail(Status::Io, "cannot write " + path_);
}

SafetensorsWriter::~SafetensorsWriter() = default;

void SafetensorsWriter::check_next(const std::string& name, DType dtype,
                                   const std::vector<int64_t>& shape) const {
    if (next_ == entries_.size())
        fail(Status::InvalidArgument, path_ + ": tensor " + name + " is past the " +
                                          std::to_string(entries_.size()) +
                                          " entries of the header");
    const SafetensorsEntry& e = entries_[next_];
    if (name != e.name || dtype != e.dtype || shape != e.shape)
        fail(Status::InvalidArgument, path_ + ": tensor " + entry_text(name, dtype, shape) +
                                          " is written where the header has " +
                                          entry_text(e.name, e.dtype, e.shape));
}

uint64_t SafetensorsWriter::write_bytes(const uint8_t* data, uint64_t size) {
    out_->write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!*out_) fail(Status::Io, "cannot write " + path_);
    return size;
}

uint64_t SafetensorsWriter::write(const TensorToWrite& t) {
    check_next(t.name, t.dtype, t.shape);
    check_data(t);
    ++next_;
    if (!t.bytes.empty()) return write_bytes(t.bytes.data(), t.bytes.size());
    const uint64_t bytes = write_values(*out_, t.values, t.dtype);
    if (!*out_) fail(Status::Io, "cannot write " + path_);
    return bytes;
}

uint64_t SafetensorsWriter::write(const TensorView& stored) {
    check_next(stored.name, stored.dtype, stored.shape);
    check_size(stored.name, stored.dtype, stored.shape, true, stored.nbytes);
    ++next_;
    // One write from the mapping: a stream passes a write past its buffer's size straight
    // to the file, so no copy of the tensor is made on the heap.
    return write_bytes(stored.data, stored.nbytes);
}

void SafetensorsWriter::finish() {
    if (next_ != entries_.size())
        fail(Status::InvalidArgument, path_ + ": " + std::to_string(next_) + " of the header's " +
                                          std::to_string(entries_.size()) + " tensors written");
    out_->close();
    if (!*out_) fail(Status::Io, "cannot write " + path_);
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::function<void(uint64_t bytes)>& written) {
    std::vector<SafetensorsEntry> entries;
    entries.reserve(tensors.size());
    for (const TensorToWrite& t : tensors) {
        check_data(t);  // all of them, before the file is created
        entries.push_back({t.name, t.dtype, t.shape});
    }
    SafetensorsWriter file(path, std::move(entries));
    for (const TensorToWrite& t : tensors) {
        const uint64_t bytes = file.write(t);
        if (written) written(bytes);
    }
    file.finish();
}

}  // namespace kl
