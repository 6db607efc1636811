// `kimi quantize`: a checkpoint folder rewritten with its weights in another form (FP8
// block-scaled or INT4 pack-quantized, core/quant_config.h), as a sharded Hugging Face
// checkpoint (model-0000N-of-0000M.safetensors, model.safetensors.index.json, config.json
// with its quantization_config, the other files copied). Tensors that keep their stored form
// are copied byte for byte, so rewriting a checkpoint in its own format gives identical files.
//
// Memory: about one tensor that changes form, whatever the shard size. The input is
// memory-mapped, and each shard's header is written first (every entry's dtype, shape and
// size are known before its data). A tensor kept as stored is written from the mapping
// straight to the file, taking no heap (a 755 MB bf16 embedding included); a tensor made here
// (quantized, or dequantized to F32) is made, written and released before the next: the most
// held at once is the written form of the largest tensor that changes form, with the scales
// of the quantized tensor being written (and a 256 KiB conversion buffer), besides the
// headers' and the index's metadata, never a shard's gigabytes.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "quant_config.h"

namespace kl {

struct CheckpointWriteSummary {
    uint64_t tensors = 0;  // safetensors entries written
    uint64_t bytes = 0;    // their data bytes
    uint64_t shards = 0;
    uint64_t quantized = 0;  // linear weights written quantized
};

// Reads IN_DIR as Model::load does (every tensor checked), writes OUT_DIR (created, or an
// existing empty folder; refused when it holds anything or is IN_DIR). A shard holds
// tensors up to shard_bytes (a larger tensor gets a shard of its own). `request` as for a
// load: a tensor that loads plain but was stored quantized is written dequantized as F32
// (exact). Throws kl::Error; a failed write removes every file it wrote, and OUT_DIR when
// it created it (config.json is written last, so no partial folder ever loads). `progress`
// (may be empty) gets the fraction of the work done, the tensors' bytes made (read, and
// quantized where they change form) and written, rising after each tensor and ending with
// exactly 1.0 once every file is there; false stops the write as a failure does
// (Status::Cancelled), a false at 1.0 too.
CheckpointWriteSummary write_checkpoint(const std::string& in_dir, const std::string& out_dir,
                                        WeightRequest request, uint64_t shard_bytes,
                                        const std::function<bool(float)>& progress = {});

}  // namespace kl
