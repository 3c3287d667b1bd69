#!/usr/bin/env bash
# One command that checks neurodsl on a GPU (about 8 minutes at most on one H100/H200):
#
#   scripts/gpu_check.sh [--dry-run] OUTDIR [WHEELDIR]
#
# Runs from the repository tree (PYTHONPATH), installs nothing into the Python environment. With WHEELDIR,
# the optional peers (SpikingJelly 2.0.0 + loguru wheels) are unpacked into OUTDIR/site with pip --target.
# Steps, each under `timeout` with its log in OUTDIR:
#   wheels          (with WHEELDIR) pip install --no-index --no-deps --target OUTDIR/site WHEELDIR/*.whl
#   env             env.json: GPU, driver, python / torch / triton / SpikingJelly versions, commit
#   tests_gpu       real-Triton tests (tests/test_gpu.py, TRITON_INTERPRET=0), junit tests_gpu.xml
#   tests_cuda      tests/test_compile.py and tests/test_parallel.py on this torch: torch-backend and CUDA cases
#   campaign        random-spec campaign on the GPU in parallel processes, campaign-<i>.json (beside the tests)
#   bench           the GPU benchmark suite, bench/bench-gpu-cuda.{json,csv}
#   summary         one screen: printed and written to summary.txt
# Every step runs even if an earlier one failed; the exit code is non-zero if any step failed.
# NEURODSL_GPU_CHECK_DEVICE=cpu runs the same steps on the CPU (Triton interpreter, tiny benchmark sizes).
# Limits (seconds) and sizes can be changed with NEURODSL_GPU_CHECK_<NAME> variables, see below.
set -u -o pipefail

DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: scripts/gpu_check.sh [--dry-run] OUTDIR [WHEELDIR]" >&2
    exit 2
fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="$1"
WHEELS="${2:-}"
PY="${PYTHON:-python3}"
DEVICE="${NEURODSL_GPU_CHECK_DEVICE:-cuda}"
EXAMPLES="${NEURODSL_GPU_CHECK_EXAMPLES:-60}"
BENCH_BUDGET="${NEURODSL_GPU_CHECK_BENCH_BUDGET_S:-150}"
T_ENV="${NEURODSL_GPU_CHECK_ENV_S:-20}"
T_WHEELS="${NEURODSL_GPU_CHECK_WHEELS_S:-45}"
T_TESTS="${NEURODSL_GPU_CHECK_TESTS_S:-150}"
T_CUDA="${NEURODSL_GPU_CHECK_CUDA_TESTS_S:-60}"
T_CAMPAIGN="${NEURODSL_GPU_CHECK_CAMPAIGN_S:-210}"
T_BENCH="${NEURODSL_GPU_CHECK_BENCH_S:-185}"
T_SUMMARY="${NEURODSL_GPU_CHECK_SUMMARY_S:-15}"

if [ -n "$WHEELS" ] && [ "$DRY" = 0 ] && ! ls "$WHEELS"/*.whl > /dev/null 2>&1; then
    echo "gpu_check: no *.whl in $WHEELS" >&2
    exit 2
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
STEPS="$OUT/steps.tsv"
[ "$DRY" = 1 ] || : > "$STEPS"

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "$WHEELS" ]; then
    export PYTHONPATH="$OUT/site:$PYTHONPATH"
fi
if [ "$DEVICE" = cuda ]; then
    export TRITON_INTERPRET=0
    BENCH_SIZE=()
else
    export TRITON_INTERPRET=1
    BENCH_SIZE=(--tiny)
fi
export SJ_LIF_CUDA_IMPLEMENTATION="${SJ_LIF_CUDA_IMPLEMENTATION:-triton}"
export SJ_PLIF_CUDA_IMPLEMENTATION="${SJ_PLIF_CUDA_IMPLEMENTATION:-triton}"
export PYTHONDONTWRITEBYTECODE=1
[ "$DRY" = 1 ] && echo "environment: PYTHONPATH=$PYTHONPATH TRITON_INTERPRET=$TRITON_INTERPRET device=$DEVICE"
CACHE="$(mktemp -d "${TMPDIR:-/tmp}/neurodsl-gpu-check.XXXXXX")"  # fresh kernel caches, outside OUTDIR
trap 'rm -rf "$CACHE"' EXIT

# step NAME LIMIT_S LOG JUNIT -- command...  (JUNIT may be "-"); appends NAME rc seconds LOG JUNIT to steps.tsv
step() {
    local name="$1" limit="$2" log="$3" junit="$4"
    shift 5
    if [ "$DRY" = 1 ]; then
        echo "[$name] timeout $limit s, log $log: $*"
        return 0
    fi
    echo "[$name] started (limit $limit s, log $log)"
    local start=$SECONDS rc
    NEURODSL_CACHE_DIR="$CACHE/$name" timeout --kill-after=10 "$limit" "$@" > "$OUT/$log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" "$log" "${junit#-}" >> "$STEPS"
    echo "[$name] exit $rc after $((SECONDS - start)) s"
    return 0
}

PYTEST=("$PY" -m pytest -q -p no:cacheprovider)
if [ -n "$WHEELS" ]; then
    step wheels "$T_WHEELS" wheels.log - -- "$PY" -m pip install --no-index --no-deps --target "$OUT/site" \
        "$WHEELS"/*.whl
fi
step env "$T_ENV" env.log - -- "$PY" -m benchmarks env --out "$OUT/env.json"
tests() {
    step tests_gpu "$T_TESTS" tests_gpu.log tests_gpu.xml -- "${PYTEST[@]}" tests/test_gpu.py \
        -k "not in_subprocess" --junitxml "$OUT/tests_gpu.xml"
    # torch.compile and the parallel forms on this machine's own torch: the torch-backend cases (which run on the
    # CPU without the interpreter; compiled gradients differed between torch versions before) and any CUDA case
    step tests_cuda "$T_CUDA" tests_cuda.log tests_cuda.xml -- "${PYTEST[@]}" tests/test_compile.py \
        tests/test_parallel.py -k "not triton or cuda or gpu" --junitxml "$OUT/tests_cuda.xml"
}
# The tests and the campaign check correctness (timings are not taken): they share the GPU.
tests &
# Each drawn spec compiles new kernels (seconds of Triton JIT on one CPU core): the draws are split over
# CAMPAIGN_PROCS processes with distinct seeds, one campaign-<i>.json each (the summary adds them up).
export PY OUT DEVICE CAMPAIGN_PROCS="${NEURODSL_GPU_CHECK_CAMPAIGN_PROCS:-4}"
export PER_PROC=$(( (EXAMPLES + CAMPAIGN_PROCS - 1) / CAMPAIGN_PROCS ))
[ "$DRY" = 1 ] && echo "campaign: $CAMPAIGN_PROCS processes x $PER_PROC examples, backend triton, device $DEVICE"
step campaign "$T_CAMPAIGN" campaign.log - -- bash -c 'rc=0; pids=()
    for i in $(seq 0 $((CAMPAIGN_PROCS - 1))); do
        "$PY" -m neurodsl.testing --examples "$PER_PROC" --backend triton --device "$DEVICE" --seed $((1000 + i)) \
            --out "$OUT/campaign-$i.json" & pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
    exit $rc'
wait
# The benchmark runs alone on the GPU.
step bench "$T_BENCH" bench.log - -- "$PY" -m benchmarks run --suite gpu --device "$DEVICE" \
    ${BENCH_SIZE[@]+"${BENCH_SIZE[@]}"} --budget-s "$BENCH_BUDGET" --out "$OUT/bench" --no-progress
[ "$DRY" = 1 ] && exit 0

# summary: printed and written to summary.txt (it reads only files: no torch needed)
timeout "$T_SUMMARY" "$PY" -m benchmarks summary "$OUT" --write "$OUT/summary.txt" || {
    echo "gpu_check: the summary failed (see above); step results are in $STEPS" >&2
    exit 1
}
# exit status: any step with a non-zero exit, except pytest's 5 (no test selected) for the CUDA-case step
failed=$(awk -F'\t' '$2 != 0 && !($1 == "tests_cuda" && $2 == 5) {print $1}' "$STEPS" | tr '\n' ' ')
if [ -n "$failed" ]; then
    echo "gpu_check: failed steps: $failed"
    exit 1
fi
echo "gpu_check: all steps passed"
