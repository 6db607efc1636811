#include "checkpoint_writer.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <system_error>
#include <utility>
#include <vector>

#include "config.h"
#include "error.h"
#include "input_file.h"
#include "json_input.h"
#include "limits.h"
#include "safetensors.h"
#include "weight_store.h"
#include "weights.h"
#include "work_progress.h"

namespace kl {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// One safetensors entry to write, known (name, dtype, shape, size) before its data is made.
struct Piece {
    const TensorSpec* spec = nullptr;
    SafetensorsEntry entry;
    uint64_t bytes = 0;
    int part = 0;  // which entry of the spec's form: 0 weight / packed, 1 scale, 2 shape
};

uint64_t piece_bytes(DType dtype, const std::vector<int64_t>& shape) {
    uint64_t n = dtype_size(dtype);
    for (int64_t d : shape) n *= static_cast<uint64_t>(d);
    return n;
}

void add(std::vector<Piece>& out, const TensorSpec& spec, std::string name, DType dtype,
         std::vector<int64_t> shape, int part) {
    const uint64_t bytes = piece_bytes(dtype, shape);
    out.push_back({&spec, {std::move(name), dtype, std::move(shape)}, bytes, part});
}

// The entries `spec` is written as. A tensor kept as stored copies the stored views (their
// dtypes included); one made here is F8_E4M3 + F32 scales, I32 + BF16 scales + I64 shape,
// or F32 (dequantized).
void pieces_of(const TensorSpec& spec, const WeightStore& store, std::vector<Piece>& out) {
    const WeightFormat format = store.format(spec);
    const std::vector<const TensorView*> views = store.views(spec);
    const bool as_stored = views.size() == (format == WeightFormat::Plain ? 1u
                                            : format == WeightFormat::Fp8 ? 2u
                                                                          : 3u) &&
                           (format != WeightFormat::Plain || is_float_dtype(views[0]->dtype)) &&
                           (format != WeightFormat::Fp8 || views[0]->dtype == DType::F8_E4M3) &&
                           (format != WeightFormat::Int4 || views[0]->dtype == DType::I32);
    if (as_stored) {
        for (size_t i = 0; i < views.size(); ++i)
            add(out, spec, views[i]->name, views[i]->dtype, views[i]->shape, static_cast<int>(i));
        return;
    }
    const std::string module = module_of(spec);
    const int64_t rows = spec.shape.empty() ? 1 : spec.shape[0];
    const int64_t cols = spec.shape.size() < 2 ? 1 : spec.shape[1];
    QuantizedTensor shape_only;
    shape_only.format = format;
    shape_only.rows = rows;
    shape_only.cols = cols;
    switch (format) {
        case WeightFormat::Plain:
            add(out, spec, spec.name, DType::F32, spec.shape, 0);
            break;
        case WeightFormat::Fp8:
            add(out, spec, spec.name, DType::F8_E4M3, spec.shape, 0);
            add(out, spec, module + ".weight_scale_inv", DType::F32,
                {shape_only.scale_rows(), shape_only.scale_cols()}, 1);
            break;
        case WeightFormat::Int4:
            add(out, spec, module + ".weight_packed", DType::I32, {rows, int4_words(cols)}, 0);
            add(out, spec, module + ".weight_scale", DType::BF16,
                {shape_only.scale_rows(), shape_only.scale_cols()}, 1);
            add(out, spec, module + ".weight_shape", DType::I64, {2}, 2);
            break;
    }
}

// The quantized form of the tensor being written. Its weight and scale entries are written
// one after the other (pieces_of adds them in that order), so one held tensor spares
// quantizing each twice; each entry moves its own part out.
class QuantizedOnce {
public:
    QuantizedTensor& of(const TensorSpec& spec, const WeightStore& store) {
        if (spec_ != &spec) {
            tensor_ = store.quantized(spec);
            spec_ = &spec;
        }
        return tensor_;
    }

private:
    const TensorSpec* spec_ = nullptr;
    QuantizedTensor tensor_;
};

// The stored tensor that is piece `p` as it is (a kept tensor, or a kept part of one), or
// nullptr when the piece is made here.
const TensorView* kept_view(const Piece& p, const WeightStore& store) {
    const std::vector<const TensorView*> views = store.views(*p.spec);
    if (static_cast<size_t>(p.part) >= views.size()) return nullptr;
    const TensorView* v = views[static_cast<size_t>(p.part)];
    return v->name == p.entry.name && v->dtype == p.entry.dtype ? v : nullptr;
}

// The data of a piece made here: quantized, dequantized to F32, or an INT4 weight_shape.
TensorToWrite made_data(const Piece& p, const WeightStore& store, QuantizedOnce& quantized) {
    TensorToWrite t;
    t.name = p.entry.name;
    t.dtype = p.entry.dtype;
    t.shape = p.entry.shape;
    const TensorSpec& spec = *p.spec;
    if (store.format(spec) == WeightFormat::Plain) {
        t.values.resize(spec.numel());
        store.dequantized(spec, t.values.data());
        return t;
    }
    if (p.part == 2) {  // weight_shape
        t.bytes.resize(16);
        for (int i = 0; i < 2; ++i) {
            const int64_t d = spec.shape[static_cast<size_t>(i)];
            std::memcpy(&t.bytes[8 * static_cast<size_t>(i)], &d, 8);
        }
        return t;
    }
    QuantizedTensor& q = quantized.of(spec, store);
    if (p.part == 0) {
        t.bytes = std::move(q.data);
    } else {
        t.values = std::move(q.scales);  // F32 as they are; BF16: already bf16 values
    }
    return t;
}

// Writes piece `p` as the next entry of `file`, its bytes counted made, then written. A kept
// tensor goes from the input's mapping straight to the file, so the heap a write holds is
// bounded by the largest tensor that changes form, not by the largest tensor (a 755 MB
// embedding kept in bf16).
void write_piece(const Piece& p, const WeightStore& store, QuantizedOnce& quantized,
                 SafetensorsWriter& file, WorkProgress& work) {
    if (const TensorView* kept = kept_view(p, store)) {
        work.advance(p.bytes);  // read as it is written
        work.advance(file.write(*kept));
        return;
    }
    const TensorToWrite data = made_data(p, store, quantized);
    work.advance(p.bytes);
    work.advance(file.write(data));
}

// The files this call writes into the output folder, removed again (and the folder, when
// this call made it) unless the write completes: a failed write leaves nothing behind.
class OutputFiles {
public:
    OutputFiles(std::string dir, bool made_dir) : dir_(std::move(dir)), made_dir_(made_dir) {}
    OutputFiles(const OutputFiles&) = delete;
    OutputFiles& operator=(const OutputFiles&) = delete;
    ~OutputFiles() {
        if (complete_) return;
        std::error_code ec;
        for (const std::string& path : written_) fs::remove(path, ec);
        if (made_dir_) fs::remove(dir_, ec);
    }

    // The path of `name` in the folder, from now on removed if the write fails.
    std::string add(const std::string& name) {
        written_.push_back((fs::path(dir_) / name).string());
        return written_.back();
    }
    void complete() { complete_ = true; }

private:
    std::string dir_;
    bool made_dir_;
    std::vector<std::string> written_;
    bool complete_ = false;
};

void copy_other_files(const std::string& in_dir, OutputFiles& out) {
    for (const auto& entry : fs::directory_iterator(in_dir)) {
        const std::string name = entry.path().filename().string();
        if (!entry.is_regular_file() || entry.path().extension() == ".safetensors" ||
            name == "model.safetensors.index.json" || name == "config.json")
            continue;
        std::error_code ec;
        const std::string to = out.add(name);
        if (!fs::copy_file(entry.path(), to, ec))
            fail(Status::Io,
                 "cannot copy " + entry.path().string() + " to " + to + ": " + ec.message());
    }
}

void write_text(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) fail(Status::Io, "cannot write " + path);
}

std::string shard_name(size_t index, size_t count) {
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", index + 1, count);
    return name;
}

// Makes out_dir ready to write into; true if this call created it. An existing folder must
// be empty, so that a failed write can remove all it wrote and leave the folder as it was.
bool prepare_out_dir(const std::string& in_dir, const std::string& out_dir) {
    std::error_code ec;
    const bool existed = fs::exists(out_dir, ec);
    if (existed && fs::equivalent(in_dir, out_dir, ec))
        fail(Status::InvalidArgument, "the output folder " + out_dir + " is the input folder");
    if (!existed) fs::create_directories(out_dir, ec);
    if (!fs::is_directory(out_dir, ec)) fail(Status::Io, "cannot create the folder " + out_dir);
    if (!fs::is_empty(out_dir, ec) || ec)
        fail(Status::InvalidArgument,
             "the output folder " + out_dir + " is not empty (it must be new or empty)");
    return !existed;
}

}  // namespace

CheckpointWriteSummary write_checkpoint(const std::string& in_dir, const std::string& out_dir,
                                        WeightRequest request, uint64_t shard_bytes,
                                        const std::function<bool(float)>& progress) {
    const std::string config_path = in_dir + "/config.json";
    json config_json =
        parse_json(read_input_file(config_path, limits::kConfigFileBytes), config_path);
    const ModelConfig config = ModelConfig::from_json(config_json.dump(), config_path);
    const QuantizationConfig stored = quantization_config_from_json(config_json, config_path);
    const auto checkpoint = Checkpoint::open(in_dir);
    check_tensor_count(config, *checkpoint);
    const ModelLayout layout(config);
    const auto store = WeightStore::open(layout, *checkpoint, stored, request);
    OutputFiles out(out_dir, prepare_out_dir(in_dir, out_dir));

    CheckpointWriteSummary summary;
    std::vector<Piece> pieces;
    WeightFormat written = WeightFormat::Plain;
    layout.visit([&](const TensorSpec& spec) {
        pieces_of(spec, *store, pieces);
        if (store->format(spec) != WeightFormat::Plain) {
            written = store->format(spec);
            ++summary.quantized;
        }
    });

    std::vector<std::vector<const Piece*>> shards(1);
    uint64_t in_shard = 0, tensor_bytes = 0;
    for (const Piece& p : pieces) {
        tensor_bytes += p.bytes;
        if (in_shard > 0 && in_shard + p.bytes > shard_bytes) shards.emplace_back(), in_shard = 0;
        shards.back().push_back(&p);
        in_shard += p.bytes;
    }
    // Each tensor's bytes count twice, once made (read, quantized where its form changes) and
    // once written; the index and the copied files after them are small.
    WorkProgress work(progress, 2 * tensor_bytes,
                      "checkpoint write cancelled by the progress callback");
    QuantizedOnce quantized;
    json weight_map = json::object();
    for (size_t s = 0; s < shards.size(); ++s) {
        const std::string name = shard_name(s, shards.size());
        std::vector<SafetensorsEntry> entries;
        for (const Piece* p : shards[s]) entries.push_back(p->entry);
        SafetensorsWriter file(out.add(name), std::move(entries));
        // The header is out, as every entry is known beforehand: each tensor's data is made,
        // written and released before the next is made, so the write holds one tensor, not a
        // shard.
        for (const Piece* p : shards[s]) {
            write_piece(*p, *store, quantized, file, work);
            weight_map[p->entry.name] = name;
            summary.bytes += p->bytes;
        }
        file.finish();
        summary.tensors += shards[s].size();
    }
    summary.shards = shards.size();
    const json index = {{"metadata", {{"total_size", summary.bytes}}}, {"weight_map", weight_map}};
    write_text(out.add("model.safetensors.index.json"), index.dump(2) + "\n");
    copy_other_files(in_dir, out);

    // config.json last: until it is there the folder is no checkpoint a load would take.
    if (written == WeightFormat::Plain)
        config_json.erase("quantization_config");
    else
        config_json["quantization_config"] =
            quantization_config_json(written, store->plain_linear_modules(layout));
    write_text(out.add("config.json"), config_json.dump(2) + "\n");
    work.finish();
    out.complete();
    return summary;
}

}  // namespace kl
