#!/bin/sh
# Build a platform wheel of the kimi_linear bindings that carries the shared library.
#
#   bindings/python/build_wheel.sh LIBRARY OUTDIR
#
# LIBRARY: libkimi_linear.so (or .so.1, or the versioned file; links are followed).
# Copies the package to a temporary folder, puts the library's real file there as
# kimi_linear/lib/libkimi_linear.so.1 (its SONAME, which the package loads first) with the
# CUDA plugin libkimi_linear_cuda.so.1 when it sits next to LIBRARY, runs
# `pip wheel` and prints the wheel's path. The source tree is left untouched.
# $PYTHON picks the interpreter whose pip builds it (default: python3).
set -eu

if [ $# -ne 2 ]; then
    echo "usage: $0 LIBRARY OUTDIR" >&2
    exit 2
fi
library=$1
outdir=$2
python=${PYTHON:-python3}
here=$(cd "$(dirname "$0")" && pwd)

if [ ! -e "$library" ]; then
    echo "$0: $library does not exist" >&2
    exit 1
fi
real=$(readlink -f "$library")
if command -v readelf >/dev/null 2>&1; then
    soname=$(readelf -d "$real" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    if [ "$soname" != "libkimi_linear.so.1" ]; then
        echo "$0: $real has SONAME '$soname', expected libkimi_linear.so.1" >&2
        exit 1
    fi
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
mkdir "$tmp/src" "$tmp/out"
cp -R "$here/kimi_linear" "$here/pyproject.toml" "$here/setup.py" "$here/README.md" "$tmp/src/"
find "$tmp/src" -name __pycache__ -type d -prune -exec rm -rf {} +
rm -rf "$tmp/src/kimi_linear/lib"
mkdir "$tmp/src/kimi_linear/lib"
cp "$real" "$tmp/src/kimi_linear/lib/libkimi_linear.so.1"
# The CUDA backend's plugin (a build with CUDA), which the library opens from its own folder.
plugin=$(dirname "$library")/libkimi_linear_cuda.so.1
if [ -e "$plugin" ]; then
    cp "$(readlink -f "$plugin")" "$tmp/src/kimi_linear/lib/libkimi_linear_cuda.so.1"
fi

"$python" -m pip wheel --no-deps --quiet -w "$tmp/out" "$tmp/src" >&2
mkdir -p "$outdir"
for wheel in "$tmp/out"/*.whl; do
    mv -f "$wheel" "$outdir/"
    echo "$(cd "$outdir" && pwd)/$(basename "$wheel")"
done
