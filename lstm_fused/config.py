"""Which kernels run: the CUDA kernel path of the sequence op ('auto' by
default: the persistent kernel when it fits on the card, else the per-step
path; 'persistent' or 'step'; LSTM_FUSED_PATH), and the CPU engine of the
recurrence (set_cpu_engine; LSTM_FUSED_CPU_ENGINE)."""
import contextlib
import os

import torch

from ._ops import _C

_C_ops = torch.ops.lstm_fused

_PATHS = ("auto", "persistent", "step")


def set_path(name: str) -> None:
    if name not in _PATHS:
        raise ValueError(f"lstm_fused: path must be one of {_PATHS}, got {name!r}")
    _C.set_path(_PATHS.index(name))


def get_path() -> str:
    return _PATHS[_C.get_path()]


@contextlib.contextmanager
def use_path(name: str):
    previous = get_path()
    set_path(name)
    try:
        yield
    finally:
        set_path(previous)


set_path(os.environ.get("LSTM_FUSED_PATH", "auto"))


# The CPU engines of the recurrence (csrc/cpu/engine_cpu.h): 'auto' (default;
# each kind of call timed once per process on this CPU, the fastest kept) or
# one engine pinned. Read from LSTM_FUSED_CPU_ENGINE at import.
CPU_ENGINES = tuple(_C_ops._cpu_engine_names())


def set_cpu_engine(name: str) -> None:
    if name not in CPU_ENGINES:
        raise ValueError(f"lstm_fused: CPU engine must be one of {CPU_ENGINES}, got {name!r}")
    _C_ops._cpu_set_engine(CPU_ENGINES.index(name))


def get_cpu_engine() -> str:
    return CPU_ENGINES[_C_ops._cpu_get_engine()]


@contextlib.contextmanager
def use_cpu_engine(name: str):
    previous = get_cpu_engine()
    set_cpu_engine(name)
    try:
        yield
    finally:
        set_cpu_engine(previous)


def cpu_engine_counts() -> dict:
    """Layer calls (forward steps and backward products counted apart) each
    CPU engine has run in this process."""
    return dict(zip(CPU_ENGINES, _C_ops._cpu_engine_counts()))


def cpu_engine_available(name: str, dtype: torch.dtype) -> bool:
    """Whether CPU engine `name` runs `dtype` on this CPU and build."""
    if name not in CPU_ENGINES:
        raise ValueError(f"lstm_fused: CPU engine must be one of {CPU_ENGINES}, got {name!r}")
    return bool(_C_ops._cpu_engine_available(CPU_ENGINES.index(name), dtype))


def cpu_engine_choices() -> list:
    """The choices timed so far in this process, one line each."""
    return list(_C_ops._cpu_engine_choices())


set_cpu_engine(os.environ.get("LSTM_FUSED_CPU_ENGINE", "auto"))
