"""The LSTM in plain torch ops: what runs inside torch.func transforms (see
functional.py), and a reference for tests on devices where torch.nn.LSTM itself
takes other code paths. Same conventions as the ops (time-major, gates i, f, g,
o; lengths: step t runs only where t < lengths)."""
import torch


def cell(input, hx, cx, w_ih, w_hh, b_ih=None, b_hh=None):
    gates = input @ w_ih.t() + hx @ w_hh.t()
    if b_ih is not None:
        gates = gates + b_ih + b_hh
    i, f, g, o = gates.chunk(4, 1)
    c = torch.sigmoid(f) * cx + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def layer(input, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None, lengths=None, reverse=False,
          return_gates=False):
    """(output, h_n, c_n); with return_gates also the activated gates (T, B, 4,
    H) and the cells (T, B, H), zero at the steps a sequence does not run."""
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
        i, f, g, o = (xs[t] + h @ w_hh.t()).chunk(4, 1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c_new = f * c + i * g
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
