"""Which kernels run: the CUDA kernel path of the sequence op ('auto' by
default: the persistent kernel when it fits on the card, else the per-step
path; 'persistent' or 'step'; LSTM_FUSED_PATH), and the CPU engine of the
recurrence ('auto' by default: each kind of call timed once per process on
this CPU and the fastest kept; or one engine pinned; LSTM_FUSED_CPU_ENGINE;
csrc/cpu/engine_cpu.h)."""
import contextlib
import os

import torch

from ._ops import _C

_C_ops = torch.ops.lstm_fused


def _setting(what, names, store, load):
    """set, get and a context manager (use) for a named process-wide choice."""

    def set_(name: str) -> None:
        if name not in names:
            raise ValueError(f"lstm_fused: {what} must be one of {names}, got {name!r}")
        store(names.index(name))

    def get() -> str:
        return names[load()]

    @contextlib.contextmanager
    def use(name: str):
        previous = get()
        set_(name)
        try:
            yield
        finally:
            set_(previous)

    return set_, get, use


_PATHS = ("auto", "persistent", "step")
set_path, get_path, use_path = _setting("path", _PATHS, _C.set_path, _C.get_path)

CPU_ENGINES = tuple(_C_ops._cpu_engine_names())
set_cpu_engine, get_cpu_engine, use_cpu_engine = _setting(
    "CPU engine", CPU_ENGINES, _C_ops._cpu_set_engine, _C_ops._cpu_get_engine)


CPU_INPUT_PROJECTIONS = tuple(_C_ops._cpu_input_projection_names())
set_cpu_input_projection, get_cpu_input_projection, use_cpu_input_projection = _setting(
    "CPU input projection", CPU_INPUT_PROJECTIONS, _C_ops._cpu_set_input_projection,
    _C_ops._cpu_get_input_projection)
set_cpu_input_projection.__doc__ = """Where a fused float layer's input projection runs on
the CPU: "gemm" (one large GEMM before the recurrence), "step" (inside each
fused oneDNN step, beside the recurrent product) or "auto" (timed on the
first call of each kind and kept; csrc/cpu/input_projection_cpu.h)."""


def cpu_input_projection_counts() -> dict:
    """Calls of fused float CPU layers that could run their input projection
    in the steps, by where it ran: {"gemm": ..., "step": ...}."""
    return dict(zip(("gemm", "step"), _C_ops._cpu_input_projection_counts()))


def cpu_engine_counts() -> dict:
    """Layer calls (forward steps and backward products counted apart) each
    CPU engine has run in this process."""
    return dict(zip(CPU_ENGINES, _C_ops._cpu_engine_counts()))


def cpu_sequence_counts() -> dict:
    """Layer calls in this process that ran all their steps in one parallel
    region, one barrier per step: {"forward": fused forwards (small_batch,
    onednn), "backward": backward sweeps whose product ran on onednn}. Packed
    batches and projected layers run step by step."""
    return dict(zip(("forward", "backward"), _C_ops._cpu_sequence_counts()))


def cpu_large_gemm_counts() -> dict:
    """The large GEMMs (the input projection; dx and the weight gradients)
    each library has run in this process: "mkl" (torch.mm; 16-bit operands in
    float) or "onednn" (oneDNN's matmul), whichever was timed faster for the
    shape on this CPU, or pinned with the CPU engine."""
    return {name: n for name, n in zip(CPU_ENGINES, _C_ops._cpu_large_gemm_counts())
            if name in ("mkl", "onednn")}


def cpu_engine_available(name: str, dtype: torch.dtype) -> bool:
    """Whether CPU engine `name` runs layers of `dtype` on this CPU and build
    (an LSTMCell step runs float32 on mkl and small_batch, every type on
    aten)."""
    if name not in CPU_ENGINES:
        raise ValueError(f"lstm_fused: CPU engine must be one of {CPU_ENGINES}, got {name!r}")
    return bool(_C_ops._cpu_engine_available(CPU_ENGINES.index(name), dtype))


def cpu_engine_choices() -> list:
    """The choices timed so far in this process, one line each."""
    return (list(_C_ops._cpu_engine_choices()) + list(_C_ops._cpu_input_projection_choices())
            + list(_C_ops._cpu_block_choices()))


set_path(os.environ.get("LSTM_FUSED_PATH", "auto"))
set_cpu_engine(os.environ.get("LSTM_FUSED_CPU_ENGINE", "auto"))
set_cpu_input_projection(os.environ.get("LSTM_FUSED_CPU_INPUT_PROJECTION", "auto"))
