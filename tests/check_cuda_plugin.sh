#!/usr/bin/env bash
# The CUDA backend is a plugin (docs/design/architecture.md): libkimi_linear.so needs no CUDA
# library, the plugin exports only its entry point, and on a machine without CUDA (the CUDA
# libraries hidden by packaging/without_cuda.sh) the CLI runs on the CPU under AUTO while
# KL_DEVICE_CUDA fails with KL_ERR_DEVICE naming what is missing (the driver, libcuda.so.1).
#   check_cuda_plugin.sh LIBRARY PLUGIN KIMI MAKE_TINY_MODEL
set -euo pipefail
lib=$1 plugin=$2 kimi=$3 make_tiny_model=$4
here=$(cd "$(dirname "$0")/.." && pwd)
fail() { echo "FAIL: $*"; exit 1; }

needed=$(readelf -d "$lib" | awk '/NEEDED/ {print $NF}')
grep -qiE 'libcu|nvrtc' <<<"$needed" && fail "$lib needs CUDA libraries: $needed"
exported=$(nm -D --defined-only "$plugin" | awk '{print $3}' | grep -v '^_init$\|^_fini$')
[[ $exported == kl_cuda_plugin_v1 ]] || fail "the plugin exports more than its entry: $exported"
readelf -d "$plugin" | grep -q 'NEEDED.*libcublasLt' || fail "the plugin does not link cuBLASLt"

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$make_tiny_model" "$dir/m" --preset tiny --seed 5 >/dev/null
want=$("$kimi" run "$dir/m" --device cpu --prompt-tokens 1,2,3 --max-new 6 2>/dev/null)

# No CUDA on the machine: AUTO runs on the CPU with the same tokens, CUDA names the driver.
got=$("$here/packaging/without_cuda.sh" "$kimi" run "$dir/m" --device auto \
      --prompt-tokens 1,2,3 --max-new 6 2>"$dir/err") || fail "AUTO without CUDA: $(cat "$dir/err")"
[[ $got == "$want" ]] || fail "AUTO without CUDA gave '$got', the CPU '$want'"
set +e
"$here/packaging/without_cuda.sh" "$kimi" info "$dir/m" --device cuda 2>"$dir/err" >/dev/null
rc=$?
set -e
[[ $rc -eq 1 ]] && grep -q "KL_ERR_DEVICE" "$dir/err" && grep -q "no NVIDIA driver (libcuda.so.1" "$dir/err" \
  || fail "KL_DEVICE_CUDA without CUDA exited $rc: $(cat "$dir/err")"

echo "OK: libkimi_linear.so needs no CUDA library; without CUDA, AUTO runs on the CPU and CUDA names the missing driver"
