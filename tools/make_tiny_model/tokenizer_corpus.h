// The bundled tokenizer corpus (tokenizer_corpus.txt), compiled into make_tiny_model by
// embed_corpus.cmake so that the program reads no file of the source tree at run time.
#pragma once
#include <cstddef>
#include <string_view>

namespace kl {
extern const char kTokenizerCorpus[];
extern const std::size_t kTokenizerCorpusSize;

inline std::string_view bundled_tokenizer_corpus() {
    return {kTokenizerCorpus, kTokenizerCorpusSize};
}
}  // namespace kl
