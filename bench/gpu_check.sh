#!/usr/bin/env bash
# The GPU check of lstm_fused's CUDA kernels, run from the repository root on a
# machine with an NVIDIA GPU (written for an H100/H200, sm_90):
#   1. build + editable install (TORCH_CUDA_ARCH_LIST=9.0, MAX_JOBS=16) and the
#      kernels' register/spill report (cuobjdump; the stage fails without it);
#   2. a smoke run: the persistent plans must exist with the expected block
#      counts at (B=8, H=512) and (B=64, H=512), bf16 and fp32, forward and
#      backward, and each layer call must launch the persistent forward and
#      backward once (a failed cudaFuncSetAttribute or occupancy query would
#      otherwise send every call down the per-step path, silently); then every
#      path and dtype against a float64 reference on small odd shapes;
#   3. pytest tests/test_cuda.py;
#   4. timings: bench/cuda_timing.py (CUDA events, lstm_fused vs torch.nn.LSTM),
#      then the cell variants against the standard cell (lstm_fused.bench.variants);
#   5. compute-sanitizer memcheck, racecheck and synccheck on a tiny
#      forward+backward of each path, each run checked for persistent launches
#      (instrumentation can push a kernel past its resources, and the fallback to
#      the per-step path would hide the kernel from the tool); then python -m
#      lstm_fused.bench on a few shapes when that tool is present, and
#      initcheck, if time is left.
# racecheck sees shared memory only: the cross-block handoff of h / dgates
# through the global staging buffer (ordered by grid.sync) is covered by the
# numerical tests (smoke, pytest), not by a sanitizer.
# (The timings run before the sanitizers because they are short and the
# sanitizers' start-up under torch is slow: a tight budget loses the latter.)
#
# Every stage runs under `timeout`, within an overall budget of
# GPU_CHECK_BUDGET_S seconds (default 540): a stage that would not fit is
# skipped, not started. If the smoke run times out (a hung persistent kernel),
# the later stages run with LSTM_FUSED_PATH=step, and the summary says so.
# $OUT holds at most 7 files at every moment (summary.txt, build.log,
# smoke.log, pytest.log, bench.log, bench.csv, sanitizer.log); summary.txt is
# rewritten after every stage, so a killed run still leaves one. The exit
# status is 0 only when no stage failed or timed out.
# GPU_CHECK_STAGES (space-separated, default all) picks the stages after the
# build, for a short second run: build smoke pytest timing memcheck racecheck
# synccheck bench_tool initcheck.
#   OUT=/some/dir bash bench/gpu_check.sh
#   OUT=/some/dir GPU_CHECK_STAGES="smoke timing" GPU_CHECK_BUDGET_S=300 bash bench/gpu_check.sh
set -u
cd "$(dirname "$0")/.."

OUT="${OUT:-$(mktemp -d /tmp/gpu_check.XXXXXX)}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
BUDGET="${GPU_CHECK_BUDGET_S:-540}"
START=$(date +%s)
SUMMARY="$OUT/summary.txt"
STAGES=()
FAILED=0
NOTES=()
WORK="$(mktemp -d /tmp/gpu_check_work.XXXXXX)"
export PYTHONUNBUFFERED=1

remaining() { echo $((BUDGET - ($(date +%s) - START))); }
SELECTED=" build ${GPU_CHECK_STAGES:-smoke pytest timing memcheck racecheck synccheck bench_tool initcheck} "

# The CUDA tools: $CUDA_HOME/bin, then /usr/local/cuda/bin, then PATH.
find_tool() {
  local d
  for d in ${CUDA_HOME:+"$CUDA_HOME/bin"} /usr/local/cuda/bin; do
    if [[ -x "$d/$1" ]]; then
      echo "$d/$1"
      return 0
    fi
  done
  command -v "$1" 2>/dev/null
}
NVCC=$(find_tool nvcc || true)
CUOBJDUMP=$(find_tool cuobjdump || true)
SANITIZER=$(find_tool compute-sanitizer || true)

# summary.txt, from what is known so far (called after every stage and on exit).
write_summary() {
  {
    cat "$WORK/env.txt" 2>/dev/null
    echo
    echo "stage        status                       time"
    local s
    for s in ${STAGES[@]+"${STAGES[@]}"}; do echo "$s"; done
    echo
    for s in ${NOTES[@]+"${NOTES[@]}"}; do echo "NOTE: $s"; done
    if [[ -f "$OUT/build.log" ]] && grep -q "^=== build: FAILED" "$OUT/build.log"; then
      echo "build failed; last lines of build.log:"
      grep -E "error|Error" "$OUT/build.log" | head -20
      tail -15 "$OUT/build.log"
    fi
    if [[ -f "$OUT/build.log" ]]; then
      grep -E "^(RESOURCES|=== resources)" "$OUT/build.log" | head -4
    fi
    if [[ -f "$OUT/smoke.log" ]]; then
      echo "smoke:"
      grep -E "^(SMOKE|FAIL|PLAN|LAUNCH)" "$OUT/smoke.log" | head -24
    fi
    if [[ -f "$OUT/pytest.log" ]]; then
      local line
      line=$(grep -E "(passed|failed|error|skipped)" "$OUT/pytest.log" | grep -E " in [0-9.]+s" | tail -1)
      echo "pytest: ${line:-no pytest summary line (see pytest.log)}"
      grep -E "^FAILED|^ERROR" "$OUT/pytest.log" | head -15
    fi
    if [[ -f "$OUT/sanitizer.log" ]]; then
      echo "sanitizers (racecheck: shared memory only; the staging buffer handoff is covered by the numerical tests):"
      grep -E "^=== (memcheck|racecheck|synccheck|initcheck): (ok|FAILED|TIMEOUT)|ERROR SUMMARY|RACECHECK SUMMARY|^LAUNCH|^SMOKE|^=== (memcheck|racecheck|synccheck|initcheck): no " \
        "$OUT/sanitizer.log" | head -30
    fi
    if [[ -f "$OUT/bench.log" ]]; then
      echo
      echo "timings (bench/cuda_timing.py):"
      awk '/^device: /{on=1} /^=== timing:/{on=0} on' "$OUT/bench.log" | head -40
    fi
    echo
    echo "logs in $OUT: $(ls "$OUT" | tr '\n' ' ')"
    echo "total $(($(date +%s) - START))s of a ${BUDGET}s budget; result: $([[ $FAILED == 0 ]] && echo PASS || echo FAIL)"
  } >"$WORK/summary.tmp" 2>/dev/null
  cat "$WORK/summary.tmp" >"$SUMMARY"
}

CHILD=""
on_signal() {
  [[ -n "$CHILD" ]] && kill -TERM "$CHILD" 2>/dev/null
  STAGES+=("$(printf '%-12s %-28s %5s' "(script)" "KILLED by a signal" "-")")
  FAILED=1
  write_summary
  rm -rf "$WORK"
  exit 143
}
trap on_signal TERM INT HUP

# stage NAME MAX_SECONDS LOG CMD...: runs CMD with its output appended to LOG.
# Returns CMD's status, 124 on a timeout, 98/99 when not run.
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
    write_summary
    return 99
  fi
  local t0
  t0=$(date +%s)
  echo "=== $name: $* (limit ${limit}s)" >>"$log"
  # In the background, so that a signal reaches the trap at once.
  timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1 &
  CHILD=$!
  wait "$CHILD"
  local rc=$?
  CHILD=""
  local dt=$(($(date +%s) - t0))
  local status="ok"
  if ((rc == 124 || rc == 137)); then
    status="TIMEOUT after ${limit}s"
    rc=124
  elif ((rc != 0)); then
    status="FAILED (exit $rc)"
  fi
  ((rc != 0)) && FAILED=1
  echo "=== $name: $status in ${dt}s" >>"$log"
  STAGES+=("$(printf '%-12s %-28s %5ss' "$name" "$status" "$dt")")
  write_summary
  return $rc
}

# ------------------------------------------------------------ environment
{
  echo "gpu_check of lstm_fused, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1 | head -4
  echo "nvcc: ${NVCC:-NOT FOUND} $( [[ -n "$NVCC" ]] && timeout 20 "$NVCC" --version 2>&1 | tail -1)"
  echo "cuobjdump: ${CUOBJDUMP:-NOT FOUND}; compute-sanitizer: ${SANITIZER:-NOT FOUND}"
  timeout 60 "$PY" -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name() if torch.cuda.is_available() else None)' 2>&1
} >"$WORK/env.txt"
write_summary

# ------------------------------------------------------------------ build
export TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
if [[ -n "$NVCC" ]]; then
  export CUDA_HOME="${CUDA_HOME:-$(dirname "$(dirname "$NVCC")")}"
  export PATH="$(dirname "$NVCC"):$PATH"
fi
BUILD_OK=0
if stage build 330 "$OUT/build.log" "$PY" -m pip install --no-build-isolation --no-deps -v -e .; then
  BUILD_OK=1
fi

# The kernels' resources: registers, stack, spills. Fails loudly without the
# tool or the library, or when a persistent kernel spills or uses stack.
resources() {
  local so
  so=$(ls lstm_fused/_C*.so 2>/dev/null | head -1)
  if [[ -z "$so" ]]; then
    echo "RESOURCES FAILED: no lstm_fused/_C*.so"
    return 1
  fi
  if [[ -z "$CUOBJDUMP" ]]; then
    echo "RESOURCES FAILED: cuobjdump not found in \$CUDA_HOME/bin, /usr/local/cuda/bin or PATH"
    return 1
  fi
  timeout 60 "$CUOBJDUMP" --dump-resource-usage "$so" >"$WORK/res.txt" 2>&1 || {
    cat "$WORK/res.txt"
    echo "RESOURCES FAILED: cuobjdump exited with an error"
    return 1
  }
  echo "=== kernel resource usage (registers, stack, shared memory)"
  grep -A1 -E "Function .*(persistent|cell_fused|pointwise)" "$WORK/res.txt" | grep -v '^--' |
    sed -E 's/_ZN10lstm_fused4cuda//' | cut -c1-220
  local n bad
  n=$(grep -A1 -E "Function .*persistent_(forward|backward)_kernel" "$WORK/res.txt" | grep -c "REG:")
  bad=$(grep -A1 -E "Function .*persistent_(forward|backward)_kernel" "$WORK/res.txt" | grep "REG:" |
    grep -vcE "STACK:0 .*LOCAL:0")
  if ((n < 96)); then
    echo "RESOURCES FAILED: $n persistent kernels in the report, expected 96 (4 modes x 2 n-tile bounds x 6 cells x 2 directions)"
    return 1
  fi
  if ((bad != 0)); then
    echo "RESOURCES FAILED: $bad persistent kernels use stack or local memory (spills)"
    return 1
  fi
  echo "RESOURCES ok: $n persistent kernels, no stack, no local memory"
}
# Part of the build stage (seconds, no timeout needed beyond cuobjdump's own).
if ((BUILD_OK)); then
  t0=$(date +%s)
  if resources >>"$OUT/build.log" 2>&1; then
    STAGES+=("$(printf '%-12s %-28s %5ss' resources ok $(($(date +%s) - t0)))")
  else
    FAILED=1
    STAGES+=("$(printf '%-12s %-28s %5ss' resources "FAILED (see build.log)" $(($(date +%s) - t0)))")
  fi
  write_summary
fi

# ------------------------------------------------- smoke (also the sanitizer payload)
cat >"$WORK/smoke.py" <<'PYEOF'
"""Persistent plans and launches at the benchmark shapes, then a small
forward+backward of every path against a float64 CPU reference.
--tiny: one small shape, fp32 and bf16 only (the compute-sanitizer payload).
With LSTM_FUSED_PATH=step (after a hang) only the per-step path runs."""
import math
import os
import sys

import torch

import lstm_fused
from lstm_fused import _reference

tiny = "--tiny" in sys.argv
step_only = os.environ.get("LSTM_FUSED_PATH") == "step"
ops = torch.ops.lstm_fused
dev = torch.cuda.current_device()
sms = torch.cuda.get_device_properties(dev).multi_processor_count
print("device", torch.cuda.get_device_name(), "| SMs", sms, "| torch", torch.__version__,
      "| cuda_compiled", lstm_fused.cuda_compiled(), "| step only" if step_only else "")
fails = 0


def counts():
    return list(ops._cuda_kernel_counts())


def expected_blocks(H, backward):
    """The planner's choice with one block per SM: the fewest units per block
    (2 forward, 8 backward, in steps of that) whose grid fits on the SMs."""
    step = 8 if backward else 2
    hs = step
    while math.ceil(H / hs) > sms:
        hs += step
    return math.ceil(H / hs)


def rel(a, b):
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1.0)).item() if b.numel() else 0.0


def uniform(*s, scale=1.0):
    return (torch.rand(*s, dtype=torch.float64) * 2 - 1) * scale


def problem(T, B, I, H, reverse):
    k = 1 / math.sqrt(H)
    inputs = [torch.randn(T, B, I, dtype=torch.float64), uniform(B, H), uniform(B, H, scale=2.0),
              uniform(4 * H, I, scale=k), uniform(4 * H, H, scale=k), uniform(4 * H, scale=k),
              uniform(4 * H, scale=k)]
    cot = [torch.randn(T, B, H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64),
           torch.randn(B, H, dtype=torch.float64)]
    leaves = [t.clone().requires_grad_() for t in inputs]
    ref = _reference.layer(*leaves, reverse=reverse)
    return inputs, cot, list(ref) + list(torch.autograd.grad(ref, leaves, cot))


def run_layer(inputs, cot, dtype, path, reverse):
    """One layer call, forward and backward: the results and the persistent
    (forward, backward) launches it made."""
    before = counts()
    with lstm_fused.use_path(path):
        ls = [t.to("cuda", dtype).requires_grad_() for t in inputs]
        out, h, c, _, _ = ops.lstm_layer(*ls, None, None, reverse, True)
        got = [out, h, c] + list(torch.autograd.grad((out, h, c), ls, [t.to("cuda", dtype) for t in cot]))
    torch.cuda.synchronize()
    after = counts()
    return got, (after[0] - before[0], after[1] - before[1])


TOL = {torch.float32: 1e-4, torch.bfloat16: 5e-2, torch.float16: 1e-2}
torch.manual_seed(0)
torch.backends.cuda.matmul.allow_tf32 = False  # fp32 plans are 3xTF32

# 1. The plans the benchmarks and the first-light claims rest on, and one layer
#    call at each: the persistent forward and backward must each launch once.
if not tiny:
    print("persistent plans [ok, HS, blocks, smem bytes, mode, runtime error] (mode 0 bf16, 1 fp16, 2 tf32, 3 3xtf32):")
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for B, H in ((1, 256), (8, 512), (64, 512), (8, 1024), (64, 1024), (256, 1024), (8, 1536), (8, 2048)):
            f = ops._cuda_persistent_plan(dev, dtype, False, B, H)
            b = ops._cuda_persistent_plan(dev, dtype, True, B, H)
            print(f"  {str(dtype):15} B={B:4} H={H:5}  fwd {f}  bwd {b}")
    for dtype in (torch.bfloat16, torch.float32):
        for B in (8, 64):
            H = 512
            for backward in (False, True):
                ok, hs, blocks, smem, mode, error = ops._cuda_persistent_plan(dev, dtype, backward, B, H)
                want = expected_blocks(H, backward)
                good = ok == 1 and blocks == want
                fails += not good
                print(f"PLAN {'ok  ' if good else 'FAIL'} {str(dtype):14} B={B:3} H={H} "
                      f"{'bwd' if backward else 'fwd'}: ok={ok} HS={hs} blocks={blocks} "
                      f"(expected {want}) smem={smem} runtime error={error}")
            inputs, cot, ref = problem(3, B, 32, H, False)
            got, launches = run_layer(inputs, cot, dtype, "auto", False)
            err = max(rel(a, b) for a, b in zip(got, ref))
            want = (0, 0) if step_only else (1, 1)
            good = launches == want and err <= TOL[dtype]
            fails += not good
            print(f"LAUNCH {'ok  ' if good else 'FAIL'} {str(dtype):14} B={B:3} H={H} T=3 path auto: "
                  f"persistent launches fwd/bwd {launches[0]}/{launches[1]} (expected {want[0]}/{want[1]}), "
                  f"max rel err {err:.2e}")

# 2. Every path and dtype on small odd shapes.
shapes = [(3, 3, 5, 33)] if tiny else [(5, 3, 7, 33), (4, 17, 9, 100), (3, 2, 4, 257), (2, 1, 3, 1)]
dtypes = (torch.float32, torch.bfloat16) if tiny else (torch.float32, torch.bfloat16, torch.float16)
paths = ("step",) if step_only else ("persistent", "step")
total = [0, 0]
for n, (T, B, I, H) in enumerate(shapes):
    reverse = n % 2 == 1
    inputs, cot, ref = problem(T, B, I, H, reverse)
    for dtype in dtypes:
        for path in paths:
            got, launches = run_layer(inputs, cot, dtype, path, reverse)
            total[0] += launches[0]
            total[1] += launches[1]
            err = max(rel(a, b) for a, b in zip(got, ref))
            # Every plan exists at these sizes: the persistent path must run both kernels.
            want = (1, 1) if path == "persistent" else (0, 0)
            ok = err <= TOL[dtype] and launches == want
            fails += not ok
            print(f"{'ok  ' if ok else 'FAIL'} layer T={T} B={B} H={H} rev={int(reverse)} {str(dtype):14} "
                  f"{path:10} max rel err {err:.2e} (persistent launches fwd/bwd "
                  f"{launches[0]}/{launches[1]}, expected {want[0]}/{want[1]})")
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
print("kernel launch counts [persistent fwd, persistent bwd, fused cell]:", counts())
if tiny:
    print(f"LAUNCH persistent kernels in this run: fwd {total[0]} bwd {total[1]}"
          + (" (step path only)" if step_only else ""))
print("SMOKE", "FAILED" if fails else "PASSED", f"({fails} failures)")
sys.exit(1 if fails else 0)
PYEOF

if ((BUILD_OK)); then
  stage smoke 75 "$OUT/smoke.log" "$PY" "$WORK/smoke.py"
  if (($? == 124)); then
    export LSTM_FUSED_PATH=step
    msg="the smoke run timed out (a hung kernel?): every later stage runs with LSTM_FUSED_PATH=step"
    NOTES+=("$msg")
    echo "NOTE: $msg" | tee -a "$OUT/smoke.log" >>"$OUT/pytest.log"
    write_summary
  fi

  timeout_opt=()
  if "$PY" -c "import pytest_timeout" 2>/dev/null; then timeout_opt=(--timeout=120); fi
  stage pytest 170 "$OUT/pytest.log" env LSTM_FUSED_REQUIRE_CUDA=1 "$PY" -m pytest -q -p no:cacheprovider -ra -o addopts="" \
    --durations=12 ${timeout_opt[@]+"${timeout_opt[@]}"} tests/test_cuda.py

  stage timing 75 "$OUT/bench.log" "$PY" bench/cuda_timing.py --csv "$OUT/bench.csv"
  # the cell variants against the standard cell of the same H, each checked first
  stage variants 40 "$OUT/bench.log" "$PY" -m lstm_fused.bench.variants --device cuda \
    --cases 100,8,512 100,64,512 --rounds 5 --budget 1.5

  # sanitizer TOOL LIMIT: the tiny smoke under compute-sanitizer; the smoke
  # itself fails when a persistent kernel did not launch.
  sanitize() {
    local tool=$1 limit=$2
    shift 2
    if [[ -z "$SANITIZER" ]]; then
      if [[ "$SELECTED" == *" $tool "* ]]; then
        echo "=== $tool: no compute-sanitizer in \$CUDA_HOME/bin, /usr/local/cuda/bin or PATH" >>"$OUT/sanitizer.log"
        STAGES+=("$(printf '%-12s %-28s %5s' "$tool" "FAILED: tool not found" "-")")
        FAILED=1
        write_summary
      fi
      return
    fi
    stage "$tool" "$limit" "$OUT/sanitizer.log" "$SANITIZER" --tool "$tool" --error-exitcode 3 \
      --print-limit 30 "$@" "$PY" "$WORK/smoke.py" --tiny
  }
  # Without the caching allocator every tensor is its own allocation, so an
  # out-of-bounds access past a tensor is caught rather than landing in a pool.
  export PYTORCH_NO_CUDA_MEMORY_CACHING=1
  sanitize memcheck 70
  sanitize racecheck 70
  sanitize synccheck 70
  unset PYTORCH_NO_CUDA_MEMORY_CACHING

  if "$PY" -c "import lstm_fused.bench.cli" 2>/dev/null; then
    stage bench_tool 70 "$OUT/bench.log" "$PY" -m lstm_fused.bench --device cuda \
      --shapes 100,8,512,512 100,64,512,512 100,64,1024,1024 100,256,1024,1024 \
      --dtype fp32,bf16,fp16 --mode inference,fwdbwd --baselines nn --budget 40 --no-progress \
      --csv "$WORK/bench_tool.csv"
    [[ -f "$WORK/bench_tool.csv" ]] && { echo "=== bench_tool csv"; cat "$WORK/bench_tool.csv"; } >>"$OUT/bench.log"
  fi

  # initcheck: no NaN pre-fill, so a read of memory no kernel wrote is visible.
  export PYTORCH_NO_CUDA_MEMORY_CACHING=1 LSTM_FUSED_POISON=0
  sanitize initcheck 70
  unset PYTORCH_NO_CUDA_MEMORY_CACHING LSTM_FUSED_POISON
fi

# ---------------------------------------------------------------- summary
((BUILD_OK)) || FAILED=1
write_summary
rm -rf "$WORK"
cat "$SUMMARY"
exit $FAILED
