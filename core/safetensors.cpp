#include "safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "e4m3.h"
#include "error.h"
#include "input_file.h"
#include "json_input.h"
#include "limits.h"
#include "message_text.h"

namespace kl {

using nlohmann::json;

const char* dtype_name(DType dtype) {
    switch (dtype) {
        case DType::F32:
            return "F32";
        case DType::F16:
            return "F16";
        case DType::BF16:
            return "BF16";
        case DType::F8_E4M3:
            return "F8_E4M3";
        case DType::I32:
            return "I32";
        case DType::I64:
            return "I64";
    }
    return "?";
}

size_t dtype_size(DType dtype) {
    switch (dtype) {
        case DType::F8_E4M3:
            return 1;
        case DType::F16:
        case DType::BF16:
            return 2;
        case DType::F32:
        case DType::I32:
            return 4;
        case DType::I64:
            return 8;
    }
    return 0;
}

bool is_float_dtype(DType dtype) {
    return dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16;
}

float bf16_to_f32(uint16_t bits) {
    const uint32_t word = static_cast<uint32_t>(bits) << 16;
    float value;
    std::memcpy(&value, &word, sizeof(value));
    return value;
}

uint16_t f32_to_bf16(float value) {
    uint32_t word;
    std::memcpy(&word, &value, sizeof(word));
    if ((word & 0x7fffffffu) > 0x7f800000u)
        return static_cast<uint16_t>((word >> 16) | 0x40);    // NaN stays NaN
    const uint32_t rounding = 0x7fffu + ((word >> 16) & 1u);  // to nearest, ties to even
    return static_cast<uint16_t>((word + rounding) >> 16);
}

float f16_to_f32(uint16_t bits) {
    const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
    uint32_t exponent = (bits >> 10) & 0x1fu;
    uint32_t mantissa = bits & 0x3ffu;
    uint32_t word;
    if (exponent == 0x1f) {
        word = sign | 0x7f800000u | (mantissa << 13);
    } else if (exponent == 0) {
        if (mantissa == 0) {
            word = sign;
        } else {  // subnormal: renormalise
            int shift = 0;
            while ((mantissa & 0x400u) == 0) mantissa <<= 1, ++shift;
            mantissa &= 0x3ffu;
            word = sign | static_cast<uint32_t>(127 - 15 - shift + 1) << 23 | (mantissa << 13);
        }
    } else {
        word = sign | (exponent + 127 - 15) << 23 | (mantissa << 13);
    }
    float value;
    std::memcpy(&value, &word, sizeof(value));
    return value;
}

uint16_t f32_to_f16(float value) {
    uint32_t word;
    std::memcpy(&word, &value, sizeof(word));
    const uint16_t sign = static_cast<uint16_t>((word >> 16) & 0x8000u);
    const uint32_t abs = word & 0x7fffffffu;
    if (abs > 0x7f800000u) return sign | 0x7e00u;   // NaN
    if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: inf
    if (abs < 0x38800000u) {                        // below the smallest normal half
        if (abs < 0x33000000u) return sign;         // < half the smallest subnormal
        const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
        const int shift = 126 - static_cast<int>(abs >> 23);  // to units of 2^-24
        uint32_t result = mant >> shift;
        const uint32_t rest = mant & ((1u << shift) - 1u);
        const uint32_t half = 1u << (shift - 1);
        if (rest > half || (rest == half && (result & 1u))) ++result;
        return sign | static_cast<uint16_t>(result);
    }
    uint32_t result = ((abs >> 13) - (112u << 10));
    const uint32_t rest = abs & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (result & 1u))) ++result;
    return sign | static_cast<uint16_t>(result);
}

int64_t TensorView::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

void TensorView::to_f32(float* out) const {
    const size_t n = static_cast<size_t>(numel());
    switch (dtype) {
        case DType::F32:
            std::memcpy(out, data, n * sizeof(float));
            return;
        case DType::F8_E4M3:
            for (size_t i = 0; i < n; ++i) out[i] = e4m3_to_f32(data[i]);
            return;
        case DType::I32:
            for (size_t i = 0; i < n; ++i) {
                int32_t v;
                std::memcpy(&v, data + 4 * i, sizeof(v));
                out[i] = static_cast<float>(v);
            }
            return;
        case DType::I64:
            for (size_t i = 0; i < n; ++i) {
                int64_t v;
                std::memcpy(&v, data + 8 * i, sizeof(v));
                out[i] = static_cast<float>(v);
            }
            return;
        case DType::F16:
        case DType::BF16:
            break;
    }
    const bool is_bf16 = dtype == DType::BF16;
    for (size_t i = 0; i < n; ++i) {
        uint16_t bits;
        std::memcpy(&bits, data + 2 * i, sizeof(bits));
        out[i] = is_bf16 ? bf16_to_f32(bits) : f16_to_f32(bits);
    }
}

std::string shape_string(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
    return s + "]";
}

MappedFile::MappedFile(const std::string& path) : path_(path) {
    uint64_t size = 0;
    const int fd = open_regular_file(path, &size);  // a FIFO or directory: Io, no hang
    size_ = static_cast<size_t>(size);
    if (size_ > 0) {
        void* mapped = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (mapped == MAP_FAILED) {
            const int error = errno;
            ::close(fd);
            fail(Status::Io, "cannot map " + path + ": " + std::strerror(error));
        }
        data_ = static_cast<const uint8_t*>(mapped);
    }
    ::close(fd);
}

MappedFile::~MappedFile() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

std::vector<TensorView> parse_safetensors(const MappedFile& file) {
    const std::string& path = file.path();
    auto bad = [&](const std::string& what) { fail(Status::Format, path + ": " + what); };
    if (file.size() < 8) bad("truncated: " + std::to_string(file.size()) + " bytes, no header");
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | file.data()[i];
    if (header_len > kMaxSafetensorsHeaderBytes)
        bad("header length " + std::to_string(header_len) + " exceeds the limit of " +
            std::to_string(kMaxSafetensorsHeaderBytes) + " bytes");
    if (header_len > file.size() - 8)
        bad("truncated: header length " + std::to_string(header_len) + " but only " +
            std::to_string(file.size() - 8) + " bytes follow");

    // The whole header is the JSON (trailing spaces allowed), so a length a few bytes short
    // or long either fails here or leaves the data region untiled (checked below).
    const json header =
        parse_json(std::string_view(reinterpret_cast<const char*>(file.data()) + 8, header_len),
                   path + ": header");
    if (!header.is_object()) bad("header is not a JSON object");

    const uint8_t* data_begin = file.data() + 8 + header_len;
    const uint64_t data_size = file.size() - 8 - header_len;
    std::vector<TensorView> views;
    std::vector<std::pair<uint64_t, uint64_t>> extents;
    for (auto it = header.begin(); it != header.end(); ++it) {
        if (it.key() == "__metadata__") continue;
        const std::string& name = it.key();
        auto bad_tensor = [&](const std::string& what) {
            bad("tensor " + excerpt(name) + ": " + what);
        };
        const json& entry = it.value();
        if (!entry.is_object()) bad_tensor("entry is not an object");
        auto dtype_it = entry.find("dtype");
        auto shape_it = entry.find("shape");
        auto offsets_it = entry.find("data_offsets");
        if (dtype_it == entry.end() || !dtype_it->is_string()) bad_tensor("missing dtype");
        if (shape_it == entry.end() || !shape_it->is_array()) bad_tensor("missing shape");
        if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2)
            bad_tensor("data_offsets must be [begin, end]");

        TensorView view;
        view.name = name;
        view.file = path;
        const std::string dtype = dtype_it->get<std::string>();
        bool known = false;
        for (DType d :
             {DType::F32, DType::F16, DType::BF16, DType::F8_E4M3, DType::I32, DType::I64})
            if (dtype == dtype_name(d)) view.dtype = d, known = true;
        if (!known)
            bad_tensor("has dtype " + excerpt(dtype) +
                       " (supported: BF16, F16, F32, F8_E4M3, I32, I64)");

        // Capping every dim and the element count at 2^60 keeps numel * dtype_size and
        // the int64 shape free of overflow whatever the header claims.
        constexpr uint64_t kMaxElements = uint64_t(1) << 60;
        uint64_t numel = 1;
        for (const json& d : *shape_it) {
            if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<int64_t>() >= 0))
                bad_tensor("shape entries must be non-negative integers, got " + json_excerpt(d));
            const uint64_t dim = d.get<uint64_t>();
            if (dim > kMaxElements || (dim != 0 && numel > kMaxElements / dim))
                bad_tensor("shape " + json_excerpt(*shape_it) + " overflows");
            numel *= dim;
            view.shape.push_back(static_cast<int64_t>(dim));
        }
        for (const json& o : *offsets_it)
            if (!o.is_number_unsigned() && !(o.is_number_integer() && o.get<int64_t>() >= 0))
                bad_tensor("data_offsets must be non-negative integers");
        const uint64_t begin = (*offsets_it)[0].get<uint64_t>();
        const uint64_t end = (*offsets_it)[1].get<uint64_t>();
        if (begin > end || end > data_size)
            bad_tensor("data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                       "] lie outside the " + std::to_string(data_size) + "-byte data region");
        const uint64_t want = numel * dtype_size(view.dtype);
        if (end - begin != want)
            bad_tensor("holds " + std::to_string(end - begin) + " bytes, but " +
                       dtype_name(view.dtype) + " " + shape_string(view.shape) + " needs " +
                       std::to_string(want));
        view.data = data_begin + begin;
        view.nbytes = static_cast<size_t>(want);
        extents.emplace_back(begin, end);
        views.push_back(std::move(view));
    }
    // The tensors tile the data region exactly, as the format requires: no overlap, no gap,
    // nothing after the last one. A header length off by a byte or two (which JSON's
    // trailing spaces can hide) shifts every tensor and leaves a gap at the end.
    std::sort(extents.begin(), extents.end());
    uint64_t covered = 0;
    for (const auto& [begin, end] : extents) {
        if (begin < covered) bad("tensors overlap in the data region");
        if (begin > covered)
            bad("bytes " + std::to_string(covered) + ".." + std::to_string(begin) +
                " of the data region belong to no tensor");
        covered = end;
    }
    if (covered != data_size)
        bad("the tensors end at byte " + std::to_string(covered) + " of the " +
            std::to_string(data_size) + "-byte data region (is the header length right?)");
    return views;
}

std::unique_ptr<Checkpoint> Checkpoint::open(const std::string& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) fail(Status::Io, "model folder " + dir + " does not exist");

    auto checkpoint = std::unique_ptr<Checkpoint>(new Checkpoint());
    std::vector<std::string> shards;
    std::map<std::string, std::string> weight_map;  // tensor -> shard file name
    const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
    if (fs::exists(index_path, ec)) {
        const std::string where = index_path.string();
        const json index = parse_json(read_input_file(where, limits::kIndexFileBytes), where);
        if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
            fail(Status::Format, where + ": weight_map: missing or not an object");
        std::set<std::string> shard_set;  // a set: an index may name many shards
        for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
            if (!it.value().is_string())
                fail(Status::Format,
                     where + ": weight_map: " + excerpt(it.key()) + " does not name a file");
            const std::string shard = it.value().get<std::string>();
            if (shard.empty() || shard.find('/') != std::string::npos || shard == "." ||
                shard == ".." || shard.find('\0') != std::string::npos)
                fail(Status::Format, where + ": weight_map: shard name \"" + excerpt(shard) +
                                         "\" must be a plain file name");
            weight_map[it.key()] = shard;
            shard_set.insert(shard);
        }
        shards.assign(shard_set.begin(), shard_set.end());
    } else {
        for (const auto& entry : fs::directory_iterator(dir, ec))
            if (entry.path().extension() == ".safetensors")
                shards.push_back(entry.path().filename().string());
        std::sort(shards.begin(), shards.end());
        if (shards.empty()) fail(Status::Io, "no *.safetensors in " + dir);
    }

    for (const std::string& shard : shards) {
        const std::string path = (fs::path(dir) / shard).string();
        if (!fs::exists(path, ec))
            fail(Status::Io, "shard " + excerpt(path, limits::kMessageBytes / 2) +
                                 " (named in the index) is missing");
        checkpoint->files_.push_back(std::make_unique<MappedFile>(path));
        for (TensorView& view : parse_safetensors(*checkpoint->files_.back())) {
            if (!weight_map.empty()) {
                auto named = weight_map.find(view.name);
                if (named == weight_map.end()) continue;  // stray tensor the index disowns
                if (named->second != shard) continue;
            }
            if (checkpoint->tensors_.count(view.name))
                fail(Status::Format, "tensor " + excerpt(view.name) + " appears twice (in " +
                                         checkpoint->tensors_[view.name].file + " and " + path +
                                         ")");
            std::string name = view.name;
            checkpoint->tensors_.emplace(std::move(name), std::move(view));
        }
    }
    for (const auto& [name, shard] : weight_map)
        if (!checkpoint->tensors_.count(name))
            fail(Status::Format, "tensor " + excerpt(name) + " is listed in the index under " +
                                     excerpt(shard) + " but that file does not hold it");
    return checkpoint;
}

const TensorView* Checkpoint::find(const std::string& name) const {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
}

uint64_t Checkpoint::total_bytes() const {
    uint64_t total = 0;
    for (const auto& entry : tensors_) total += entry.second.nbytes;
    return total;
}

}  // namespace kl
