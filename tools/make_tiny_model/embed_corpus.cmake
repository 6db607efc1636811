# Writes a C++ source that holds the tokenizer corpus as bytes, so make_tiny_model needs no
# file at run time and works when installed or copied anywhere.
#   cmake -DINPUT=tokenizer_corpus.txt -DOUTPUT=tokenizer_corpus.cpp -P embed_corpus.cmake
# Bytes, not a raw string literal: any text is safe, whatever delimiters it contains.
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hex_length)
math(EXPR size "${hex_length} / 2")
# 16 bytes a line (a newline after each 32 hex digits), then each byte as '\xNN',.
string(REPEAT "[0-9a-f]" 32 line_of_hex)
string(REGEX REPLACE "(${line_of_hex})" "\\1\n    " hex "${hex}")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," bytes "${hex}")
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by embed_corpus.cmake: do not edit.\n"
  "#include \"tokenizer_corpus.h\"\n\n"
  "namespace kl {\n"
  "const char kTokenizerCorpus[] = {\n    ${bytes}'\\0'};\n"
  "const std::size_t kTokenizerCorpusSize = ${size};\n"
  "}  // namespace kl\n")
# Only a changed text touches the output, so an unchanged corpus recompiles nothing.
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
