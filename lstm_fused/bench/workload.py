"""Inputs of a case and the call each mode times. Every contender gets the very same
input sets; rotating through several keeps one set from sitting warm in cache."""
import itertools
from dataclasses import dataclass
from typing import Optional

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .contenders import lstm_named_parameters


@dataclass
class InputSet:
    x: torch.Tensor
    h0: torch.Tensor
    c0: torch.Tensor
    gy: Optional[torch.Tensor]  # gradient fed to backward in fwdbwd mode
    lengths: Optional[torch.Tensor] = None  # sequence lengths in packed mode


def mixed_lengths(T, B):
    """Lengths spread evenly from T down to T/4, in no particular order."""
    lengths = torch.linspace(T, max(1, T // 4), B).round().long()
    return lengths[torch.randperm(B, generator=torch.Generator().manual_seed(B))]


def make_inputs(case, n_sets, seed=0):
    # drawn where they are used: the largest GPU shapes hold hundreds of millions of values
    gen = torch.Generator(device=case.device).manual_seed(seed + 1)

    def rand(*shape):
        return torch.randn(*shape, generator=gen, device=case.device, dtype=case.torch_dtype)

    sets = []
    for _ in range(n_sets):
        if case.mode == "cell":
            sets.append(InputSet(rand(case.B, case.I), rand(case.B, case.out_size),
                                 rand(case.B, case.H), None))
            continue
        states = case.layers * case.dirs
        x = rand(case.T, case.B, case.I)
        gy = None
        if case.mode == "fwdbwd":
            x.requires_grad_(True)  # as for a layer fed by an embedding or another layer
            gy = rand(case.T, case.B, case.out_size * case.dirs)
        lengths = mixed_lengths(case.T, case.B) if case.mode == "packed" else None
        sets.append(InputSet(x, rand(states, case.B, case.out_size), rand(states, case.B, case.H), gy, lengths))
    return sets


def make_call(module, mode):
    """fn(inputs) -> outputs, doing exactly what the mode times."""
    if mode == "inference":
        def call(s):
            with torch.no_grad():
                return module(s.x, (s.h0, s.c0))
    elif mode in ("fwd", "cell"):
        def call(s):
            return module(s.x, (s.h0, s.c0))
    elif mode == "packed":
        def call(s):
            packed = pack_padded_sequence(s.x, s.lengths, enforce_sorted=False)
            out, state = module(packed, (s.h0, s.c0))
            return pad_packed_sequence(out, total_length=s.x.shape[0])[0], state
    elif mode == "fwdbwd":
        params = list(lstm_named_parameters(module).values())

        def call(s):
            # grads are dropped, not accumulated, so every call does the same work
            for p in params:
                p.grad = None
            s.x.grad = None
            out = module(s.x, (s.h0, s.c0))
            out[0].backward(s.gy)
            return out
    else:
        raise ValueError(mode)
    return call


def rotating(call, sets):
    """A no-argument function that runs call on the next input set each time."""
    it = itertools.cycle(sets)
    return lambda: call(next(it))
