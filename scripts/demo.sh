#!/usr/bin/env bash
# Builds the kimi CLI and asks the bundled demo model (models/kimi-linear-tiny: a 7.3M-parameter
# Kimi Linear trained on recall, copying, addition and sorting) a few questions in its chat
# format; the answers stream on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target kimi
MODEL=models/kimi-linear-tiny
for question in "Remember: apple=3, river=7, stone=9, tiger=42. What is river, tiger?" \
                "Sort: 42 7 19 3 88" "What is 27 + 58?"; do
  echo "> $question"
  build/tools/kimi run "$MODEL" --prompt "$question" --chat --max-new 48 --device cpu
done
