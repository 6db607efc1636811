#!/usr/bin/env bash
# Installs the build into a clean prefix and builds examples/c/generate.c against the
# installed copy twice, through find_package(KimiLinear) and through pkg-config, then runs
# both on a model folder with no LD_LIBRARY_PATH (the CMake package's target and the .pc's
# Libs carry the rpath). Nothing from the build tree is used past the install.
set -euo pipefail
build=$1 model=$2
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null

cmake -S "$src/packaging/consumer" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$work/prefix" \
      -DEXAMPLE_SOURCE="$src/examples/c/generate.c" >/dev/null
cmake --build "$work/cmake" >/dev/null
libdir=$(dirname "$(find "$work/prefix" -name 'libkimi_linear.so.1' | head -1)")
export PKG_CONFIG_PATH=$libdir/pkgconfig
# Nothing but pkg-config's flags: its Libs carry the rpath to the prefix's lib.
cc -o "$work/generate_pc" "$src/examples/c/generate.c" $(pkg-config --cflags --libs kimi-linear)

# Both run with no LD_LIBRARY_PATH, on the installed library.
for exe in "$work/cmake/generate" "$work/generate_pc"; do
  out=$(env -u LD_LIBRARY_PATH "$exe" "$model" "What is 2 + 2?")
  grep -qE '^\[[0-9]+ tokens\]$' <<<"$(tail -1 <<<"$out")" || { echo "FAIL: $exe printed '$out'"; exit 1; }
  libs=$(env -u LD_LIBRARY_PATH ldd "$exe")  # (not piped into grep -q: with pipefail, ldd's SIGPIPE would fail it)
  grep -q "$work/prefix" <<<"$libs" || { echo "FAIL: $exe does not use the installed library"; exit 1; }
done
# The installed CLI (when built) runs from a prefix outside the system paths, with no
# LD_LIBRARY_PATH, on the installed library (its RUNPATH is $ORIGIN/../lib).
if [[ -x "$work/prefix/bin/kimi" ]]; then
  env -u LD_LIBRARY_PATH "$work/prefix/bin/kimi" info "$model" >/dev/null ||
    { echo "FAIL: the installed kimi does not run"; exit 1; }
  libs=$(env -u LD_LIBRARY_PATH ldd "$work/prefix/bin/kimi")
  grep -q "$work/prefix" <<<"$libs" || { echo "FAIL: the installed kimi does not use the installed library"; exit 1; }
fi
echo "OK: installed to a clean prefix; find_package and pkg-config consumers and the CLI ran"
