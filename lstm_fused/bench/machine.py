"""The machine the run finds: the CPU's model and vector extensions, and rates measured
once per run: the GEMM rate per (device, dtype) and the memory bandwidth with a large copy.

On the CPU the GEMM rate is the best of the engines torch offers there (torch.mm on MKL,
MKL's packed GEMM, oneDNN's packed matmul), each at a large square shape and at the
per-step shapes (B x H) . (H x 4H) of the run's cases. Which engine is fastest depends on
the CPU (on an AMD EPYC oneDNN runs the per-step shapes about twice as fast as MKL), and a
floor set by a slower engine would not be a floor."""
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field

import torch

from .timing import cpu_block_seconds

GEMM_N = {"cpu": 2048, "cuda": 8192}
COPY_BYTES = {"cpu": 256 << 20, "cuda": 2 << 30}
BARRIER_S = {"cpu": 0.0, "cuda": 1e-6}
MAX_STEP_SHAPES = 6  # per-step GEMM shapes measured per dtype, the largest first

# /proc/cpuinfo flag -> name, in the order the header lists them
ISA_FLAGS = (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_bf16", "AVX512_BF16"),
             ("avx512_fp16", "AVX512_FP16"), ("amx_tile", "AMX-TILE"), ("amx_bf16", "AMX-BF16"))


def _cpuinfo_field(name):
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(name) and ":" in line:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model():
    """lscpu's model name, else /proc/cpuinfo's, else what platform says."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10,
                             env={**os.environ, "LC_ALL": "C"}).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_isa(flags=None):
    """{flag: present} for the flags of ISA_FLAGS, or None where there are no x86
    flags to read (another architecture, or no /proc)."""
    if flags is None:
        flags = _cpuinfo_field("flags")
    if flags is None:
        return None
    have = set(flags.split())
    return {flag: flag in have for flag, _ in ISA_FLAGS}


def isa_text(isa):
    """"AVX2, AVX-512, AVX512_BF16; no AVX512_FP16, AMX-TILE, AMX-BF16"."""
    if isa is None:
        return "ISA unknown (no x86 flags)"
    present = [name for flag, name in ISA_FLAGS if isa.get(flag)]
    absent = [name for flag, name in ISA_FLAGS if not isa.get(flag)]
    return ", ".join(present) + ("; " if present and absent else "") + ("no " + ", ".join(absent) if absent else "")


@dataclass
class Machine:
    gemm_flops: dict = field(default_factory=dict)   # (device, dtype name) -> flop/s, the best measured
    bandwidth: dict = field(default_factory=dict)    # device -> bytes/s
    barrier_s: dict = field(default_factory=dict)    # device -> seconds per dependent step
    element_size: dict = field(default_factory=dict)  # dtype name -> bytes
    gemm_engine: dict = field(default_factory=dict)  # (device, dtype name) -> what set gemm_flops
    gemm_measured: dict = field(default_factory=dict)  # (device, dtype name) -> [(engine, (m, k, n), flop/s)]
    stream_s: dict = field(default_factory=dict)     # (device, bytes) -> seconds a step to read them (floor.py)
    cpu: str = ""
    isa: dict = None

    def as_dict(self):
        return {
            "cpu": self.cpu,
            "cpu_isa": self.isa,
            "cpu_isa_text": isa_text(self.isa),
            "gemm_gflops": {f"{d} {t}": v / 1e9 for (d, t), v in self.gemm_flops.items()},
            "gemm_engine": {f"{d} {t}": v for (d, t), v in self.gemm_engine.items()},
            "gemm_measured": {f"{d} {t}": [{"engine": e, "m": m, "k": k, "n": n, "gflops": v / 1e9}
                                           for e, (m, k, n), v in rates]
                              for (d, t), rates in self.gemm_measured.items()},
            "bandwidth_gbs": {d: v / 1e9 for d, v in self.bandwidth.items()},
            "barrier_us": {d: v * 1e6 for d, v in self.barrier_s.items()},
            "weight_stream_us": {f"{d} {b}": v * 1e6 for (d, b), v in sorted(self.stream_s.items())},
            "gemm_n": {d: GEMM_N[d] for d in self.bandwidth},
        }


def shape_text(shape):
    m, k, n = shape
    return f"{m}x{k}x{n}"


def engine_text(engine, shape):
    return f"{engine} at {shape_text(shape)}"


def best_rate(measured):
    """(flop/s, engine, shape) of the fastest of [(engine, shape, flop/s)]."""
    engine, shape, rate = max(measured, key=lambda r: r[2])
    return rate, engine, shape


def _best_cpu_seconds(fn, min_run_time, block_s=0.01, min_blocks=2):
    """Best seconds per call over blocks of about block_s: a floor wants the machine's
    peak, and the best block is the one least disturbed by anything else running."""
    t0 = time.perf_counter()
    fn()
    est = max(time.perf_counter() - t0, 1e-7)
    number = max(1, int(block_s / est))
    best, blocks, start = float("inf"), 0, time.perf_counter()
    while blocks < min_blocks or time.perf_counter() - start < min_run_time:
        best = min(best, cpu_block_seconds(fn, number))
        blocks += 1
    return best


def _cuda_seconds(fn):
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


def cpu_engines(x, w):
    """{name: fn} computing x . w^T, the weight laid out once as each engine wants it,
    for every engine this torch has that runs this dtype and gets the product right."""
    m = x.size(0)
    wt, out = w.t().contiguous(), torch.empty(m, w.size(0), dtype=x.dtype)
    rows = min(m, 8)  # checked rows: a float64 product of all of a large shape costs more than timing it
    want = torch.mm(x[:rows].double(), w.double().t())
    mkl = " (MKL)" if x.dtype == torch.float32 and torch.backends.mkl.is_available() else ""

    def mkl_packed():
        pw = torch.ops.mkl._mkl_reorder_linear_weight(w, m)
        return lambda: torch.ops.mkl._mkl_linear(x, pw, w, None, m)

    def onednn_packed():
        pw = torch.ops.mkldnn._reorder_linear_weight(w, m)
        return lambda: torch.ops.mkldnn._linear_pointwise(x, pw, None, "none", [], "")

    makers = {"torch.mm" + mkl: lambda: (lambda: torch.mm(x, wt, out=out)),
              "MKL packed": mkl_packed, "oneDNN packed": onednn_packed}
    engines = {}
    for name, make in makers.items():
        try:
            fn = make()
            got = fn()[:rows].double()
        except Exception:  # an engine this torch lacks, or one that does not run this dtype
            continue
        if ((got - want).abs().max() / want.abs().max().clamp_min(1.0)).item() < 0.05:
            engines[name] = fn
    return engines


def step_shapes(cases, limit=MAX_STEP_SHAPES):
    """The per-step GEMM (B x h width) . (h width x 4H) of each case, largest first."""
    shapes = {(c.B, c.out_size, 4 * c.H) for c in cases}
    return sorted(shapes, key=lambda s: (-s[0] * s[1] * s[2], s))[:limit]


def measure_cpu_gemm(cases, dtype, square_s=0.3, step_s=0.05):
    """[(engine, (m, k, n), flop/s)] of every engine at the square and per-step shapes."""
    square = GEMM_N["cpu"]
    measured = []
    for shape, run_time in [((square, square, square), square_s)] + [(s, step_s) for s in step_shapes(cases)]:
        m, k, n = shape
        for name, fn in cpu_engines(torch.randn(m, k).to(dtype), torch.randn(n, k).to(dtype)).items():
            seconds = _best_cpu_seconds(fn, run_time)
            measured.append((name, shape, 2 * shape[0] * shape[1] * shape[2] / seconds))
    return measured


STREAM_STEPS = 100


def measure_cpu_stream(m, cases, trials=3):
    """Seconds a step for the threads to read each case's recurrent weights and meet
    at a barrier (floor.py), the best of trials and of any earlier reading."""
    from .floor import recurrent_bytes

    if not hasattr(torch.ops.lstm_fused, "_cpu_stream_seconds"):
        return  # a build without the op: the floor keeps its other terms
    sizes = {recurrent_bytes(c, m.element_size[c.dtype]) for c in cases if c.device == "cpu"}
    for size in sorted(s for s in sizes if s > 0):
        seconds = torch.ops.lstm_fused._cpu_stream_seconds(size, STREAM_STEPS, trials)
        m.stream_s[("cpu", size)] = min(seconds, m.stream_s.get(("cpu", size), float("inf")))


def remeasure_cpu_gemm(m, cases, square_s=0.3, step_s=0.05):
    """Measure the CPU GEMM rates again (after the cases) and keep, per dtype, the
    better of the two measurements: on a noisy VM one 0.3 s window read 123 against
    213-218 GFLOP/s in other runs (AMD EPYC, bench/NOTES.md v17), which made the
    floor low and the floor ratios flattering. The weight streams are measured again
    too, each keeping its faster reading. Returns the dtypes whose GEMM rate rose."""
    from .cases import DTYPES

    measure_cpu_stream(m, cases)
    raised = []
    for dtype in sorted({c.dtype for c in cases if c.device == "cpu"}):
        key = ("cpu", dtype)
        measured = measure_cpu_gemm([c for c in cases if c.device == "cpu" and c.dtype == dtype],
                                    DTYPES[dtype], square_s, step_s)
        m.gemm_measured[key] = m.gemm_measured.get(key, []) + measured
        rate, engine, shape = best_rate(measured)
        if rate > m.gemm_flops.get(key, 0.0):
            m.gemm_flops[key] = rate
            m.gemm_engine[key] = engine_text(engine, shape)
            raised.append(dtype)
    return raised


def measure(cases, square_s=0.3, step_s=0.05):
    from .cases import DTYPES

    m = Machine(cpu=cpu_model(), isa=cpu_isa())
    for device in sorted({c.device for c in cases}):
        for dtype in sorted({c.dtype for c in cases if c.device == device}):
            m.element_size[dtype] = torch.empty(0, dtype=DTYPES[dtype]).element_size()
            if device == "cpu":
                measured = measure_cpu_gemm([c for c in cases if c.device == device and c.dtype == dtype],
                                            DTYPES[dtype], square_s, step_s)
            else:
                n = GEMM_N[device]
                a = torch.randn(n, n, device=device).to(DTYPES[dtype])
                b = torch.randn(n, n, device=device).to(DTYPES[dtype])
                measured = [("torch.mm (cuBLAS)", (n, n, n), 2 * n ** 3 / _cuda_seconds(lambda: torch.mm(a, b)))]
                del a, b
            rate, engine, shape = best_rate(measured)
            m.gemm_flops[(device, dtype)] = rate
            m.gemm_engine[(device, dtype)] = engine_text(engine, shape)
            m.gemm_measured[(device, dtype)] = measured
        if device == "cpu":
            measure_cpu_stream(m, cases)
        src = torch.empty(COPY_BYTES[device], dtype=torch.uint8, device=device).random_()
        dst = torch.empty_like(src)
        copy = lambda: dst.copy_(src)  # noqa: E731
        seconds = _cuda_seconds(copy) if device == "cuda" else _best_cpu_seconds(copy, 0.25)
        m.bandwidth[device] = 2 * src.numel() / seconds
        m.barrier_s[device] = BARRIER_S[device]
        del src, dst
        if device == "cuda":
            torch.cuda.empty_cache()
    return m
