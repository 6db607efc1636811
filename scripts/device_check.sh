#!/usr/bin/env bash
# The GPU loop used with the lent device machine (see docs/perf/): build here, run there.
#   scripts/device_check.sh build   # here: CUDA build; binaries staged in build-cuda/carry/
#   scripts/device_check.sh run     # on the device, from the repository root, with
#                                   # carry = ["build-cuda/carry"] (+ ".whl" holding the
#                                   # fla-core wheel for the FLA comparison, never committed)
# `run` writes under $OUT: device.txt, gpu_tests.log, ops_bench.log (our op benchmarks and
# the side-by-side with FLA), model_bench.log (kimi bench on the 48B-A3B shapes at two
# depths) and profile.log (KL_CUDA_PROFILE per-op breakdown of decode and prefill).
# KL_RUN_PARTS (default "tests ops model profile demo") picks what `run` does; "sanitize" runs
# the GPU tests under compute-sanitizer (memcheck with leak check, racecheck, synccheck; logs
# sanitize_<tool>.log), KL_SANITIZE_TOOLS and KL_SANITIZE_FILTER (a gtest filter) narrow it,
# KL_SANITIZE_SECONDS bounds each tool (default 240). initcheck is left out by default: it does
# not see cuBLASLt's stores on sm_90 and flags every element of a GEMM output as uninitialized
# (docs/perf/hardening.md); "ablation" profiles batch-1 decode of the 48B shapes by leaving
# each section's chained kernels out of the decode graph (KL_CUDA_PROFILE=without:SECTION;
# ablation.log: TPOT without it and what it costs; KL_WEIGHTS, KL_ABLATION_CONTEXT);
# "shards" runs the NCCL and CUDA-shard GPU tests and, with two GPUs or more, the 48B
# shapes' bench on one GPU and split over two (shards.log; KL_CUDA_SHARDS=1, NCCL from
# KL_NCCL_LIBRARY, the system, or build-nccl/ as below);
# "mla" runs the expanded MLA prefill's tests and mla_bench with its mma.sync and wgmma kernels
# (KL_CUDA_MLA_WGMMA=0|1), and the 48B shapes' prefill with the absorbed form and each
# expanded kernel (KL_CUDA_MLA_PREFILL=absorbed|expanded; mla.log);
# "wgmma" runs the wgmma tiles' and the grouped experts' tests, moe_bench and the 48B shapes'
# prefill in bf16 and FP8 with each experts' mainloop: mma.sync, wgmma stage by stage and
# warp-specialized wgmma (KL_CUDA_WGMMA=0|stagewise|specialized, or KL_WGMMA_MODES; wgmma.log);
# "suites" runs "tests", "optin" and the whole suite with the candidate opt-ins
# (KL_CANDIDATES: env words, e.g. "KL_CUDA_DECODE_NARROW=gemv,downwide"; none by default;
# gpu_tests_candidates.log) at once (their models are small; one call's wall time);
# "optin" runs the whole GPU suite with the kernels the defaults replaced (the fallbacks:
# KL_CUDA_WGMMA=stagewise, KL_CUDA_MLA_WGMMA=0, KL_CUDA_KDA_FUSED=0, KL_CUDA_DECODE_NARROW=0,
# KL_CUDA_DECODE_STACKED=0; optin.log,
# gpu_tests_optin.log), so that they stay checked; "optbench" the 48B prefill with the
# fallbacks, the defaults, and the defaults with the experts' 128-row tiles
# (KL_CUDA_MOE_TILE=128), and an eager profile of the defaults (optbench.log;
# KL_OPTBENCH_WEIGHTS, default "bf16 fp8", names the formats: "fp8" alone fits an H100);
# "oldnew" times decode at 512 with an older build's kimi and libraries (build-cuda/old,
# carried by itself) against this one's, alternating, twice (oldnew.log);
# "ncu" profiles the grouped experts' gate/up and down GEMMs at 4096 tokens with Nsight
# Compute (speed of light, memory and compute workload, warp stalls, occupancy) for each
# format, mainloop (KL_WGMMA_MODES, default "stagewise specialized") and tile height, and the
# expanded MLA prefill's first launch with each kernel (ncu.log);
# "batching" runs the 48B shapes' batch call and its threads (kl_session_next on B threads
# through the decode batcher) at 4K context, B = 8 and 64, with --batch-wait-us 0 and 2000
# (batching.log; KL_WEIGHTS, default bf16: fp8 on an H100);
# "decodencu" profiles batch-1 decode's kernels (experts, GEMVs, KDA step, norms, router) of
# 4 layers of the 48B shapes with Nsight Compute, per format (KL_DECODE_NCU_WEIGHTS, default
# "fp8 bf16"; KL_DECODE_NCU_KERNELS a regex of kernel names; decodencu.log);
# "tpotab" runs the GPU tests (KL_AB_FILTER, default GpuOps and the models)
# with each set of opt-in switches in KL_AB_SETS (";"-separated env words; "default" = none;
# default: the defaults and KL_CUDA_DECODE_NARROW=downwide), moe_bench decode and the 48B
# shapes' TPOT with each (TPOT twice), per format in KL_AB_WEIGHTS (default "fp8 int4";
# tpotab.log; KL_AB_TESTS=0 leaves the tests out: on an H100 FP8 and INT4 take ~5 s a TPOT run);
# "cancel" measures cancel-to-return latency of a long prefill (tools/bench/cancel_latency;
# cancel.log);
# "plugin" checks the C API's CUDA plugin on the device (plugin.log): AUTO picks the GPU, the
# greedy tokens of a tiny model match the CPU's, a device out-of-memory raised inside the
# plugin reaches the caller as KL_ERR_OUT_OF_MEMORY, and with the plugin's cuBLASLt hidden or
# the plugin missing AUTO falls back to the CPU and CUDA says what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
binaries=(libkimi_linear.so.0.1.0 libkimi_linear_cuda.so.1 tools/kimi tools/bench_host_sampling tools/make_tiny_model tests/kl_gpu_tests
          tools/kda_chunk_bench tools/kda_decode_bench tools/mla_bench tools/moe_bench
          tools/sampling_bench tools/cancel_latency tools/norm_bench tools/batch_decode_bench
          tools/gemm_bench)
case "${1:-}" in
  build)
    cmake -S . -B build-cuda -DKL_CUDA=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
    targets=()
    for b in "${binaries[@]}"; do targets+=("$(basename "${b%%.so*}")"); done
    targets=("${targets[@]/libkimi_linear/kimi_linear}")
    cmake --build build-cuda -j"$(nproc)" --target "${targets[@]}"
    rm -rf build-cuda/carry && mkdir -p build-cuda/carry
    for b in "${binaries[@]}"; do cp "build-cuda/$b" build-cuda/carry/; done
    ;;
  run)
    OUT=${OUT:-/tmp/kl-device-out}
    mkdir -p "$OUT"
    bin=$PWD/build-cuda/carry
    ln -sf libkimi_linear.so.0.1.0 "$bin/libkimi_linear.so.1"
    export LD_LIBRARY_PATH=$bin:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
    export KL_MAKE_TINY_MODEL=$bin/make_tiny_model
    # NCCL for the CUDA shards' tests (the device machine reaches no package index): one
    # already there, else the wheel's libnccl.so.2 (199 MB, over one call's 64 MiB carry),
    # split into build-nccl/part-NN (split -b 60M -d) and brought one piece per call of a
    # warm machine (a carried path stays there while later calls name other paths).
    nccl=$(ldconfig -p | awk '/libnccl.so.2 /{print $NF; exit}')
    if [[ -z $nccl && ! -f build-nccl/libnccl.so.2 ]] && ls build-nccl/part-* > /dev/null 2>&1; then
      cat build-nccl/part-* > build-nccl/libnccl.so.2
      (cd build-nccl && sha256sum -c SHA256) || rm -f build-nccl/libnccl.so.2
    fi
    [[ -z $nccl && -f build-nccl/libnccl.so.2 ]] && nccl=$PWD/build-nccl/libnccl.so.2
    [[ -n $nccl ]] && export KL_NCCL_LIBRARY=$nccl
    parts=${KL_RUN_PARTS:-tests ops model profile demo}
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader |
      tee "$OUT/device.txt"
    date -u | tee -a "$OUT/device.txt"
    config=configs/kimi-linear-48b-a3b.json
    # TPOT of the 48B shapes at 512 and 32K context in format $1, under `env` words $2...
    tpot() {
      local weights=$1; shift
      timeout 120 env "$@" "$bin/kimi" bench --random $config --device cuda --weights "$weights" \
        --prompt-len 8 --context 512,32768 --decode 64 --repeats 2 --bandwidth-gbs 4300 ||
        echo "kimi bench: exit $?"
    }
    layers_list=${KL_LAYERS:-4 8}  # depths of the 48B shapes (all 27 need the H200)
    optin=(KL_CUDA_WGMMA=stagewise KL_CUDA_MLA_WGMMA=0 KL_CUDA_KDA_FUSED=0 KL_CUDA_DECODE_NARROW=0
           KL_CUDA_DECODE_STACKED=0)  # the fallbacks
    # Opt-in paths that may become defaults: the whole suite runs with them too ("suites").
    read -ra candidates <<< "${KL_CANDIDATES:-}"
    if [[ $parts == *suites* ]]; then  # the default, fallback and candidate suites side by side
      "$bin/kl_gpu_tests" > "$OUT/gpu_tests.log" 2>&1 &
      env "${optin[@]}" "$bin/kl_gpu_tests" > "$OUT/gpu_tests_optin.log" 2>&1 &
      ((${#candidates[@]})) &&
        timeout 450 env "${candidates[@]}" "$bin/kl_gpu_tests" > "$OUT/gpu_tests_candidates.log" 2>&1 &
      wait
      grep -HE "Failure|FAILED|PASSED|tests ran" "$OUT"/gpu_tests*.log || true
    fi
    if [[ $parts == *tests* ]]; then
      "$bin/kl_gpu_tests" 2>&1 | tee "$OUT/gpu_tests.log" |
        grep -E "^\[ (gpu|kda|mla|moe|sampl)|Failure|FAILED|PASSED|tests ran" || true
    fi
    if [[ $parts == *ops* ]]; then
      for b in kda_chunk_bench kda_decode_bench mla_bench moe_bench gemm_bench sampling_bench \
               batch_decode_bench; do
        echo "== $b"; "$bin/$b"
      done 2>&1 | tee "$OUT/ops_bench.log"
      if ls .whl/fla_core-*.whl >/dev/null 2>&1; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
          --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
        python3 tools/bench/kda_vs_fla.py "$bin/kda_chunk_bench" 2>&1 |
          tee -a "$OUT/ops_bench.log"
      fi
    fi
    if [[ $parts == *model* ]]; then
      for layers in $layers_list; do
        "$bin/kimi" bench --random $config --layers $layers --device cuda \
          --prompt-len 1024,8192,32768 --context 1024,32768,131072 --decode 64 --repeats 2
      done 2>&1 | tee "$OUT/model_bench.log"
      "$bin/make_tiny_model" /tmp/m100 --preset 100m --seed 1 >/dev/null
      "$bin/kimi" bench /tmp/m100 --device cuda --prompt-len 1024 --context 1024 --decode 64 \
        --repeats 2 2>&1 | tee -a "$OUT/model_bench.log"
    fi
    if [[ $parts == *profile* ]]; then  # eager (no graph): each section ends in a sync
      export CUDA_MODULE_LOADING=EAGER  # no first-call module loads in the sections
      { echo "== decode at context 1024 (eager)"
        KL_CUDA_PROFILE=1 "$bin/kimi" bench --random $config --layers ${layers_list##* } \
          --device cuda --prompt-len 8 --context 1024 --decode 64 --repeats 1
        echo "== prefill of 8192 tokens"
        KL_CUDA_PROFILE=1 "$bin/kimi" bench --random $config --layers ${layers_list##* } \
          --device cuda --prompt-len 8192 --context 0 --decode 1 --repeats 1; } 2>&1 |
        tee "$OUT/profile.log"
    fi
    if [[ $parts == *ablation* ]]; then  # each section's cost inside the chained decode graph
      export CUDA_MODULE_LOADING=EAGER
      step() { "$bin/kimi" bench --random $config --device cuda --weights "${KL_WEIGHTS:-bf16}" \
                 --prompt-len 8 --context "${KL_ABLATION_CONTEXT:-512}" --decode 64 --repeats 2 \
                 --bandwidth-gbs 4300 | awk '/TPOT ms p50/ { getline; print $2 }'; }
      { base=$(step); echo "baseline: TPOT $base ms"
        for section in "moe experts (GEMVs)" "kda projections (1 GEMV)" "norms + residual" \
                       "mla attention" "moe router" "kda fused decode step" "kda o_proj" \
                       "mla q/kv proj + cache" "mla o_proj" "dense mlp" "embedding"; do
          tpot=$(KL_CUDA_PROFILE="without:$section" step)
          awk -v s="$section" -v b="$base" -v t="$tpot" \
            'BEGIN { printf "without %-26s TPOT %s ms, costs %.3f ms\n", s, t, b - t }'
        done
        echo "baseline again: TPOT $(step) ms"; } 2>&1 | tee "$OUT/ablation.log"
    fi
    if [[ $parts == *batching* ]]; then  # batch call and threads through the batcher at 4K
      for wait_us in 0 2000; do
        echo "== --batch-wait-us $wait_us"
        "$bin/kimi" bench --random $config --device cuda --weights "${KL_WEIGHTS:-bf16}" \
          --batch-only --context 4096 --batch 8,64 --decode 32 --repeats 1 \
          --batch-wait-us $wait_us --bandwidth-gbs 4300 || echo "kimi bench: exit $?"
      done 2>&1 | tee "$OUT/batching.log"
    fi
    if [[ $parts == *shards* ]]; then  # CUDA shards over NCCL: tests, then 1 GPU against 2
      echo "NCCL: ${KL_NCCL_LIBRARY:-none found}" | tee "$OUT/shards.log"
      "$bin/kl_gpu_tests" --gtest_filter='Nccl*:GpuShards*' 2>&1 |
        tee -a "$OUT/shards.log" | grep -E "^\[  (SKIPPED|FAILED) |Failure|PASSED|tests ran" || true
      if (( $(nvidia-smi -L | wc -l) >= 2 )); then
        for devices in 0 0,1; do
          KL_CUDA_SHARDS=1 NCCL_NVLS_ENABLE=0 "$bin/kimi" bench --random $config --device cuda \
            --devices $devices --prompt-len 8,8192 --context 512,32768,131072 --decode 64 \
            --repeats 2 --bandwidth-gbs 4300
        done 2>&1 | tee -a "$OUT/shards.log"
      fi
    fi
    if [[ $parts == *mla* ]]; then  # MLA prefill: absorbed, expanded mma.sync, expanded wgmma
      { for wgmma in 0 1; do
          echo "== KL_CUDA_MLA_WGMMA=$wgmma"
          KL_CUDA_MLA_WGMMA=$wgmma "$bin/kl_gpu_tests" \
            --gtest_filter='*MlaPrefill*:*ExpandedMla*:GpuMla*' 2>&1 |
            grep -E "^\[ (gpu|mla)|Failure|FAILED|PASSED|tests ran"
          KL_CUDA_MLA_WGMMA=$wgmma "$bin/mla_bench"
        done
        for form in ${KL_MLA_FORMS:-expanded wgmma}; do  # absorbed: the form before both
          echo "== MLA prefill: $form"
          KL_CUDA_MLA_PREFILL=${form/wgmma/expanded} KL_CUDA_MLA_WGMMA=$([[ $form == wgmma ]] &&
            echo 1 || echo 0) "$bin/kimi" bench --random $config --device cuda \
            --prompt-len 4096,16384 --context 512 --decode 16 --repeats 2 --bandwidth-gbs 4300
        done
        echo "== prefill of 8192 tokens, expanded (eager profile)"
        CUDA_MODULE_LOADING=EAGER KL_CUDA_MLA_PREFILL=expanded KL_CUDA_PROFILE=1 "$bin/kimi" bench \
          --random $config --layers ${layers_list##* } --device cuda --prompt-len 8192 \
          --context 0 --decode 1 --repeats 1; } 2>&1 | tee "$OUT/mla.log"
    fi
    if [[ $parts == *wgmma* ]]; then  # the grouped experts' wgmma mainloops against mma.sync
      modes=${KL_WGMMA_MODES:-0 stagewise specialized}
      { for on in $modes; do
          echo "== kl_gpu_tests, KL_CUDA_WGMMA=$on"
          KL_CUDA_WGMMA=$on "$bin/kl_gpu_tests" --gtest_filter='GpuWgmma*:GpuMoeGrouped*' 2>&1 |
            grep -E "^\[ +(OK|FAILED|SKIPPED) |wgmma \]|worst rel|Failure|PASSED|tests ran" || true
        done
        for format in bf16 fp8; do
          for on in $modes; do
            echo "== moe_bench --format $format, KL_CUDA_WGMMA=$on"
            KL_CUDA_WGMMA=$on "$bin/moe_bench" --format $format
          done
        done
        for weights in bf16 fp8; do  # the whole model's prefill with each wgmma mainloop
          for on in ${KL_WGMMA_PREFILL_MODES:-1 specialized}; do
            echo "== prefill, --weights $weights, KL_CUDA_WGMMA=$on"
            KL_CUDA_WGMMA=$on "$bin/kimi" bench --random $config --device cuda --weights $weights \
              --prompt-len 4096,16384 --context 512 --decode 16 --repeats 2 --bandwidth-gbs 4300
          done
        done; } 2>&1 | tee "$OUT/wgmma.log"
    fi
    if [[ $parts == *optin* ]]; then  # the GPU suite with the fallback kernels
      { echo "== kl_gpu_tests with ${optin[*]}"
        env "${optin[@]}" "$bin/kl_gpu_tests" 2>&1 | tee "$OUT/gpu_tests_optin.log" |
          grep -E "^\[ (gpu|kda|mla|moe|sampl|wgmma)|Failure|FAILED|PASSED|tests ran" || true
      } 2>&1 | tee "$OUT/optin.log"
    fi
    if [[ $parts == *optbench* ]]; then  # the 48B shapes with the fallbacks and the defaults
      { for weights in ${KL_OPTBENCH_WEIGHTS:-bf16 fp8}; do  # bf16 of 27 layers needs the H200
          for variant in fallbacks defaults defaults-tile128; do  # the experts' 128-row tiles
            echo "== prefill, --weights $weights, kernels: $variant"
            case $variant in
              fallbacks) set -- "${optin[@]}" ;;
              defaults) set -- KL_CUDA_DEFAULTS=1 ;;
              *) set -- KL_CUDA_MOE_TILE=128 ;;
            esac
            env "$@" "$bin/kimi" bench --random $config --device cuda --weights $weights \
              --prompt-len 4096,16384 --context 512 --decode 16 --repeats 2 --bandwidth-gbs 4300 ||
              echo "kimi bench: exit $?"
          done
        done
        echo "== prefill of 8192 tokens, 8 layers, default kernels (eager profile, warm pass)"
        CUDA_MODULE_LOADING=EAGER KL_CUDA_PROFILE=1 "$bin/kimi" bench \
          --random $config --layers 8 --device cuda --prompt-len 8192 --context 0 --decode 1 \
          --repeats 2; } 2>&1 | tee "$OUT/optbench.log"
    fi
    if [[ $parts == *oldnew* ]]; then  # TPOT of an older build (build-cuda/old) against this one
      old=$PWD/build-cuda/old
      ln -sf libkimi_linear.so.0.1.0 "$old/libkimi_linear.so.1"
      for round in 1 2; do
        for dir in "$old" "$bin"; do
          echo "== $dir (round $round)"
          LD_LIBRARY_PATH=$dir:/usr/local/cuda/lib64 "$dir/kimi" bench --random $config \
            --device cuda --prompt-len 8 --context 512 --decode 64 --repeats 2 --bandwidth-gbs 4300
        done
      done 2>&1 | tee "$OUT/oldnew.log"
    fi
    if [[ $parts == *ncu* ]]; then  # Nsight Compute on the grouped experts' GEMMs (4096 tokens)
      ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
      { for format in bf16 fp8; do
          for on in ${KL_WGMMA_MODES:-stagewise specialized}; do
            for tile in 64 128; do
              echo "== ncu: moe_bench --format $format --tile $tile, KL_CUDA_WGMMA=$on"
              # The first two matching launches: the gate/up and down GEMMs of the row's warm-up.
              KL_CUDA_WGMMA=$on timeout 300 "$ncu" --kernel-name regex:grouped_gemm_kernel \
                --launch-count 2 --section SpeedOfLight --section MemoryWorkloadAnalysis \
                --section ComputeWorkloadAnalysis --section WarpStateStats --section Occupancy \
                "$bin/moe_bench" grouped --format $format --tokens 4096 --tile $tile ||
                echo "ncu: exit $?"
            done
          done
        done
        for wgmma in 0 1; do  # the expanded MLA prefill kernels: mla_bench's first launch
          echo "== ncu: mla_bench, KL_CUDA_MLA_WGMMA=$wgmma"
          KL_CUDA_MLA_WGMMA=$wgmma timeout 300 "$ncu" --kernel-name regex:mla_prefill \
            --launch-count 1 --section SpeedOfLight --section MemoryWorkloadAnalysis \
            --section ComputeWorkloadAnalysis --section WarpStateStats "$bin/mla_bench" ||
            echo "ncu: exit $?"
        done; } 2>&1 | tee "$OUT/ncu.log"
    fi
    if [[ $parts == *decodencu* ]]; then  # Nsight Compute on batch-1 decode's kernels
      ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
      { for weights in ${KL_DECODE_NCU_WEIGHTS:-fp8 bf16}; do
          # 4 layers of the 48B shapes; the launches after the first decode steps' (graph
          # nodes, each profiled alone with cold caches: no chaining, no L2 reuse).
          echo "== ncu: decode, --weights $weights"
          timeout 400 "$ncu" --kernel-name regex:"${KL_DECODE_NCU_KERNELS:-gate_up|down_combine|gemv|kda_decode|rms_norm|moe_route}" \
            --launch-skip 60 --launch-count 24 --section SpeedOfLight \
            --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
            --section WarpStateStats --section InstructionStats --section Occupancy \
            --section LaunchStats "$bin/kimi" bench --random $config --layers 4 --device cuda \
            --weights $weights --prompt-len 8 --context 512 --decode 8 --repeats 1 ||
            echo "ncu: exit $?"
        done; } 2>&1 | tee "$OUT/decodencu.log"
    fi
    if [[ $parts == *tpotab* ]]; then  # opt-in switches against the defaults
      # KL_AB_SETS: ";"-separated sets of env words, "default" for none.
      IFS=';' read -ra sets <<< "${KL_AB_SETS:-default;KL_CUDA_DECODE_NARROW=downwide}"
      set_env() { [[ $1 == default ]] && echo "KL_AB=default" || echo "$1"; }
      { for combo in "${sets[@]}"; do
          [[ $combo == default || ${KL_AB_TESTS:-1} == 0 ]] && continue
          echo "== kl_gpu_tests (${KL_AB_FILTER:=GpuOps.*:*GpuModel*}) with $combo"
          env $(set_env "$combo") "$bin/kl_gpu_tests" --gtest_filter="$KL_AB_FILTER" 2>&1 |
            grep -E "^\[  FAILED|Failure|PASSED|tests ran" || true
        done
        for weights in ${KL_AB_WEIGHTS:-fp8 int4}; do
          for combo in "${sets[@]}"; do
            echo "== moe_bench decode --format $weights, $combo"
            env $(set_env "$combo") "$bin/moe_bench" decode --format $weights
          done
        done
        for round in 1 2; do
          for weights in ${KL_AB_WEIGHTS:-fp8 int4}; do
            for combo in "${sets[@]}"; do
              echo "== TPOT, --weights $weights, $combo (round $round)"
              tpot $weights $(set_env "$combo")
            done
          done
        done
      } 2>&1 | tee "$OUT/tpotab.log"
    fi
    if [[ $parts == *sanitize* ]]; then
      cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
      for tool in ${KL_SANITIZE_TOOLS:-memcheck racecheck synccheck}; do
        extra=(); [[ $tool == memcheck ]] && extra=(--leak-check full)
        start=$SECONDS
        rc=0
        timeout "${KL_SANITIZE_SECONDS:-240}" "$cs" --tool "$tool" "${extra[@]}" \
          --error-exitcode 99 --print-limit 50 "$bin/kl_gpu_tests" \
          --gtest_filter="${KL_SANITIZE_FILTER:-*}" >"$OUT/sanitize_$tool.log" 2>&1 || rc=$?
        echo "== compute-sanitizer $tool: rc $rc in $((SECONDS - start)) s" \
             "($(grep -c '^\[       OK' "$OUT/sanitize_$tool.log") tests passed)"
        grep -E "ERROR SUMMARY|LEAK SUMMARY|RACECHECK SUMMARY|FAILED" "$OUT/sanitize_$tool.log" |
          head -5 || true  # a tool cut off by the timeout prints no summary
      done
    fi
    if [[ $parts == *cancel* ]]; then
      for layers in $layers_list; do
        "$bin/cancel_latency" --random $config --layers $layers --device cuda \
          --prompt-len 8192 --trials 20
      done 2>&1 | tee "$OUT/cancel.log"
    fi
    if [[ $parts == *plugin* ]]; then
      { "$bin/make_tiny_model" /tmp/mt --preset tiny --seed 5 >/dev/null
        "$bin/kimi" info /tmp/mt | grep "^device:"
        cpu=$("$bin/kimi" run /tmp/mt --device cpu --prompt-tokens 1,2,3 --max-new 16)
        gpu=$("$bin/kimi" run /tmp/mt --device cuda --prompt-tokens 1,2,3 --max-new 16)
        echo "greedy cpu: $cpu"; echo "greedy gpu: $gpu"
        [[ $cpu == "$gpu" ]] && echo "greedy: same" || echo "greedy: DIFFERENT"
        python3 -c "import json; c=json.load(open('configs/kimi-linear-48b-a3b.json')); \
c['moe_intermediate_size']*=4; json.dump(c, open('/tmp/huge.json','w'))"
        "$bin/kimi" bench --random /tmp/huge.json --device cuda --prompt-len 8 --context 0 \
          --decode 1 --repeats 1 || echo "huge model: exit $?"
        echo "== cuBLASLt hidden (the driver stays)"
        KL_HIDE=libcublasLt packaging/without_cuda.sh "$bin/kimi" info /tmp/mt | grep "^device:"
        KL_HIDE=libcublasLt packaging/without_cuda.sh "$bin/kimi" info /tmp/mt --device cuda ||
          echo "exit $?"
        echo "== the library without its plugin"
        mkdir -p /tmp/noplugin && cp "$bin/libkimi_linear.so.0.1.0" /tmp/noplugin/libkimi_linear.so.1
        LD_LIBRARY_PATH=/tmp/noplugin "$bin/kimi" info /tmp/mt | grep "^device:"
        LD_LIBRARY_PATH=/tmp/noplugin "$bin/kimi" info /tmp/mt --device cuda || echo "exit $?"
        echo "== start-up cost: kimi info on the CPU"
        for d in cpu auto; do /usr/bin/time -f "$d: %e s, max RSS %M KiB" "$bin/kimi" info /tmp/mt \
          --device $d >/dev/null; done
      } 2>&1 | tee "$OUT/plugin.log"
    fi
    if [[ $parts == *demo* ]]; then
      KL_LIBRARY=$bin/libkimi_linear.so.1 python3 -m pytest -q -s -rs \
        tools/train/test_demo_model.py 2>&1 | tee "$OUT/demo.log"
    fi
    ;;
  *)
    echo "usage: $0 build|run" >&2
    exit 2
    ;;
esac
