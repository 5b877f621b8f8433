#!/usr/bin/env bash
# Issue 15's GPU measurement in one call of about 9 minutes: bench/README.md says how to prepare and run it.
#
#   bash bench/gpu.sh            # on the device machine (one GPU): SD1.5 shapes at 512x512
#   bash bench/gpu.sh --smoke    # anywhere, on the CPU with the tiny test model: checks the script end to end
#
# Installs diffusers from the wheels in .whl/ when there are any (the device machine has torch, transformers and
# safetensors but no diffusers, and no network), then runs, each under its own time limit so one stuck run
# leaves the others' results:
#   plain    the trainer against the WebUI-style baseline, batch 1 and 16, and a hypernetwork row
#   memory   peak memory per batch size (for the largest batch that fits a 6, 8 and 12 GB card)
#   sync     batch 1 with torch's sync debug mode: every wait for the GPU in the trainer rows, counted
#   sdxl     SDXL base shapes at 1024x1024, batch 1 and 4 (issue 16's goal: batch 1 within a 12 GB card)
#   compile  the compile_unet option, batch 1 and 16 (last: compiling takes minutes)
# Results: $OUT/{plain,memory,sync,sdxl,compile}.json and .log, env.txt, summary.md (the tables and card sizes).
set -uo pipefail
SMOKE=0
if [[ "${1:-}" == "--smoke" ]]; then SMOKE=1; fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$(mktemp -d /tmp/es-gpu-out.XXXXXX)}
mkdir -p "$OUT"
cd "$ROOT" || exit 1
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

SITE=""
if compgen -G ".whl/*.whl" >/dev/null; then
    SITE=$(mktemp -d /tmp/es-site.XXXXXX)
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .whl/*.whl || exit 1
fi
export PYTHONPATH="${SITE:+$SITE:}$ROOT"

{
    date -u
    "$PY" -c 'import sys, torch, transformers, diffusers; print(sys.version.split()[0], "torch", torch.__version__,
"transformers", transformers.__version__, "diffusers", diffusers.__version__, "from", diffusers.__file__)' || exit 1
    if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; fi
} >"$OUT/env.txt" 2>&1 || { cat "$OUT/env.txt"; exit 1; }
cat "$OUT/env.txt"

if [[ $SMOKE == 1 ]]; then
    SHAPE=(--smoke --steps 2)
    MEMORY=(--smoke --steps 1 --batch-size 1,2)
    SYNC=(--smoke --steps 3 --batch-size 1)
    SDXL=(--smoke --shape sdxl --steps 1 --batch-size 1)
    COMPILE=(--smoke --steps 2 --batch-size 2 --compile --compile-backend aot_eager)
else
    SHAPE=(--shape sd15 --steps 40 --batch-size 1,16 --hypernetwork)
    MEMORY=(--shape sd15 --steps 2 --warmup 1 --batch-size 1,2,4,8,12,16,24,32)
    SYNC=(--shape sd15 --steps 32 --warmup 1 --batch-size 1 --sync-debug)
    SDXL=(--shape sdxl --steps 6 --warmup 1 --batch-size 1,4)
    COMPILE=(--shape sd15 --steps 40 --warmup 3 --batch-size 1,16 --compile)
fi

bench() {  # name, seconds, bench_train.py arguments...
    local name=$1 limit=$2
    shift 2
    local started=$SECONDS
    # -W always: the sync debug mode's warnings would otherwise show once per place, not once per wait.
    timeout "$limit" "$PY" -W always bench/bench_train.py "$@" --json >"$OUT/$name.json" 2>"$OUT/$name.log"
    local rc=$?
    echo "$name: exit $rc after $((SECONDS - started)) s (limit $limit s)"
    if [[ $rc != 0 ]]; then
        rm -f "$OUT/$name.json"
        tail -n 5 "$OUT/$name.log"
    fi
}

bench plain 120 "${SHAPE[@]}"
bench memory 80 "${MEMORY[@]}"
bench sync 50 "${SYNC[@]}"
echo "sync: $(grep -c 'synchroniz' "$OUT/sync.log") synchronizing-operation warnings in the trainer row" \
    | tee -a "$OUT/env.txt"
bench sdxl 110 "${SDXL[@]}"
bench compile 180 "${COMPILE[@]}"

"$PY" bench/gpu_summary.py "$OUT" >"$OUT/summary.md"
cat "$OUT/summary.md"
echo "results in $OUT"
