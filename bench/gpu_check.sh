#!/usr/bin/env bash
# The GPU check of lstm_fused's CUDA kernels, run from the repository root on a
# machine with an NVIDIA GPU (written for an H100/H200, sm_90):
#   1. build + editable install (TORCH_CUDA_ARCH_LIST=9.0, MAX_JOBS=16) and the
#      kernels' register/spill report;
#   2. a smoke run: persistent plans for the benchmark shapes, every path and
#      dtype against a float64 reference on small odd shapes;
#   3. pytest tests/test_cuda.py;
#   4. timings: bench/cuda_timing.py (CUDA events, lstm_fused vs torch.nn.LSTM);
#   5. compute-sanitizer memcheck and racecheck on a tiny forward+backward of
#      each path; then python -m lstm_fused.bench on a few shapes when that tool
#      is present, and compute-sanitizer initcheck, if time is left.
# (The timings run before the sanitizers because they are short and the
# sanitizers' start-up under torch is slow: a tight budget loses the latter.)
# Logs go to $OUT (at most 8 files); a summary table is printed last. Every
# stage runs under `timeout`, within an overall budget of GPU_CHECK_BUDGET_S
# seconds (default 480): a stage that would not fit is skipped, not started.
# GPU_CHECK_STAGES (space-separated, default all) picks the stages after the
# build, for a short second run: build smoke pytest timing memcheck racecheck
# bench_tool initcheck.
#   OUT=/some/dir bash bench/gpu_check.sh
#   OUT=/some/dir GPU_CHECK_STAGES="smoke timing" GPU_CHECK_BUDGET_S=300 bash bench/gpu_check.sh
set -u
cd "$(dirname "$0")/.."

OUT="${OUT:-$(mktemp -d /tmp/gpu_check.XXXXXX)}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
BUDGET="${GPU_CHECK_BUDGET_S:-480}"
START=$(date +%s)
SUMMARY="$OUT/summary.txt"
STAGES=()
WORK="$(mktemp -d /tmp/gpu_check_work.XXXXXX)"
export PYTHONUNBUFFERED=1

remaining() { echo $((BUDGET - ($(date +%s) - START))); }
SELECTED=" build ${GPU_CHECK_STAGES:-smoke pytest timing memcheck racecheck bench_tool initcheck} "

# stage NAME MAX_SECONDS LOG CMD...: runs CMD with its output appended to LOG.
stage() {
  local name=$1 max=$2 log=$3
  shift 3
  if [[ "$SELECTED" != *" $name "* ]]; then
    STAGES+=("$(printf '%-12s %-28s %5s' "$name" "skipped: not selected" "-")")
    return 98
  fi
  local left
  left=$(remaining)
  local limit=$((max < left ? max : left))
  if ((limit < 15)); then
    STAGES+=("$(printf '%-12s %-28s %5s' "$name" "skipped: budget spent" "-")")
    return 99
  fi
  local t0
  t0=$(date +%s)
  echo "=== $name: $* (limit ${limit}s)" >>"$log"
  timeout --kill-after=15 "$limit" "$@" >>"$log" 2>&1
  local rc=$?
  local dt=$(($(date +%s) - t0))
  local status="ok"
  if ((rc == 124 || rc == 137)); then
    status="TIMEOUT after ${limit}s"
  elif ((rc != 0)); then
    status="FAILED (exit $rc)"
  fi
  echo "=== $name: $status in ${dt}s" >>"$log"
  STAGES+=("$(printf '%-12s %-28s %5ss' "$name" "$status" "$dt")")
  return $rc
}

# ------------------------------------------------------------ environment
{
  echo "gpu_check of lstm_fused, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1 | head -4
  nvcc --version 2>&1 | tail -1
  "$PY" -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name() if torch.cuda.is_available() else None)' 2>&1
} >"$OUT/env_and_summary.head"

# ------------------------------------------------------------------ build
export TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
BUILD_OK=0
if stage build 360 "$OUT/build.log" "$PY" -m pip install --no-build-isolation --no-deps -v -e .; then
  BUILD_OK=1
  so=$(ls lstm_fused/_C*.so 2>/dev/null | head -1)
  if [[ -n "$so" ]] && command -v cuobjdump >/dev/null; then
    {
      echo "=== kernel resource usage (registers, stack, shared memory)"
      cuobjdump --dump-resource-usage "$so" 2>&1 | grep -A1 -E "Function .*(persistent|cell_fused|pointwise)" |
        grep -v '^--' | sed -E 's/_ZN10lstm_fused4cuda//' | cut -c1-220
    } >>"$OUT/build.log"
  fi
fi

# ------------------------------------------------- smoke (also the sanitizer payload)
cat >"$WORK/smoke.py" <<'PYEOF'
"""Small forward+backward of every path against a float64 CPU reference.
--tiny: one small shape, fp32 and bf16 only (for compute-sanitizer)."""
import math
import sys

import torch

import lstm_fused
from lstm_fused import _reference

tiny = "--tiny" in sys.argv
ops = torch.ops.lstm_fused
print("device", torch.cuda.get_device_name(), "| torch", torch.__version__,
      "| cuda_compiled", lstm_fused.cuda_compiled())
if not tiny:
    print("persistent plans [ok, HS, blocks, smem bytes, mode] (mode 0 bf16, 1 fp16, 2 tf32, 3 3xtf32):")
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for B, H in ((1, 256), (8, 512), (64, 512), (8, 1024), (64, 1024), (256, 1024), (8, 1536), (8, 2048)):
            f = ops._cuda_persistent_plan(torch.cuda.current_device(), dtype, False, B, H)
            b = ops._cuda_persistent_plan(torch.cuda.current_device(), dtype, True, B, H)
            print(f"  {str(dtype):15} B={B:4} H={H:5}  fwd {f}  bwd {b}")

TOL = {torch.float32: 1e-4, torch.bfloat16: 5e-2, torch.float16: 1e-2}


def rel(a, b):
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1.0)).item() if b.numel() else 0.0


def uniform(*s, scale=1.0):
    return (torch.rand(*s, dtype=torch.float64) * 2 - 1) * scale


torch.manual_seed(0)
fails = 0
shapes = [(3, 3, 5, 33)] if tiny else [(5, 3, 7, 33), (4, 17, 9, 100), (3, 2, 4, 257), (2, 1, 3, 1)]
dtypes = (torch.float32, torch.bfloat16) if tiny else (torch.float32, torch.bfloat16, torch.float16)
for n, (T, B, I, H) in enumerate(shapes):
    reverse = n % 2 == 1
    k = 1 / math.sqrt(H)
    inputs = [torch.randn(T, B, I, dtype=torch.float64), uniform(B, H), uniform(B, H, scale=2.0),
              uniform(4 * H, I, scale=k), uniform(4 * H, H, scale=k), uniform(4 * H, scale=k),
              uniform(4 * H, scale=k)]
    cot = [torch.randn(T, B, H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64),
           torch.randn(B, H, dtype=torch.float64)]
    leaves = [t.clone().requires_grad_() for t in inputs]
    ref = _reference.layer(*leaves, reverse=reverse)
    ref = list(ref) + list(torch.autograd.grad(ref, leaves, cot))
    for dtype in dtypes:
        for path in ("persistent", "step"):
            before = list(ops._cuda_kernel_counts())
            with lstm_fused.use_path(path):
                ls = [t.to("cuda", dtype).requires_grad_() for t in inputs]
                out, h, c, _, _ = ops.lstm_layer(*ls, None, None, reverse, True)
                got = [out, h, c] + list(torch.autograd.grad((out, h, c), ls,
                                                             [t.to("cuda", dtype) for t in cot]))
            torch.cuda.synchronize()
            after = list(ops._cuda_kernel_counts())
            err = max(rel(a, b) for a, b in zip(got, ref))
            ok = err <= TOL[dtype]
            fails += not ok
            print(f"{'ok  ' if ok else 'FAIL'} layer T={T} B={B} H={H} rev={int(reverse)} {str(dtype):14} "
                  f"{path:10} max rel err {err:.2e} (persistent launches fwd/bwd "
                  f"{after[0] - before[0]}/{after[1] - before[1]})")
    # the cell step, fused and through the driver
    xs, hs, cs = torch.randn(B, I, dtype=torch.float64), uniform(B, H), uniform(B, H)
    leaves = [t.clone().requires_grad_() for t in (xs, hs, cs)] + [t.clone().requires_grad_() for t in inputs[3:]]
    hy, cy = _reference.cell(*leaves)
    ref = [hy, cy] + list(torch.autograd.grad((hy, cy), leaves, (cot[1], cot[2])))
    for dtype in dtypes:
        for path in ("auto", "step"):
            with lstm_fused.use_path(path):
                ls = [t.detach().to("cuda", dtype).requires_grad_() for t in leaves]
                hy, cy, _ = ops.lstm_cell(*ls, True)
                got = [hy, cy] + list(torch.autograd.grad((hy, cy), ls, (cot[1].to("cuda", dtype),
                                                                         cot[2].to("cuda", dtype))))
            err = max(rel(a, b) for a, b in zip(got, ref))
            ok = err <= TOL[dtype]
            fails += not ok
            print(f"{'ok  ' if ok else 'FAIL'} cell  B={B} I={I} H={H} {str(dtype):14} {path:10} "
                  f"max rel err {err:.2e}")
print("kernel launch counts [persistent fwd, persistent bwd, fused cell]:", list(ops._cuda_kernel_counts()))
print("SMOKE", "FAILED" if fails else "PASSED", f"({fails} failures)")
sys.exit(1 if fails else 0)
PYEOF

PYTEST_SUMMARY="not run"
if ((BUILD_OK)); then
  stage smoke 90 "$OUT/smoke.log" "$PY" "$WORK/smoke.py"

  timeout_opt=()
  if "$PY" -c "import pytest_timeout" 2>/dev/null; then timeout_opt=(--timeout=120); fi
  stage pytest 210 "$OUT/pytest.log" env LSTM_FUSED_REQUIRE_CUDA=1 "$PY" -m pytest -q -p no:cacheprovider -ra -o addopts="" \
    --durations=12 ${timeout_opt[@]+"${timeout_opt[@]}"} tests/test_cuda.py
  PYTEST_SUMMARY=$(grep -E "(passed|failed|error|skipped)" "$OUT/pytest.log" 2>/dev/null | grep -E " in [0-9.]+s" | tail -1)
  PYTEST_SUMMARY=${PYTEST_SUMMARY:-"no pytest summary line (see pytest.log)"}

  stage timing 120 "$OUT/bench.log" "$PY" bench/cuda_timing.py --csv "$OUT/bench.csv"

  SANITIZER=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
  if [[ -n "$SANITIZER" ]]; then
    # Without the caching allocator every tensor is its own allocation, so an
    # out-of-bounds access past a tensor is caught rather than landing in a pool.
    export PYTORCH_NO_CUDA_MEMORY_CACHING=1
    stage memcheck 100 "$OUT/sanitizer.log" "$SANITIZER" --tool memcheck --error-exitcode 3 \
      --print-limit 30 "$PY" "$WORK/smoke.py" --tiny
    stage racecheck 100 "$OUT/sanitizer.log" "$SANITIZER" --tool racecheck --error-exitcode 3 \
      --print-limit 30 "$PY" "$WORK/smoke.py" --tiny
    unset PYTORCH_NO_CUDA_MEMORY_CACHING
  else
    echo "compute-sanitizer not found" >>"$OUT/sanitizer.log"
    STAGES+=("$(printf '%-12s %-28s %5s' sanitizers "not found" "-")")
  fi

  if "$PY" -c "import lstm_fused.bench.cli" 2>/dev/null; then
    stage bench_tool 100 "$OUT/bench.log" "$PY" -m lstm_fused.bench --device cuda \
      --shapes 100,8,512,512 100,64,512,512 100,64,1024,1024 100,256,1024,1024 \
      --dtype fp32,bf16,fp16 --mode inference,fwdbwd --baselines nn --budget 40 --no-progress \
      --csv "$OUT/bench_tool.csv"
  fi

  if [[ -n "${SANITIZER:-}" ]]; then
    # initcheck: no NaN pre-fill, so a read of memory no kernel wrote is visible.
    export PYTORCH_NO_CUDA_MEMORY_CACHING=1 LSTM_FUSED_POISON=0
    stage initcheck 100 "$OUT/sanitizer.log" "$SANITIZER" --tool initcheck \
      --error-exitcode 3 --print-limit 30 "$PY" "$WORK/smoke.py" --tiny
    unset PYTORCH_NO_CUDA_MEMORY_CACHING LSTM_FUSED_POISON
  fi
fi

# ---------------------------------------------------------------- summary
{
  cat "$OUT/env_and_summary.head"
  echo
  echo "stage        status                       time"
  for s in "${STAGES[@]}"; do echo "$s"; done
  echo
  if ((BUILD_OK == 0)); then
    echo "build failed; last lines of build.log:"
    grep -E "error|Error" "$OUT/build.log" | head -20
    tail -15 "$OUT/build.log"
  else
    echo "pytest: $PYTEST_SUMMARY"
    grep -E "^FAILED|^ERROR" "$OUT/pytest.log" 2>/dev/null | head -15
    grep -E "^SMOKE|^FAIL" "$OUT/smoke.log" 2>/dev/null | head -10
    if [[ -f "$OUT/sanitizer.log" ]]; then
      echo "sanitizers:"
      grep -E "^=== (memcheck|racecheck|initcheck): (ok|FAILED|TIMEOUT)|ERROR SUMMARY|RACECHECK SUMMARY" \
        "$OUT/sanitizer.log" | head -12
    fi
    echo
    echo "timings (bench/cuda_timing.py):"
    awk '/^device: /{on=1} /^=== timing:/{on=0} on' "$OUT/bench.log" 2>/dev/null | head -40
  fi
  echo
  echo "logs in $OUT: $(ls "$OUT" | grep -v env_and_summary.head | tr '\n' ' ')"
  echo "total $(($(date +%s) - START))s of a ${BUDGET}s budget"
} >"$SUMMARY"
rm -f "$OUT/env_and_summary.head"
rm -rf "$WORK"
cat "$SUMMARY"
