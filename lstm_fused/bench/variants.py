"""The cell variants side by side with the standard cell of the same size:
``python -m lstm_fused.bench.variants [--cases T,B,H ...] [--dtype float32]
[--device cpu|cuda]``.

Each variant is first checked against the float64 reference of its equations
(lstm_fused._reference, on the CPU) on the case's first steps, then the
contenders are timed round-robin (inference, and forward+backward; CUDA events
on the GPU), medians over rounds; the table gives each time and its ratio to
the standard cell's."""
import argparse
import statistics
import sys

import torch

from .machine import cpu_model
from .timing import round_robin, run_once

CONTENDERS = {
    "standard": {},
    "cifg": {"variant": "cifg"},
    "no_input_gate": {"variant": "no_input_gate"},
    "peephole": {"peephole": True},
    "cifg+peephole": {"variant": "cifg", "peephole": True},
}
DEFAULT_CASES = ["100,8,512", "100,64,512", "100,1,256"]
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 3e-2}


def check(module, x, steps=10):
    """Max error of the module's output and input gradient, relative to scale,
    against the float64 reference on the first `steps` steps."""
    from .. import _reference
    from ..functional import _layer_weights

    x = x[:steps].detach().requires_grad_()
    out, (h, c) = module(x)
    gx, = torch.autograd.grad(out.float().sum() + c.float().sum(), x)
    weights = [getattr(module, n).detach().cpu().double() for n in module._flat_weights_names]
    groups = _layer_weights(weights, module.num_layers, 1, module.bias, module.proj_size, module.peephole)
    x64 = x.detach().cpu().double().requires_grad_()
    B, H = x.shape[1], module.hidden_size
    zeros = torch.zeros(module.num_layers, B, H, dtype=torch.float64)
    ro, _, rc = _reference.stack(x64, groups, zeros, zeros, variant=module.variant)
    rgx, = torch.autograd.grad(ro.sum() + rc.sum(), x64)

    def err(a, b):
        return ((a.cpu().double() - b).abs().max() / b.abs().max().clamp_min(1e-6)).item()

    return max(err(out, ro), err(gx, rgx))


def run_case(T, B, H, dtype, rounds, budget_s, device="cpu"):
    import lstm_fused

    x = torch.randn(T, B, H, dtype=dtype, device=device)
    modules = {}
    for name, kw in CONTENDERS.items():
        torch.manual_seed(0)
        modules[name] = lstm_fused.LSTM(H, H, **kw).to(device=device, dtype=dtype)
    rows = {name: {"check": check(m, x)} for name, m in modules.items()}
    xg = x.clone().requires_grad_()

    def infer(m):
        with torch.no_grad():
            m(x)

    def train(m):
        out, (h, c) = m(xg)
        (out.float().sum() + c.float().sum()).backward()

    for what, fn in (("inference", infer), ("fwd+bwd", train)):
        entries = []
        for m in modules.values():
            run_once(device, lambda m=m: fn(m))  # warm-up: engine choice, plans, caches
            entries.append((lambda: None, lambda m=m: fn(m), run_once(device, lambda m=m: fn(m))))
        times, _ = round_robin(device, entries, budget_s, min_rounds=rounds, max_rounds=rounds)
        for name, t in zip(modules, times):
            rows[name][what] = statistics.median(t) * 1e3
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m lstm_fused.bench.variants", description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help="T,B,H (input size H); default %(default)s")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--budget", type=float, default=6.0, help="seconds of timing per case and mode")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = p.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    if args.device == "cuda":
        from .. import get_path

        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, {args.dtype}, "
              f"path {get_path()}")
    else:
        print(f"CPU: {cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}, {args.dtype}")
    print("ms per call, median of rounds; x std: standard's time / this one's (above 1: faster)")
    print(f"{'T,B,H':<12} {'cell':<14} {'check':>8} {'inference':>10} {'x std':>6} {'fwd+bwd':>10} {'x std':>6}")
    failed = False
    for case in args.cases:
        T, B, H = (int(v) for v in case.split(","))
        rows = run_case(T, B, H, dtype, args.rounds, args.budget, args.device)
        std = rows["standard"]
        for name, r in rows.items():
            ok = r["check"] <= TOLERANCE[dtype]
            failed |= not ok
            print(f"{case:<12} {name:<14} {r['check']:8.1e}{'' if ok else '!'} {r['inference']:10.3f} "
                  f"{std['inference'] / r['inference']:6.2f} {r['fwd+bwd']:10.3f} {std['fwd+bwd'] / r['fwd+bwd']:6.2f}")
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
