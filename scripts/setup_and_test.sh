#!/usr/bin/env bash
# Installs what is missing (Debian and PyPI packages), builds, and runs every test: the
# release build (CUDA backend compiled when nvcc exists, or forced with KL_CUDA=ON), then
# the same suite under AddressSanitizer + UndefinedBehaviorSanitizer, then the threaded
# tests under ThreadSanitizer (KL_SKIP_TSAN=1 skips that stage), then each libFuzzer
# target for KL_FUZZ_SECONDS (default 60; 0 skips them).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)

debian_packages=(cmake g++ make pkg-config libgtest-dev libbenchmark-dev nlohmann-json3-dev python3
                 swig default-jdk-headless junit4 mono-mcs mono-runtime mono-xbuild)
# The TSan stage and the fuzz targets build with clang and its sanitizer runtimes.
if [[ "${KL_SKIP_SANITIZERS:-0}" != 1 && "${KL_SKIP_TSAN:-0}" != 1 ]] || [[ "${KL_FUZZ_SECONDS:-60}" != 0 ]]; then
  debian_packages+=(clang libclang-rt-14-dev)
fi
missing=()
for p in "${debian_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "== installing Debian packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

echo "== Python test environment (NumPy, pytest, tiktoken, jinja2 from PyPI) in build/venv"
mkdir -p build
if [[ ! -x build/venv/bin/python ]]; then
  python3 -m venv build/venv 2>/dev/null || {
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
    $SUDO apt-get install -y -qq python3-venv && python3 -m venv build/venv; }
fi
build/venv/bin/pip install -q --disable-pip-version-check -r tools/reference/requirements.txt \
  -r tests/tokenizer/requirements.txt

# The CUDA toolkit's usual home, for shells whose PATH lacks it.
if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi

echo "== release build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DKL_CUDA="${KL_CUDA:-AUTO}" \
      -DKL_BINDINGS="${KL_BINDINGS:-AUTO}" \
      -DPython3_EXECUTABLE="$PWD/build/venv/bin/python" >/dev/null
cmake --build build -j"$JOBS"
ctest --test-dir build --output-on-failure -j"$JOBS"

if [[ "${KL_SKIP_SANITIZERS:-0}" != 1 ]]; then
  echo "== ASan + UBSan build"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKL_SANITIZE=ON -DKL_CUDA=OFF >/dev/null
  cmake --build build-asan -j"$JOBS"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j"$JOBS"
fi

# ThreadSanitizer: the C API tests, the thread pool and session tests, the multi-threaded
# stress tests (tests/stress/) and the split model's shards on their threads, in their own build. clang, because GCC's target_clones
# resolvers (backends/cpu/simd.h) run before the TSan runtime is initialised.
if [[ "${KL_SKIP_SANITIZERS:-0}" != 1 && "${KL_SKIP_TSAN:-0}" != 1 ]]; then
  echo "== ThreadSanitizer build (clang)"
  CC=clang CXX=clang++ cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKL_TSAN=ON \
        -DKL_CUDA=OFF -DKL_BINDINGS=OFF >/dev/null
  cmake --build build-tsan -j"$JOBS" --target kl_capi_tests kl_stress_tests kl_core_tests
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    ctest --test-dir build-tsan --output-on-failure -j"$JOBS" -R '^(CApi|Stress|ThreadPool|Session|ShardCpu|DecodeBatcher|FifoMutex)'
fi

if [[ "${KL_FUZZ_SECONDS:-60}" != 0 ]]; then
  echo "== fuzz targets, ${KL_FUZZ_SECONDS:-60} s each (clang, ASan + UBSan)"
  scripts/fuzz.sh "${KL_FUZZ_SECONDS:-60}"
fi
