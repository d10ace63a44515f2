"""CUDA-events timing of lstm_fused against torch.nn.LSTM (cuDNN) on one GPU:
one layer, forward (inference, no_grad) and forward+backward, for lstm_fused's
persistent and per-step paths. Medians of CUDA-event timings after warm-up, with
input sets rotated; every contender's output is checked against cuDNN's first.

  python bench/cuda_timing.py [--shapes T,B,H ...] [--dtypes fp32,tf32,bf16,fp16] [--reps N]

Prints one table (times in ms, speedup = cuDNN / lstm_fused persistent) and, with
--csv, writes the rows. The 'persistent' column says 'step' where no persistent
plan exists for the shape (the call then takes the per-step path)."""
import argparse
import csv
import math
import os
import statistics
import sys

import torch

import lstm_fused

PRECISIONS = {
    "fp32": (torch.float32, False),
    "tf32": (torch.float32, True),
    "bf16": (torch.bfloat16, False),
    "fp16": (torch.float16, False),
}
DEFAULT_SHAPES = [(100, B, H) for B in (8, 64, 256) for H in (512, 1024)]
# LSTM_FUSED_PATH=step (bench/gpu_check.sh sets it after a persistent kernel
# hung): the persistent path is not run; its columns read nan.
OUR_PATHS = ("step",) if os.environ.get("LSTM_FUSED_PATH") == "step" else ("persistent", "step")


def parse_shape(text):
    T, B, H = (int(v) for v in text.split(","))
    return T, B, H


def time_ms(fn, reps, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def plan_ok(dtype, backward, B, H):
    try:
        return bool(torch.ops.lstm_fused._cuda_persistent_plan(
            torch.cuda.current_device(), dtype, backward, B, H)[0])
    except (AttributeError, RuntimeError):
        return False


def run_case(T, B, H, prec, reps, n_sets=3):
    dtype, allow = PRECISIONS[prec]
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow
    torch.manual_seed(0)
    ref = torch.nn.LSTM(H, H).to("cuda", dtype)
    ours = lstm_fused.LSTM(H, H).to("cuda", dtype)
    ours.load_state_dict(ref.state_dict())
    xs = [torch.randn(T, B, H, device="cuda", dtype=dtype) for _ in range(n_sets)]
    gout = torch.randn(T, B, H, device="cuda", dtype=dtype)
    counter = [0]

    def next_x():
        counter[0] += 1
        return xs[counter[0] % n_sets]

    def fwd(model):
        def f():
            with torch.no_grad():
                model(next_x())
        return f

    def fwdbwd(model):
        def f():
            x = next_x().requires_grad_()
            out, _ = model(x)
            torch.autograd.backward(out, gout)
            x.requires_grad_(False)
        return f

    # Correctness first: each lstm_fused path against cuDNN in the same precision.
    with torch.no_grad():
        want = ref(xs[0])[0].float()
    errs = {"persistent": math.nan}
    for path in OUR_PATHS:
        with lstm_fused.use_path(path):
            with torch.no_grad():
                got = ours(xs[0])[0].float()
        errs[path] = ((got - want).abs().max() / want.abs().max().clamp_min(1.0)).item()

    row = dict(T=T, B=B, H=H, prec=prec,
               persistent_fwd_plan=plan_ok(dtype, False, B, H),
               persistent_bwd_plan=plan_ok(dtype, True, B, H),
               err_persistent=errs["persistent"], err_step=errs["step"])
    for mode, make in (("fwd", fwd), ("fwdbwd", fwdbwd)):
        row[f"cudnn_{mode}"] = time_ms(make(ref), reps)
        row[f"persistent_{mode}"] = math.nan
        for path in OUR_PATHS:
            with lstm_fused.use_path(path):
                row[f"{path}_{mode}"] = time_ms(make(ours), reps)
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", type=parse_shape, default=DEFAULT_SHAPES, metavar="T,B,H")
    p.add_argument("--dtypes", default="fp32,tf32,bf16,fp16")
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--csv", help="write the rows to this CSV file")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("cuda_timing: no CUDA device", file=sys.stderr)
        return 2
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    rows = []
    try:
        for prec in args.dtypes.split(","):
            for T, B, H in args.shapes:
                try:
                    rows.append(run_case(T, B, H, prec, args.reps))
                except Exception as e:  # keep timing the other cases
                    print(f"cuda_timing: {prec} T={T} B={B} H={H} failed: {e}", file=sys.stderr)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved

    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}; one layer, I = H; "
          "times in ms (median of CUDA-event timings)")
    head = (f"{'prec':5} {'T':>4} {'B':>4} {'H':>5} | {'cuDNN fwd':>9} {'pers fwd':>9} {'step fwd':>9} "
            f"{'x':>5} | {'cuDNN f+b':>9} {'pers f+b':>9} {'step f+b':>9} {'x':>5} | {'err pers':>8} {'err step':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        pf = f"{r['persistent_fwd']:9.3f}" if r["persistent_fwd_plan"] else f"{'step':>9}"
        pb = f"{r['persistent_fwdbwd']:9.3f}" if r["persistent_fwd_plan"] or r["persistent_bwd_plan"] else f"{'step':>9}"
        print(f"{r['prec']:5} {r['T']:4d} {r['B']:4d} {r['H']:5d} | {r['cudnn_fwd']:9.3f} {pf} "
              f"{r['step_fwd']:9.3f} {r['cudnn_fwd'] / r['persistent_fwd']:5.2f} | "
              f"{r['cudnn_fwdbwd']:9.3f} {pb} {r['step_fwdbwd']:9.3f} "
              f"{r['cudnn_fwdbwd'] / r['persistent_fwdbwd']:5.2f} | "
              f"{r['err_persistent']:8.1e} {r['err_step']:8.1e}")
    if args.csv and rows:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
