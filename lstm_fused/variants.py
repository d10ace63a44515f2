"""The cell variants, by name: the numbers the ops take (csrc/cell_variants.h
holds the same), the gate blocks each stores and its peephole rows.

    standard       i, f, g, o                c = f·c' + i·g     (torch.nn.LSTM)
    cifg           f, g, o;  i = 1 − f       c = f·c' + (1 − f)·g
    no_input_gate  f, g, o;  i = 1           c = f·c' + g

With peepholes, i and f add p ⊙ c_{t-1} before their sigmoid and o adds
p ⊙ c_t; p is (3, H) rows (i, f, o), or (2, H) rows (f, o) without an input
gate."""
from typing import NamedTuple

import torch

from .errors import LSTMArgumentError


class Variant(NamedTuple):
    name: str
    code: int  # the ops' `variant` argument
    gates: str  # the gate blocks of the weights, biases and kernels' gates, in order
    peephole_rows: str
    input_gate: str = "sigmoid"  # without an "i" block: the i the cell uses, "1 - f" or "1"

    @property
    def num_gates(self) -> int:
        return len(self.gates)

    @property
    def standard(self) -> bool:
        return self.code == 0

    def implied_input_gate(self, f):
        """The input gate of a cell without an "i" block, from its forget gate f."""
        return 1 - f if self.input_gate == "1 - f" else torch.ones_like(f)


VARIANTS = {
    v.name: v
    for v in (
        Variant("standard", 0, "ifgo", "ifo"),
        Variant("cifg", 1, "fgo", "fo", "1 - f"),
        Variant("no_input_gate", 2, "fgo", "fo", "1"),
    )
}
STANDARD = VARIANTS["standard"]


def by_code(code: int) -> Variant:
    """The Variant the ops' `variant` argument `code` stands for."""
    return next(v for v in VARIANTS.values() if v.code == code)


def get(name) -> Variant:
    """The Variant named ``name`` (a Variant passes through)."""
    if isinstance(name, Variant):
        return name
    try:
        return VARIANTS[name]
    except (KeyError, TypeError):
        raise LSTMArgumentError(
            f"lstm_fused: variant must be one of {', '.join(map(repr, VARIANTS))}, got {name!r}") from None
