#!/usr/bin/env bash
# Latency and energy of the Llama-3.2-1B shape on one NVIDIA GPU: random weights of the
# exact architecture (speed does not depend on weight values), all 16 layers, bfloat16,
# at 0 %, 40 % (intermediate 4916) and 40 % rounded to 128 (4864), plus the lone-MLP-block
# alignment check (8192 / 7373 / 7424). About 4-6 minutes on one modern GPU (budget: 8).
#
# Usage: benchmarks/gpu_1b.sh OUTDIR [more pytest options]
#   OUTDIR gets results.json + results.md (the suite's table), benchmark.json
#   (pytest-benchmark, with every number in extra_info), gpu.csv and pytest.log.
#   Pin this GPU's baseline (baselines/perf/<gpu>.json): add --glu-update-baselines
#   (the pinned tests fail on purpose, so a person reviews the diff).
# Environment: PYTHON (default: python), CUDA_VISIBLE_DEVICES (pick the GPU),
#   GLU_DEVICE (default: cuda; "cpu" only to dry-run the selection without a GPU).
set -euo pipefail

out=${1:?usage: benchmarks/gpu_1b.sh OUTDIR [more pytest options]}
shift
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
python=${PYTHON:-python}
device=${GLU_DEVICE:-cuda}

if [[ $device == cuda* ]]; then
    nvidia-smi --query-gpu=index,name,driver_version,memory.used,utilization.gpu \
        --format=csv >"$out/gpu.csv" ||
        { echo "gpu_1b.sh: nvidia-smi failed: no NVIDIA GPU?" >&2; exit 2; }
fi

# Options given after OUTDIR come last, so they override these (argparse: last one wins).
status=0
"$python" -m pytest tests/suite/test_latency.py tests/suite/test_energy.py \
    -p no:xdist -p no:cacheprovider --benchmark-only -rsf \
    --glu-models llama-3.2-1b --glu-levels 0,40 --glu-round-to 1,128 \
    --glu-device "$device" --glu-perf-dtype bfloat16 --glu-perf-layers 16 \
    --glu-prompt-lens 128,512,2048 --glu-new-tokens 64 --glu-perf-rounds 10 \
    --glu-report "$out" --benchmark-json "$out/benchmark.json" \
    "$@" 2>&1 | tee "$out/pytest.log" || status=$?
echo "gpu_1b.sh: results in $out (results.md, results.json, benchmark.json, pytest.log)"
exit "$status"
