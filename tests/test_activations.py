"""The cell update at the edges of the activations' range, on every CPU
engine: pre-activations from -inf to inf (past where e^x leaves float's
range), NaN, and tiny ones, against the equations in float64. The
pre-activations are the biases (the weights are zero), so nothing but the
activations and the cell update stands between them and the result, and a
NaN or inf in one gate does not reach the others through a product."""
import math

import pytest
import torch

import lstm_fused

EDGES = [-math.inf, -1e4, -200.0, -104.5, -103.9, -88.8, -87.3, -20.0, -3.0, -0.5, -1e-3,
         -1e-30, 0.0, 1e-30, 3e-4, 0.25, 1.0, 5.0, 17.0, 40.0, 87.3, 88.8, 89.5, 103.9, 104.5,
         200.0, 1e4, math.inf, math.nan]
H = 48  # three vectors of units
B = 64  # rows of the cell step
T, BL = 16, 4  # steps and rows of the layer: 64 rows, enough for the prepared engines, and few
               # enough for small_batch
TOL = {torch.float32: 2e-6, torch.bfloat16: 1e-2}


def inputs(dtype, B=B, recurrent=False):
    """x (B, H), c_{t-1} (B, H) and the gates' pre-activations (4H,), each
    rounded to dtype. recurrent: for more than one step, where h_t feeds the
    next step's product and a NaN in it would reach every unit of its row:
    no NaN pre-activation and a finite c_{t-1} (±inf pre-activations still
    give a finite h_t)."""
    g = torch.Generator().manual_seed(0)
    edges = torch.tensor(EDGES, dtype=torch.float64)
    pre_edges = edges[~edges.isnan()] if recurrent else edges
    c_edges = edges[edges.isfinite()] if recurrent else edges
    pre = pre_edges[torch.randint(len(pre_edges), (4 * H,), generator=g)]
    pre[:len(pre_edges)] = pre_edges  # every edge in the input gate at least
    c = torch.randn(B, H, generator=g, dtype=torch.float64) * 3
    c[0, :len(c_edges)] = c_edges  # c_{t-1} at the edges too
    x = torch.randn(B, H, generator=g, dtype=torch.float64)
    return x.to(dtype), c.to(dtype), pre.to(dtype)


def expected(c, pre, steps=1, dtype=None):
    """h_t (each step's) and c_t (the last) of the equations in float64, the
    same pre-activations at every step; c_t rounded to dtype after each step
    but the last, as it is stored."""
    i, f, g, o = pre.double().view(4, H)
    hs = []
    for t in range(steps):
        if t:
            c = c1.to(dtype)
        c1 = torch.sigmoid(f) * c.double() + torch.sigmoid(i) * torch.tanh(g)
        hs.append(torch.sigmoid(o) * torch.tanh(c1))
    return torch.stack(hs), c1


def set_params(w_ih, w_hh, b_ih, b_hh, pre):
    w_ih.zero_()
    w_hh.zero_()
    b_ih.copy_(pre)
    b_hh.zero_()


def run_cell(dtype):
    """(h_t,) and c_t of one LSTMCell step, and what the equations give."""
    x, c, pre = inputs(dtype)
    cell = lstm_fused.LSTMCell(H, H).to(dtype)
    with torch.no_grad():
        set_params(cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh, pre)
        h1, c1 = cell(x, (torch.randn(B, H).to(dtype), c))
    return (h1[None], c1), expected(c, pre)


def run_layer(dtype):
    """Every step's h_t and the last c_t of a layer of T steps, and what the
    equations give."""
    x, c, pre = inputs(dtype, BL, recurrent=True)
    lstm = lstm_fused.LSTM(H, H).to(dtype)
    with torch.no_grad():
        set_params(lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0, pre)
        out, (_, c1) = lstm(x.expand(T, BL, H), (torch.randn(1, BL, H).to(dtype), c[None]))
    return (out, c1[0]), expected(c, pre, T, dtype)


def check(got, want, dtype, what):
    got = got.double()
    assert torch.equal(got.isnan(), want.isnan()), f"{what}: NaN in other places than the equations'"
    ok = ~want.isnan()
    assert torch.equal(got[ok].isinf(), want[ok].isinf()) and \
        torch.equal(got[ok][want[ok].isinf()], want[ok][want[ok].isinf()]), f"{what}: infinities differ"
    fin = ok & ~want.isinf()
    err = ((got[fin] - want[fin]).abs() / (1 + want[fin].abs())).max().item()
    assert err <= TOL[dtype], f"{what}: error {err:.3g} > {TOL[dtype]:.3g}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kind,engine", [("cell", "mkl"), ("cell", "small_batch"), ("cell", "aten"),
                                         ("layer", "mkl"), ("layer", "onednn"),
                                         ("layer", "small_batch"), ("layer", "aten"),
                                         ("layer", "onednn_linear")])
def test_activations_at_the_edges(kind, engine, dtype):
    if not lstm_fused.cpu_engine_available(engine, dtype):
        pytest.skip(f"the {engine} engine does not run {dtype} on this CPU")
    before = lstm_fused.cpu_engine_counts()[engine]
    with lstm_fused.use_cpu_engine(engine):
        (h, c), (h_want, c_want) = (run_cell if kind == "cell" else run_layer)(dtype)
    if kind == "layer" or dtype == torch.float32:  # a bfloat16 cell step runs on aten only
        assert lstm_fused.cpu_engine_counts()[engine] > before, f"{engine} did not run"
    check(c, c_want, dtype, "c_t")
    check(h, h_want, dtype, "h_t")
