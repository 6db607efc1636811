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
# The consumers run under packaging/without_cuda.sh (a mount namespace in which every CUDA
# library is covered and checked not to load), each under env -i with a scratch HOME: no
# LD_LIBRARY_PATH, no MONO_PATH, no CLASSPATH. Without namespaces the check fails, unless
# KL_NO_NAMESPACES=1 asks to run the consumers with the CUDA libraries left in place (said
# loudly).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }

# ---- the consumers (inside the namespace) ------------------------------------------------------
if [[ ${1:-} == --consumers ]]; then
  work=$2 model=$3 greedy=$4
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

rc=0
"$src/packaging/without_cuda.sh" "$0" --consumers "$work" "$model" "$greedy" || rc=$?
if [[ $rc == 0 ]]; then
  echo "OK: wheel, jar and nupkg each ran alone in a clean environment without the CUDA libraries"
elif [[ $rc == 3 && ${KL_NO_NAMESPACES:-} == 1 ]]; then
  echo "WARNING: no mount namespace; KL_NO_NAMESPACES=1: the consumers run with the CUDA" \
       "libraries NOT hidden" >&2
  "$0" --consumers "$work" "$model" "$greedy"
  echo "OK (CUDA libraries NOT hidden): wheel, jar and nupkg each ran alone in a clean environment"
elif [[ $rc == 3 ]]; then
  fail "no mount namespace here (unshare --mount); the CUDA libraries cannot be hidden. Set" \
       "KL_NO_NAMESPACES=1 to run without hiding them."
else
  fail "the consumers failed (exit $rc)"
fi
