"""Recording the gate activations from the fused kernels:

    with lstm_fused.record_gates(model) as rec:
        model(x)
    rec["encoder.rnn.l0_reverse"].gates   # (T, B, 4, H): i, f, g, o

Keys: the module's qualified name in ``model``, then ``.l{k}`` for layer k,
then ``_reverse`` for the reverse direction (``model`` itself has the empty
name: ``"l0"``). An ``LSTMCell`` records as layer 0, one step per call.

In training the kernels keep the activated gates and the cells for the
backward anyway: recording holds on to them (no extra work). Under no_grad
the kernels write them only while recording. Padded steps of a
PackedSequence or of ``lengths=`` hold zeros in ``gates`` and ``c``;
``valid`` (T, B) says which steps ran. The batch is in the caller's order.
Recording runs in eager mode: inside ``torch.compile``, ``torch.func``
transforms and ONNX export nothing is recorded. Outside the context nothing
changes and nothing is held.
"""
import contextlib
from typing import Dict, List

import torch

GATES = ("i", "f", "g", "o")

# (module id -> key prefix, recorder) of the active contexts, innermost last
_ACTIVE: List[tuple] = []


class GateRecord:
    """The gates and cells of one layer and direction: ``gates`` (T, B, 4, H),
    ``c`` (T, B, H), ``valid`` (T, B) bool."""

    def __init__(self):
        self._parts = []

    def _add(self, gates, c, valid):
        self._parts.append((gates.detach(), c.detach(), valid))

    @property
    def gates(self) -> torch.Tensor:
        return torch.cat([p[0] for p in self._parts])

    @property
    def c(self) -> torch.Tensor:
        return torch.cat([p[1] for p in self._parts])

    @property
    def valid(self) -> torch.Tensor:
        return torch.cat([p[2] for p in self._parts])


class GateRecorder(dict):
    """key -> GateRecord."""

    def summary(self) -> Dict[str, Dict[str, Dict[str, float]]]:
        """Per key and gate (i, f, g, o) over the steps that ran: the mean,
        and the fractions of activations below 0.05 and above 0.95."""
        out = {}
        for key, record in self.items():
            g = record.gates.double()[record.valid]  # (steps, 4, H)
            out[key] = {
                name: {
                    "mean": g[:, q].mean().item() if g.numel() else float("nan"),
                    "below_0.05": (g[:, q] < 0.05).double().mean().item() if g.numel() else float("nan"),
                    "above_0.95": (g[:, q] > 0.95).double().mean().item() if g.numel() else float("nan"),
                }
                for q, name in enumerate(GATES)
            }
        return out

    def __str__(self):
        rows = [f"{'key':<30} gate   mean  <0.05  >0.95"]
        for key, gates in self.summary().items():
            for name, s in gates.items():
                rows.append(f"{key:<30} {name:>4} {s['mean']:6.3f} {s['below_0.05']:6.3f} {s['above_0.95']:6.3f}")
        return "\n".join(rows)


@contextlib.contextmanager
def record_gates(model: torch.nn.Module):
    """Records the gates of every lstm_fused.LSTM and LSTMCell in ``model``
    while the context is open; yields the GateRecorder."""
    from .modules import LSTM, LSTMCell

    prefixes = {id(m): name for name, m in model.named_modules() if isinstance(m, (LSTM, LSTMCell))}
    recorder = GateRecorder()
    entry = (prefixes, recorder)
    _ACTIVE.append(entry)
    try:
        yield recorder
    finally:
        _ACTIVE.remove(entry)


def recorder_for(module):
    """A callable (layer, direction, gates (T, B, 4, H), c (T, B, H), valid
    (T, B)) that records for ``module``, or None when no context records it
    (or when recording cannot run: compiling, tracing)."""
    if not _ACTIVE or torch.compiler.is_compiling() or torch.jit.is_tracing():
        return None
    for prefixes, recorder in reversed(_ACTIVE):
        prefix = prefixes.get(id(module))
        if prefix is not None:
            def record(layer, direction, gates, c, valid, prefix=prefix, recorder=recorder):
                key = f"{prefix}.l{layer}" if prefix else f"l{layer}"
                if direction == 1:
                    key += "_reverse"
                recorder.setdefault(key, GateRecord())._add(gates, c, valid)
            return record
    return None
