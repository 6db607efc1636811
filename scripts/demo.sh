#!/usr/bin/env bash
# Builds the kimi CLI and asks the bundled demo model (models/kimi-linear-tiny: a 7.3M-parameter
# Kimi Linear trained on recall, copying, addition and sorting) a few questions in its chat
# format; the answers stream on the CPU.
# Installs what the build needs when it is missing (Debian packages); builds in build-demo/,
# CPU only, so it neither waits for the CUDA kernels nor changes build/'s test configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for p in cmake g++ make nlohmann-json3-dev; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "== installing Debian packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
cmake -S . -B build-demo -DCMAKE_BUILD_TYPE=Release -DKL_CUDA=OFF -DKL_BUILD_TESTS=OFF \
      -DKL_BINDINGS=OFF -DKL_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build-demo -j"$(nproc)" --target kimi
MODEL=models/kimi-linear-tiny
for question in "Remember: apple=3, river=7, stone=9, tiger=42. What is river, tiger?" \
                "Sort: 42 7 19 3 88" "What is 27 + 58?"; do
  echo "> $question"
  build-demo/tools/kimi run "$MODEL" --prompt "$question" --chat --max-new 48 --device cpu
done
