// Bounds-checked, memory-mapped safetensors reading (single file or sharded through
// model.safetensors.index.json) and writing (the checkpoint writer, make_tiny_model, tests;
// core/safetensors_writer.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "limits.h"

namespace kl {

// F8_E4M3, I32 and I64 hold quantized weights and their companions (docs/design/model.md,
// "Quantized weights"); a plain tensor is BF16, F16 or F32.
enum class DType { F32, F16, BF16, F8_E4M3, I32, I64 };

const char* dtype_name(DType dtype);  // "F32", "F16", "BF16", ... as in safetensors headers
size_t dtype_size(DType dtype);
bool is_float_dtype(DType dtype);  // BF16, F16, F32: what a plain tensor may be

// bf16/fp16 <-> fp32 conversions (round to nearest even on the way down).
float bf16_to_f32(uint16_t bits);
uint16_t f32_to_bf16(float value);
float f16_to_f32(uint16_t bits);
uint16_t f32_to_f16(float value);

// A tensor inside a mapped file. `data` stays valid while the owning Checkpoint lives.
struct TensorView {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    const uint8_t* data = nullptr;
    size_t nbytes = 0;
    std::string file;  // the shard it lives in, for messages

    int64_t numel() const;
    // Converts the values to fp32 into out[0..numel): F8_E4M3 codes decoded (no scale
    // applied: core/weight_store.h dequantizes), integers converted.
    void to_f32(float* out) const;
};

std::string shape_string(const std::vector<int64_t>& shape);  // "[64,32]"

// One read-only mapping of a file.
class MappedFile {
public:
    explicit MappedFile(const std::string& path);  // throws Io
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
};

// Header limit (core/limits.h): a header larger than this is rejected before it is parsed.
constexpr uint64_t kMaxSafetensorsHeaderBytes = limits::kSafetensorsHeaderBytes;

// Parses one safetensors file (all offsets, dtypes and shapes checked; throws Format).
std::vector<TensorView> parse_safetensors(const MappedFile& file);

// All tensors of a checkpoint folder: DIR/model.safetensors.index.json if present (its
// weight_map names the shards), else every DIR/*.safetensors.
class Checkpoint {
public:
    static std::unique_ptr<Checkpoint> open(const std::string& dir);

    const TensorView* find(const std::string& name) const;  // nullptr if absent
    const std::map<std::string, TensorView>& tensors() const { return tensors_; }
    uint64_t total_bytes() const;

private:
    std::vector<std::unique_ptr<MappedFile>> files_;
    std::map<std::string, TensorView> tensors_;
};

// One tensor to write: fp32 values converted to `dtype` (BF16, F16, F32) on the way out,
// or, when `bytes` is not empty, those bytes as they are (any dtype, little-endian).
struct TensorToWrite {
    std::string name;
    DType dtype = DType::BF16;
    std::vector<int64_t> shape;
    std::vector<float> values;
    std::vector<uint8_t> bytes = {};
};

// A tensor's entry in a safetensors header: all of it that is known before its data.
struct SafetensorsEntry {
    std::string name;
    DType dtype = DType::BF16;
    std::vector<int64_t> shape;
};

// Writes one .safetensors file a tensor at a time, so that only the tensor being written need
// be in memory: the header (padded to 8 bytes) when made, from every entry, then each
// entry's data in the entries' order. The one safetensors writer: write_safetensors is it
// with every tensor at hand. A write that throws or is never finished leaves the file partial.
class SafetensorsWriter {
public:
    // Creates `path` and writes the header (throws InvalidArgument for a negative dim, before
    // the file is created, and Io).
    SafetensorsWriter(const std::string& path, std::vector<SafetensorsEntry> entries);
    ~SafetensorsWriter();
    SafetensorsWriter(const SafetensorsWriter&) = delete;
    SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

    // Writes the next entry's data from `t`, whose name, dtype and shape must be the entry's;
    // returns the bytes written. Values are converted to the dtype a bounded chunk at a time.
    uint64_t write(const TensorToWrite& t);
    // Writes the next entry's data as `stored`'s bytes, straight from where they lie (a
    // mapped input file), so that a tensor kept as it is takes no heap; the same checks.
    uint64_t write(const TensorView& stored);
    // Closes the file once every entry is written: InvalidArgument while some are not, Io if
    // the close fails.
    void finish();

private:
    // Checks that the next entry is `name` `dtype` `shape` (throws InvalidArgument).
    void check_next(const std::string& name, DType dtype, const std::vector<int64_t>& shape) const;
    uint64_t write_bytes(const uint8_t* data, uint64_t size);

    std::string path_;
    std::vector<SafetensorsEntry> entries_;
    size_t next_ = 0;  // the entry write() takes next
    std::unique_ptr<std::ofstream> out_;
};

// Writes one .safetensors file (tensors in the given order), every tensor checked before the
// file is created. `written` (may be empty) is told each tensor's data bytes once they are
// written, so that a long write can report progress, and stop it by throwing (the file is
// left partial).
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::function<void(uint64_t bytes)>& written = {});

}  // namespace kl
