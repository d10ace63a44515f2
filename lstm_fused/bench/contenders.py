"""Who races: lstm_fused (one entry per CUDA kernel path) and the baselines, all
holding the same weights."""
import functools
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from .baselines import CellLoopLSTM, ReferenceCell, ReferenceLSTM

BASELINES = ("nn", "cellloop", "reference")
# Contenders timed only when named: lstm_fused inside lstm_fused.record_gates.
EXTRAS = ("record",)
BASELINE_HELP = {
    "nn": "torch.nn.LSTM (cuDNN on GPU, oneDNN on CPU); nn.LSTMCell in cell mode",
    "cellloop": "a Python loop of torch.nn.LSTMCell",
    "reference": "plain torch ops: hoisted input matmul, per-step addmm + pointwise",
    "record": "lstm_fused recording its gates (lstm_fused.record_gates; not in 'all')",
}
FUSED_PATHS = ("persistent", "step")


class BenchError(RuntimeError):
    """A problem the user can fix; printed without a traceback."""


@dataclass
class Contender:
    name: str
    key: str                      # "fused" or a baseline name
    module: Optional[nn.Module]
    timed: bool = True
    error: Optional[str] = None   # set when the contender could not be built or run
    activate: Callable[[], None] = lambda: None

    @property
    def role(self):
        return "lstm_fused" if self.key in ("fused", "record") else "baseline"


def fused_api():
    """The lstm_fused package, or a BenchError that says how to get it."""
    try:
        import lstm_fused
    except ImportError as e:
        raise BenchError(f"cannot import lstm_fused: {e}") from e
    missing = [n for n in ("LSTM", "LSTMCell") if not hasattr(lstm_fused, n)]
    if missing:
        raise BenchError(f"lstm_fused has no {', '.join(missing)}; is the package installed "
                         "(pip install --no-build-isolation -e .)?")
    return lstm_fused


def fused_paths(api, case):
    """Kernel paths worth timing separately: on CUDA the sequence kernels come in
    several; on CPU, and for a single cell step, there is one."""
    if case.device == "cuda" and case.mode != "cell" and hasattr(api, "set_path"):
        return FUSED_PATHS
    return (None,)


def _display(key, case):
    cell = case.mode == "cell"
    return {
        "nn": "nn.LSTMCell" if cell else "nn.LSTM",
        "cellloop": "LSTMCell loop",
        "reference": "reference cell" if cell else "reference",
    }[key]


def _loaded(factory, state):
    module = factory()
    if hasattr(module, "load_lstm_state_dict"):
        module.load_lstm_state_dict(state)
    else:
        module.load_state_dict(state)
    return module


def error_text(e):
    return f"{type(e).__name__}: {e}".splitlines()[0][:200]


def build(case, baselines, api, seed=0):
    """Contenders for a case; the first is torch's own module, the reference of the
    correctness check, built even when it is not timed."""
    kw = {"device": case.device, "dtype": case.torch_dtype}
    torch.manual_seed(seed)
    if case.mode == "cell":
        ref = nn.LSTMCell(case.I, case.H, **kw)
        make_fused = functools.partial(api.LSTMCell, case.I, case.H, **kw)
        factories = {"reference": functools.partial(ReferenceCell, case.I, case.H, **kw)}
    else:
        lstm_kw = dict(num_layers=case.layers, bidirectional=case.bidirectional, proj_size=case.proj, **kw)
        ref = nn.LSTM(case.I, case.H, **lstm_kw)
        make_fused = functools.partial(api.LSTM, case.I, case.H, **lstm_kw)
        factories = {"reference": functools.partial(ReferenceLSTM, case.I, case.H, **lstm_kw)}
        if case.mode == "packed":  # the baselines written here take padded input only
            factories = {}
        elif not case.proj:  # nn.LSTMCell has no projection
            factories["cellloop"] = functools.partial(
                CellLoopLSTM, case.I, case.H, num_layers=case.layers, bidirectional=case.bidirectional, **kw)
    state = ref.state_dict()

    out = [Contender(_display("nn", case), "nn", ref, timed="nn" in baselines)]
    try:
        fused, error = _loaded(make_fused, state), None
    except Exception as e:  # reported in the row, the other contenders still run
        fused, error = None, error_text(e)
    for path in fused_paths(api, case):
        name = "lstm_fused" if path is None else f"lstm_fused[{path}]"
        activate = (lambda p=path: api.set_path(p)) if path else (lambda: None)
        out.append(Contender(name, "fused", fused, error=error, activate=activate))
    if "record" in baselines and fused is not None and hasattr(api, "record_gates"):
        out.append(Contender("lstm_fused+record", "record", Recording(api, fused)))
    for key in BASELINES[1:]:
        if key in baselines and key in factories:
            try:
                out.append(Contender(_display(key, case), key, _loaded(factories[key], state)))
            except Exception as e:
                out.append(Contender(_display(key, case), key, None, error=error_text(e)))
    return out


class Recording(nn.Module):
    """A module run inside lstm_fused.record_gates, the record dropped after
    each call (the cost of recording, not of keeping records)."""

    def __init__(self, api, module):
        super().__init__()
        self.inner = module
        self._record_gates = api.record_gates

    def forward(self, *args):
        with self._record_gates(self.inner):
            return self.inner(*args)

    def lstm_named_parameters(self):
        return dict(self.inner.named_parameters())


def lstm_named_parameters(module):
    if hasattr(module, "lstm_named_parameters"):
        return module.lstm_named_parameters()
    return dict(module.named_parameters())
