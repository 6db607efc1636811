#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/, clang, ASan + UBSan) in build-fuzz/ and runs each
# for a bounded time from its committed seed corpus. Fails on the first crash, leak, timeout
# or out-of-memory, leaving the input that caused it in build-fuzz/artifacts/<target>/.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default: 60 s, every fuzz_* target)
# What a new corpus entry found is kept in build-fuzz/corpus/<target>/ between runs; to grow
# the committed seeds, minimise it into tests/fuzz/corpus/<target>/ with -merge=1.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
JOBS=$(nproc)

cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
      -DCMAKE_CXX_COMPILER=clang++ -DKL_FUZZ=ON -DKL_CUDA=OFF -DKL_BINDINGS=OFF \
      -DKL_BUILD_TESTS=OFF -DKL_BUILD_TOOLS=OFF -DKL_BUILD_EXAMPLES=OFF >/dev/null
targets=("$@")
if ((${#targets[@]} == 0)); then
  for source in tests/fuzz/fuzz_*.cpp; do
    [[ -e $source ]] && targets+=("$(basename "$source" .cpp)")
  done
fi
if ((${#targets[@]} == 0)); then
  echo "no fuzz targets in tests/fuzz/" >&2
  exit 1
fi
cmake --build build-fuzz -j"$JOBS" --target "${targets[@]}"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
for target in "${targets[@]}"; do
  name=${target#fuzz_}
  corpus=build-fuzz/corpus/$name artifacts=build-fuzz/artifacts/$name
  mkdir -p "$corpus" "$artifacts"
  seeds=()
  [[ -d tests/fuzz/corpus/$name ]] && seeds+=("tests/fuzz/corpus/$name")
  echo "== $target: ${seconds} s"
  # -timeout: one input may not take more than 10 s; -rss_limit_mb: nor 2 GB of memory.
  "build-fuzz/tests/fuzz/$target" "$corpus" "${seeds[@]}" -max_total_time="$seconds" \
      -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" \
      2>"build-fuzz/$target.log" || { tail -60 "build-fuzz/$target.log"; exit 1; }
  grep -E "^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss_mb)" \
      "build-fuzz/$target.log" || tail -3 "build-fuzz/$target.log"
done
