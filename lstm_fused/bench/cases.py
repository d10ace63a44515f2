"""One benchmark case: what is run (mode), on what (device, dtype) and at which size."""
from dataclasses import dataclass, field

import torch

MODES = ("inference", "fwd", "fwdbwd", "cell", "packed")

# Canonical dtype names, and the spellings accepted on the command line.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_ALIASES = {
    "float32": "float32", "fp32": "float32", "f32": "float32", "float": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "f16": "float16", "half": "float16",
}
SHORT_DTYPE = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


@dataclass(frozen=True)
class Case:
    device: str
    dtype: str
    mode: str
    T: int
    B: int
    I: int
    H: int
    layers: int = 1
    bidirectional: bool = False
    proj: int = 0
    budget_s: float = field(default=1.0, compare=False)  # seconds of timed rounds

    @property
    def torch_dtype(self):
        return DTYPES[self.dtype]

    @property
    def dirs(self):
        return 2 if self.bidirectional else 1

    @property
    def out_size(self):
        """Width of h: proj_size when the LSTM projects its hidden state."""
        return self.proj or self.H

    @property
    def steps(self):
        return 1 if self.mode == "cell" else self.T

    @property
    def shape_label(self):
        if self.mode == "cell":
            return f"B{self.B} I{self.I} H{self.H}"
        label = f"T{self.T} B{self.B} I{self.I} H{self.H}"
        if self.proj:
            label += f" P{self.proj}"
        if self.layers > 1:
            label += f" L{self.layers}"
        if self.bidirectional:
            label += " bi"
        return label

    @property
    def label(self):
        return f"{self.device} {SHORT_DTYPE[self.dtype]} {self.mode} {self.shape_label}"
