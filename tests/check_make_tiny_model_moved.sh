#!/usr/bin/env bash
# make_tiny_model works when installed or moved: a copy in an empty folder, run from there,
# writes a model folder whose tokenizer is byte for byte the one the build's copy wrote (the
# corpus is compiled in), and the program does not name the corpus file in the source tree
# (a debug build names its own sources in the debug info; that is no dependency).
set -euo pipefail
make_tiny_model=$1 reference_model=$2 source_dir=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin"
cp "$make_tiny_model" "$work/bin/"
cd "$work"
# The same preset and seed as the tokenizer_model fixture (tests/CMakeLists.txt).
bin/make_tiny_model "$work/m" --preset small --seed 7 >/dev/null
for f in tiktoken.model tokenizer_config.json config.json; do
  cmp -s "$work/m/$f" "$reference_model/$f" || { echo "FAIL: $f differs from $reference_model/$f"; exit 1; }
done
if grep -qF "$source_dir/tools/make_tiny_model/tokenizer_corpus.txt" "$work/bin/make_tiny_model"; then
  echo "FAIL: make_tiny_model names the corpus file in the source tree"; exit 1
fi
echo "OK: a moved make_tiny_model wrote the same tokenizer"
