"""Rates of the machine the run finds, measured once per run: the GEMM rate per
(device, dtype) with a large square matmul and the memory bandwidth with a large copy."""
from dataclasses import dataclass, field

import torch
from torch.utils import benchmark

GEMM_N = {"cpu": 2048, "cuda": 8192}
COPY_BYTES = {"cpu": 256 << 20, "cuda": 2 << 30}
BARRIER_S = {"cpu": 0.0, "cuda": 1e-6}


@dataclass
class Machine:
    gemm_flops: dict = field(default_factory=dict)   # (device, dtype name) -> flop/s
    bandwidth: dict = field(default_factory=dict)    # device -> bytes/s
    barrier_s: dict = field(default_factory=dict)    # device -> seconds per dependent step
    element_size: dict = field(default_factory=dict)  # dtype name -> bytes

    def as_dict(self):
        return {
            "gemm_gflops": {f"{d} {t}": v / 1e9 for (d, t), v in self.gemm_flops.items()},
            "bandwidth_gbs": {d: v / 1e9 for d, v in self.bandwidth.items()},
            "barrier_us": {d: v * 1e6 for d, v in self.barrier_s.items()},
            "gemm_n": {d: GEMM_N[d] for d in self.bandwidth},
        }


def _seconds(device, fn, min_run_time=0.25):
    """Best time of a call over several blocks: a floor wants the machine's peak, and
    the best block is the one least disturbed by anything else running."""
    if device == "cuda":
        fn()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        best, reps = float("inf"), 5
        for _ in range(4):
            start.record()
            for _ in range(reps):
                fn()
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) / 1e3 / reps)
        return best
    timer = benchmark.Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return min(timer.blocked_autorange(min_run_time=min_run_time).times)


def measure(cases):
    from .cases import DTYPES

    m = Machine()
    for device in sorted({c.device for c in cases}):
        for dtype in sorted({c.dtype for c in cases if c.device == device}):
            n = GEMM_N[device]
            a = torch.randn(n, n, device=device).to(DTYPES[dtype])
            b = torch.randn(n, n, device=device).to(DTYPES[dtype])
            m.gemm_flops[(device, dtype)] = 2 * n ** 3 / _seconds(device, lambda: torch.mm(a, b))
            m.element_size[dtype] = a.element_size()
            del a, b
        src = torch.empty(COPY_BYTES[device], dtype=torch.uint8, device=device).random_()
        dst = torch.empty_like(src)
        m.bandwidth[device] = 2 * src.numel() / _seconds(device, lambda: dst.copy_(src))
        m.barrier_s[device] = BARRIER_S[device]
        del src, dst
        if device == "cuda":
            torch.cuda.empty_cache()
    return m
