"""The LSTM in plain torch ops, every cell variant (variants.py): the one
reference of the tests and the bench (run in float64 there), and what runs
inside torch.func transforms (see functional.py). Same conventions as the
ops (time-major; gate blocks in the variant's order; lengths: step t runs
only where t < lengths)."""
import torch

from . import variants


def _update(pre, c_prev, variant, w_peep):
    """Pre-activations (B, KH) and c_{t-1} -> the activated gates (i, f, g, o),
    with the i the cell used (1 − f for cifg, 1 without an input gate), and c_t."""
    v = variants.get(variant)
    blocks = dict(zip(v.gates, pre.chunk(v.num_gates, -1)))
    peep = dict(zip(v.peephole_rows, w_peep.unbind(0))) if w_peep is not None else {}
    if "f" in peep:
        blocks["f"] = blocks["f"] + peep["f"] * c_prev
    f, g = torch.sigmoid(blocks["f"]), torch.tanh(blocks["g"])
    if "i" in blocks:
        i = torch.sigmoid(blocks["i"] + peep["i"] * c_prev if "i" in peep else blocks["i"])
    else:
        i = v.implied_input_gate(f)
    c = f * c_prev + i * g
    o = torch.sigmoid(blocks["o"] + peep["o"] * c if "o" in peep else blocks["o"])
    return (i, f, g, o), c


def cell(input, hx, cx, w_ih, w_hh, b_ih=None, b_hh=None, variant="standard", w_peep=None):
    gates = input @ w_ih.t() + hx @ w_hh.t()
    if b_ih is not None:
        gates = gates + b_ih + b_hh
    (_, _, _, o), c = _update(gates, cx, variant, w_peep)
    return o * torch.tanh(c), c


def layer(input, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None, lengths=None, reverse=False,
          return_gates=False, variant="standard", w_peep=None):
    """(output, h_n, c_n); with return_gates also the activated gates (T, B, 4,
    H) as i, f, g, o (i the one the cell used) and the cells (T, B, H), zero
    at the steps a sequence does not run."""
    T = input.shape[0]
    xp = input @ w_ih.t()
    if b_ih is not None:
        xp = xp + (b_ih + b_hh)
    h, c = h0, c0
    outs = [None] * T
    gates, cells = [None] * T, [None] * T
    xs = xp.unbind(0)  # indexing xp[t] would make backward build a full-size zero tensor per step
    for s in range(T):
        t = T - 1 - s if reverse else s
        (i, f, g, o), c_new = _update(xs[t] + h @ w_hh.t(), c, variant, w_peep)
        h_new = o * torch.tanh(c_new)
        if return_gates:
            running = 1.0 if lengths is None else (lengths.to(input.device) > t).unsqueeze(1).to(c_new.dtype)
            gates[t] = torch.stack([i, f, g, o], dim=1) * (running.unsqueeze(2) if lengths is not None else 1.0)
            cells[t] = c_new * running
        if w_hr is not None:
            h_new = h_new @ w_hr.t()
        if lengths is None:
            h, c, outs[t] = h_new, c_new, h_new
        else:
            running = (lengths.to(input.device) > t).unsqueeze(1)
            h = torch.where(running, h_new, h)
            c = torch.where(running, c_new, c)
            outs[t] = torch.where(running, h_new, torch.zeros_like(h_new))
    output = torch.stack(outs) if T else input.new_zeros((0,) + tuple(h0.shape))
    if return_gates:
        return output, h, c, torch.stack(gates), torch.stack(cells)
    return output, h, c


def stack(input, groups, h0, c0, bidirectional=False, lengths=None, variant="standard"):
    """A stack of layers as functional.lstm runs it (time-major, no dropout):
    groups per layer and direction (w_ih, w_hh, b_ih, b_hh, w_hr, w_peep),
    absent ones None; h0 (L·D, B, P), c0 (L·D, B, H). -> (output, h_n, c_n)."""
    D = 2 if bidirectional else 1
    h_n, c_n, x = [], [], input
    for level in range(len(groups) // D):
        outs = []
        for d in range(D):
            k = level * D + d
            w_ih, w_hh, b_ih, b_hh, w_hr, w_peep = groups[k]
            out, h, c = layer(x, h0[k], c0[k], w_ih, w_hh, b_ih, b_hh, w_hr, lengths, d == 1,
                              variant=variant, w_peep=w_peep)
            outs.append(out)
            h_n.append(h)
            c_n.append(c)
        x = torch.cat(outs, dim=2) if D == 2 else outs[0]
    return x, torch.stack(h_n), torch.stack(c_n)
