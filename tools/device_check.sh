#!/usr/bin/env bash
# The GPU loop used with the lent device machine (see docs/perf/): build here, run there.
#   tools/device_check.sh build      # here: CUDA build of the library, CLI, tools and GPU tests
#   tools/device_check.sh run        # on the device, from the repository root, with
#                                    # carry = build-cuda/{tools/kimi,libkimi_linear.so.0.1.0,
#                                    #   tools/make_tiny_model,tests/kl_gpu_tests}
# `run` writes the GPU test log, a decode profile and the benchmark tables under $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  build)
    cmake -S . -B build-cuda -DKL_CUDA=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build-cuda -j"$(nproc)" --target kimi_linear kimi make_tiny_model kl_gpu_tests
    ;;
  run)
    OUT=${OUT:-/tmp/kl-device-out}
    mkdir -p "$OUT"
    export LD_LIBRARY_PATH=$PWD/build-cuda:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
    export KL_MAKE_TINY_MODEL=$PWD/build-cuda/tools/make_tiny_model
    ln -sf libkimi_linear.so.0.1.0 build-cuda/libkimi_linear.so.1
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/device.txt"
    build-cuda/tests/kl_gpu_tests 2>&1 | tee "$OUT/gpu_tests.log" |
      grep -E "gpu parity|gpu identity|gpu dense|Failure|FAILED|PASSED" || true
    kimi=build-cuda/tools/kimi
    KL_CUDA_PROFILE=1 $kimi bench --random configs/kimi-linear-48b-a3b.json --layers 8 \
      --device cuda --prompt-len 16 --decode 64 --repeats 1 2>&1 | tee "$OUT/profile_decode.log"
    for layers in 4 8; do
      $kimi bench --random configs/kimi-linear-48b-a3b.json --layers $layers --device cuda \
        --prompt-len 1024 --decode 64 --repeats 2
    done 2>&1 | tee "$OUT/bench.log"
    build-cuda/tools/make_tiny_model /tmp/m100 --preset 100m --seed 1 >/dev/null
    $kimi bench /tmp/m100 --device cuda --prompt-len 1024 --decode 64 --repeats 2 2>&1 |
      tee -a "$OUT/bench.log"
    ;;
  *)
    echo "usage: $0 build|run" >&2
    exit 2
    ;;
esac
