#!/usr/bin/env bash
# The three packages, each installed on its own and run in a clean environment with the CUDA
# libraries hidden, as on a machine that has none:
#   check_packages_clean.sh LIBRARY JAR NUPKG MODEL_DIR GREEDY_IDS_FILE PYTHON
# LIBRARY is libkimi_linear.so (the wheel is built from it with build_wheel.sh); JAR is
# kimi-linear.jar; NUPKG is KimiLinear.<version>.nupkg. The consumers in packaging/consumers
# (the wheel's in a fresh venv, the jar's with only the jar on the class path, the nupkg's
# with only the unpacked package) must each print the C reference's greedy line
# (tests/capi/greedy_ids.c) on device AUTO.
#
# The runs happen inside a mount namespace (unshare --mount --map-root-user) in which an
# empty directory is bind-mounted over every directory holding libcudart*/libcublas*/libcuda*
# (from `ldconfig -p` and /usr/local/cuda*), or an empty file over each such library where it
# sits in a shared system directory; the script checks that none of them can be opened there.
# Each consumer runs under env -i with a scratch HOME: no LD_LIBRARY_PATH, no MONO_PATH, no
# CLASSPATH. Without namespaces the check fails, unless KL_NO_NAMESPACES=1 asks to run the
# consumers with the CUDA libraries left in place (said loudly).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }

# ---- inside the namespace: hide CUDA, then run the consumers ------------------------------
if [[ ${1:-} == --inside ]]; then
  work=$2 model=$3 greedy=$4 hide=$5
  if [[ $hide == 1 ]]; then
    mkdir -p "$work/empty-dir"
    : > "$work/empty-file"
    mapfile -t libs < <( { ldconfig -p | sed -n 's/.* => //p'
                           ls -d /usr/local/cuda*/lib*/* /usr/local/cuda*/targets/*/lib/* 2>/dev/null; } |
                         grep -E '/lib(cudart|cublas|cublasLt|cuda)[^/]*\.so' | sort -u)
    declare -A dirs=()
    for lib in "${libs[@]}"; do [[ -e $lib ]] && dirs[$(dirname "$(readlink -f "$lib")")]=1; done
    for lib in "${libs[@]}"; do [[ -e $lib ]] && dirs[$(dirname "$lib")]=1; done
    for dir in "${!dirs[@]}"; do
      if [[ $dir == *cuda* ]]; then
        mount --bind "$work/empty-dir" "$dir"
      else # a shared system directory (a driver's libcuda.so.1): only the libraries go
        for lib in "$dir"/libcud* "$dir"/libcublas*; do
          [[ -f $lib && ! -L $lib ]] && mount --bind "$work/empty-file" "$lib"
        done
      fi
    done
    echo "hidden: ${!dirs[*]}"
    # Whatever is on this machine, none of these may load now.
    /usr/bin/env -i PATH=/usr/bin:/bin "$work/venv/bin/python" - <<'PY' || fail "a CUDA library is still loadable"
import ctypes
names = ["libcuda.so.1", "libcudart.so.12", "libcudart.so.13", "libcublas.so.12", "libcublas.so.13",
         "libcublasLt.so.12", "libcublasLt.so.13"]
for name in names:
    try:
        ctypes.CDLL(name)
    except OSError:
        continue
    raise SystemExit(f"{name} is loadable")
print("no CUDA library loads:", ", ".join(names))
PY
  fi
  expected=$(cat "$greedy")
  run() { # NAME COMMAND...: in a clean environment, from the scratch folder; prints must match
    local name=$1 out
    shift
    out=$(cd "$work" && /usr/bin/env -i PATH=/usr/bin:/bin HOME="$work/home" "$@") ||
      fail "the $name consumer failed: $out"
    [[ $out == "$expected" ]] || fail "the $name consumer printed '$out', the C reference '$expected'"
    echo "OK: the $name consumer generated the C reference's greedy tokens"
  }
  run wheel "$work/venv/bin/python" "$src/packaging/consumers/greedy.py" "$model"
  where=$(cd "$work" && /usr/bin/env -i "$work/venv/bin/python" -c "import kimi_linear; print(kimi_linear.library_path())")
  [[ $where == "$work/venv/"* ]] || fail "the wheel's consumer loaded $where, not the wheel's copy"
  run jar java -cp "$work/jar/kimi-linear.jar" "$src/packaging/consumers/java/consumer/Greedy.java" "$model"
  run nupkg mono "$work/nupkg-app/Greedy.exe" "$model"
  exit 0
fi

# ---- outside: install each package into the scratch folder, then enter the namespace ------
library=$(realpath "$1") jar=$(realpath "$2") nupkg=$(realpath "$3") model=$(realpath "$4")
greedy=$(realpath "$5") python=${6:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/home" "$work/jar" "$work/nupkg" "$work/nupkg-app"

wheel=$(PYTHON=$python "$src/bindings/python/build_wheel.sh" "$library" "$work/wheels")
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install -q --no-index --no-deps "$wheel"

cp "$jar" "$work/jar/kimi-linear.jar"

# The nupkg as a dotnet build lays out a package's assets: the assembly beside the program,
# the native libraries under runtimes/linux-x64/native.
(cd "$work/nupkg" && cmake -E tar xf "$nupkg")
mcs -nologo -r:"$work/nupkg/lib/netstandard2.0/KimiLinear.dll" -out:"$work/nupkg-app/Greedy.exe" \
    "$src/packaging/consumers/Greedy.cs"
cp "$work/nupkg/lib/netstandard2.0/KimiLinear.dll" "$work/nupkg-app/"
cp -R "$work/nupkg/runtimes" "$work/nupkg-app/"

if unshare --mount --map-root-user true 2>"$work/unshare.err"; then
  unshare --mount --map-root-user "$0" --inside "$work" "$model" "$greedy" 1
  echo "OK: wheel, jar and nupkg each ran alone in a clean environment without the CUDA libraries"
elif [[ ${KL_NO_NAMESPACES:-} == 1 ]]; then
  echo "WARNING: no mount namespace ($(cat "$work/unshare.err")); KL_NO_NAMESPACES=1: the" \
       "consumers run with the CUDA libraries NOT hidden" >&2
  "$0" --inside "$work" "$model" "$greedy" 0
  echo "OK (CUDA libraries NOT hidden): wheel, jar and nupkg each ran alone in a clean environment"
else
  fail "unshare --mount --map-root-user is not permitted here ($(cat "$work/unshare.err")); the" \
       "CUDA libraries cannot be hidden. Set KL_NO_NAMESPACES=1 to run without hiding them."
fi
