#!/usr/bin/env bash
# Runs a command as on a machine without CUDA: in a private mount namespace, every CUDA
# library file the dynamic loader could find (the ld.so cache, LD_LIBRARY_PATH, the toolkit's
# folders) is covered by an empty file, so loading it fails ("file too short"). Nothing
# outside the command sees a change. Needs unshare(1) with mount namespaces (root, or
# unprivileged user namespaces); without them it fails rather than run the command with CUDA
# in sight.
#   packaging/without_cuda.sh COMMAND [ARGS...]
# KL_HIDE (an extended regex of library names, default every CUDA library) narrows what is
# hidden, e.g. KL_HIDE=libcublasLt on a GPU machine: the driver stays, the runtime goes.
set -euo pipefail
if [[ ${1:-} != --inside ]]; then
  if ! unshare --mount --map-root-user true 2>/dev/null && ! unshare --mount true 2>/dev/null; then
    echo "without_cuda.sh: cannot create a mount namespace (unshare --mount)" >&2
    exit 3
  fi
  if unshare --mount --map-root-user true 2>/dev/null; then
    exec unshare --mount --map-root-user "$0" --inside "$@"
  fi
  exec unshare --mount "$0" --inside "$@"
fi
shift
pattern=${KL_HIDE:-lib(cuda|cudart|cublas|cublasLt|nvrtc|nvJitLink)}'\.so'
export KL_HIDE_PATTERN=$pattern
{
  ldconfig -p | awk '{print $NF}'
  IFS=: read -ra extra <<<"${LD_LIBRARY_PATH:-}"
  for d in "${extra[@]}" /usr/local/cuda*/lib* /usr/local/cuda*/targets/*/lib; do
    [[ -n $d && -d $d ]] && find "$d" -maxdepth 1 -name 'lib*.so*'
  done
} | grep -E "/$pattern" | sort -u | while read -r f; do
  [[ -e $f ]] && mount --bind /dev/null "$(readlink -f "$f")"
done
# A check that the hiding holds: the CUDA runtime libraries must no longer load.
if command -v python3 >/dev/null; then
  python3 - <<'PY'
import ctypes, os, re, sys
for name in ("libcublasLt.so.13", "libcublasLt.so.12", "libcublas.so.13", "libcublas.so.12",
             "libcudart.so.13", "libcudart.so.12", "libcuda.so.1"):
    if not re.match(os.environ["KL_HIDE_PATTERN"], name):
        continue
    try:
        ctypes.CDLL(name)
    except OSError:
        continue
    sys.exit("without_cuda.sh: %s still loads" % name)
print("without_cuda.sh: no CUDA library loads", file=sys.stderr)
PY
fi
exec "$@"
