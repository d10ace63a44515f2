"""Which CUDA kernel path the sequence op takes: 'auto' (default; the
persistent kernel when it fits on the card, else the per-step path),
'persistent' or 'step'. Read from LSTM_FUSED_PATH at import. CPU has one path."""
import contextlib
import os

from ._ops import _C

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
