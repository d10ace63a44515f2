"""Baselines written with stock PyTorch. Both keep torch.nn.LSTM's parameter names
(weight_ih_l0, ..._reverse), so the same state_dict loads into every contender."""
import torch
from torch import nn


def _suffix(layer, reverse):
    return f"_l{layer}" + ("_reverse" if reverse else "")


def _step(pre, h, c, w_hh_t, w_hr_t):
    """One LSTM step in torch ops, gate order i, f, g, o as in nn.LSTM."""
    gates = torch.addmm(pre, h, w_hh_t)
    i, f, g, o = gates.chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    if w_hr_t is not None:
        h = h @ w_hr_t
    return h, c


class ReferenceLSTM(nn.Module):
    """nn.LSTM in plain torch ops: the input projection of the whole sequence is one
    matmul, then each step is one addmm plus pointwise ops. This is the code a user
    would write by hand, so it is the baseline a fused kernel must beat."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.dirs = 2 if bidirectional else 1
        self.proj_size = proj_size
        out = proj_size or hidden_size
        for layer in range(num_layers):
            in_size = input_size if layer == 0 else out * self.dirs
            for d in range(self.dirs):
                sfx = _suffix(layer, d == 1)
                self.register_parameter("weight_ih" + sfx, nn.Parameter(torch.empty(4 * hidden_size, in_size, **kw)))
                self.register_parameter("weight_hh" + sfx, nn.Parameter(torch.empty(4 * hidden_size, out, **kw)))
                if bias:
                    self.register_parameter("bias_ih" + sfx, nn.Parameter(torch.empty(4 * hidden_size, **kw)))
                    self.register_parameter("bias_hh" + sfx, nn.Parameter(torch.empty(4 * hidden_size, **kw)))
                if proj_size:
                    self.register_parameter("weight_hr" + sfx, nn.Parameter(torch.empty(proj_size, hidden_size, **kw)))

    def _direction(self, x, h, c, layer, reverse):
        sfx = _suffix(layer, reverse)
        T, B, _ = x.shape
        w_ih = getattr(self, "weight_ih" + sfx)
        flat = x.reshape(T * B, -1)
        if self.bias:
            pre = torch.addmm(getattr(self, "bias_ih" + sfx) + getattr(self, "bias_hh" + sfx), flat, w_ih.t())
        else:
            pre = flat @ w_ih.t()
        # unbind, not pre[t]: the backward of T indexings would build T full-size
        # zero grads of pre, which a hand-written LSTM would not pay for
        pre = pre.view(T, B, -1).unbind(0)
        w_hh_t = getattr(self, "weight_hh" + sfx).t()
        w_hr_t = getattr(self, "weight_hr" + sfx).t() if self.proj_size else None
        ys = [None] * T
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            h, c = _step(pre[t], h, c, w_hh_t, w_hr_t)
            ys[t] = h
        return torch.stack(ys), h, c

    def forward(self, x, hx):
        h0, c0 = hx
        hs, cs = [], []
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.dirs):
                k = layer * self.dirs + d
                y, h, c = self._direction(x, h0[k], c0[k], layer, d == 1)
                outs.append(y)
                hs.append(h)
                cs.append(c)
            x = outs[0] if self.dirs == 1 else torch.cat(outs, dim=2)
        return x, (torch.stack(hs), torch.stack(cs))


class ReferenceCell(nn.Module):
    """One nn.LSTMCell step in plain torch ops (same parameter names)."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.bias = bias
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size, **kw))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size, **kw))
            self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size, **kw))

    def forward(self, x, hx):
        h, c = hx
        if self.bias:
            pre = torch.addmm(self.bias_ih + self.bias_hh, x, self.weight_ih.t())
        else:
            pre = x @ self.weight_ih.t()
        return _step(pre, h, c, self.weight_hh.t(), None)


class CellLoopLSTM(nn.Module):
    """nn.LSTM as a Python loop over torch.nn.LSTMCell, one cell per layer and direction."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True,
                 bidirectional=False, device=None, dtype=None):
        super().__init__()
        self.num_layers = num_layers
        self.dirs = 2 if bidirectional else 1
        self.cells = nn.ModuleList(
            nn.LSTMCell(input_size if layer == 0 else hidden_size * self.dirs, hidden_size,
                        bias=bias, device=device, dtype=dtype)
            for layer in range(num_layers) for _ in range(self.dirs)
        )

    def lstm_named_parameters(self):
        """Parameters under nn.LSTM's names, to load its weights and compare grads."""
        named = {}
        for k, cell in enumerate(self.cells):
            sfx = _suffix(k // self.dirs, k % self.dirs == 1)
            for name, p in cell.named_parameters():
                named[name + sfx] = p
        return named

    @torch.no_grad()
    def load_lstm_state_dict(self, state):
        for name, p in self.lstm_named_parameters().items():
            p.copy_(state[name])

    def forward(self, x, hx):
        h0, c0 = hx
        T = x.shape[0]
        hs, cs = [], []
        for layer in range(self.num_layers):
            xs = x.unbind(0)  # one backward for all steps, as in ReferenceLSTM
            outs = []
            for d in range(self.dirs):
                k = layer * self.dirs + d
                cell, h, c = self.cells[k], h0[k], c0[k]
                ys = [None] * T
                for t in (range(T - 1, -1, -1) if d == 1 else range(T)):
                    h, c = cell(xs[t], (h, c))
                    ys[t] = h
                outs.append(torch.stack(ys))
                hs.append(h)
                cs.append(c)
            x = outs[0] if self.dirs == 1 else torch.cat(outs, dim=2)
        return x, (torch.stack(hs), torch.stack(cs))
