// Reading a model folder's small files (config.json, the index, the tokenizer files) whole,
// safely: a FIFO, directory or device in their place is an error, not a hang, and a file
// larger than its cap (core/limits.h) is refused before it is read (docs/design/model.md,
// "Limits").
#pragma once

#include <cstdint>
#include <string>

namespace kl {

// The bytes of the regular file at `path`. Io naming the path when it cannot be opened or
// is not a regular file (opened non-blocking, so a FIFO without a writer does not block);
// Format when it holds more than max_bytes.
std::string read_input_file(const std::string& path, uint64_t max_bytes);

// Opens `path` read-only and non-blocking and checks that it is a regular file. Returns the
// descriptor (the caller closes it) and its size. Io naming the path otherwise.
int open_regular_file(const std::string& path, uint64_t* size);

}  // namespace kl
