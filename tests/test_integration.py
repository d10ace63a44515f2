"""PyTorch integration: opcheck for every op, torch.compile(fullgraph=True),
autocast."""
import pytest
import torch

import lstm_fused
from conftest import cell_pair, make_pair

ops = torch.ops.lstm_fused


def _t(*shape, grad=False, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype, requires_grad=grad)


def layer_samples(grad):
    T, B, I, H, P = 3, 2, 4, 5, 3
    yield (_t(T, B, I, grad=grad), _t(B, H, grad=grad), _t(B, H, grad=grad), _t(4 * H, I, grad=grad),
           _t(4 * H, H, grad=grad), _t(4 * H, grad=grad), _t(4 * H, grad=grad), None, None, False, grad)
    yield (_t(T, B, I, grad=grad), _t(B, P, grad=grad), _t(B, H, grad=grad), _t(4 * H, I, grad=grad),
           _t(4 * H, P, grad=grad), None, None, _t(P, H, grad=grad), torch.tensor([3, 1]), True, grad)


def cell_samples(grad):
    B, I, H = 3, 4, 5
    yield (_t(B, I, grad=grad), _t(B, H, grad=grad), _t(B, H, grad=grad), _t(4 * H, I, grad=grad),
           _t(4 * H, H, grad=grad), _t(4 * H, grad=grad), _t(4 * H, grad=grad), grad)


@pytest.mark.parametrize("grad", [False, True])
def test_opcheck_layer(grad):
    for args in layer_samples(grad):
        torch.library.opcheck(ops.lstm_layer.default, args)


@pytest.mark.parametrize("grad", [False, True])
def test_opcheck_cell(grad):
    for args in cell_samples(grad):
        torch.library.opcheck(ops.lstm_cell.default, args)


def test_opcheck_backward_ops():
    for args in layer_samples(True):
        out, hn, cn, gates, cells = ops.lstm_layer(*args)
        input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse, _ = [
            a.detach() if isinstance(a, torch.Tensor) else a for a in args
        ]
        bargs = (torch.randn_like(out), torch.randn_like(hn), torch.randn_like(cn), input, h0, c0, w_ih, w_hh,
                 w_hr, lengths, out.detach(), gates.detach(), cells.detach(), b_ih is not None, reverse)
        torch.library.opcheck(ops.lstm_layer_backward.default, bargs)
    for args in cell_samples(True):
        hy, cy, gates = ops.lstm_cell(*args)
        input, hx, cx, w_ih, w_hh = (a.detach() for a in args[:5])
        bargs = (torch.randn_like(hy), torch.randn_like(cy), input, hx, cx, w_ih, w_hh, cy.detach(), gates.detach(), True)
        torch.library.opcheck(ops.lstm_cell_backward.default, bargs)


class Tagger(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = lstm_fused.LSTM(6, 8, num_layers=2, bidirectional=True, batch_first=True)
        self.head = torch.nn.Linear(16, 3)

    def forward(self, x):
        out, (h, c) = self.lstm(x)
        return self.head(out).sum() + h.sum() + c.sum()


def test_compile_fullgraph_dynamic_shapes():
    torch._dynamo.reset()
    model = Tagger()
    compiled = torch.compile(model, fullgraph=True, dynamic=True, backend="aot_eager")
    for B, T in [(2, 5), (3, 7), (1, 4)]:
        x = torch.randn(B, T, 6)
        want = model(x)
        want_grads = torch.autograd.grad(want, list(model.parameters()))
        got = compiled(x)
        got_grads = torch.autograd.grad(got, list(model.parameters()))
        torch.testing.assert_close(got, want)
        for a, b in zip(got_grads, want_grads):
            torch.testing.assert_close(a, b)


def test_compile_inductor_cell():
    torch._dynamo.reset()
    cell = lstm_fused.LSTMCell(4, 6)

    def step(x, h, c):
        for _ in range(3):
            h, c = cell(x, (h, c))
        return h

    x, h, c = torch.randn(2, 4), torch.randn(2, 6), torch.randn(2, 6)
    compiled = torch.compile(step, fullgraph=True)
    torch.testing.assert_close(compiled(x, h, c), step(x, h, c))


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.trace is deprecated
@pytest.mark.parametrize("trace_grad_mode", [True, False], ids=["grad", "no_grad"])
def test_jit_trace(trace_grad_mode):
    """A traced model gives nn.LSTM's outputs and gradients, and differentiates
    even when traced under no_grad (the trace's own check runs under no_grad)."""
    ref, ours, _ = make_pair(torch.float32, input_size=4, hidden_size=5, num_layers=2, bidirectional=True)
    with torch.set_grad_enabled(trace_grad_mode):
        traced = torch.jit.trace(ours, (torch.randn(6, 3, 4),))
    x = torch.randn(6, 3, 4, requires_grad=True)
    got, want = traced(x), ref(x)
    torch.testing.assert_close(got, want)
    got_g = torch.autograd.grad(got[0].sum() + got[1][1].sum(), [x] + list(ours.parameters()))
    want_g = torch.autograd.grad(want[0].sum() + want[1][1].sum(), [x] + list(ref.parameters()))
    torch.testing.assert_close(got_g, want_g)

    ref_cell, cell, _ = cell_pair(4, 5, True, torch.float32)
    hx = (torch.randn(3, 5), torch.randn(3, 5))
    with torch.set_grad_enabled(trace_grad_mode):
        traced_cell = torch.jit.trace(cell, (torch.randn(3, 4), hx))
    torch.testing.assert_close(traced_cell(x[0], hx), ref_cell(x[0], hx))


def test_export():
    model = Tagger()
    exported = torch.export.export(model, (torch.randn(2, 5, 6),))
    x = torch.randn(2, 5, 6)
    torch.testing.assert_close(exported.module()(x), model(x))


def test_autocast_cpu_bfloat16():
    ref = torch.nn.LSTM(5, 7, num_layers=2)
    ours = lstm_fused.LSTM(5, 7, num_layers=2)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(4, 3, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, (ha, ca) = ours(x)
        b, (hb, cb) = ref(x)
    assert a.dtype == b.dtype == torch.bfloat16
    assert ha.dtype == hb.dtype
    torch.testing.assert_close(a.float(), b.float(), rtol=0, atol=5e-2)
    a.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in ours.parameters())


def test_autocast_cell_runs_in_low_precision():
    cell = lstm_fused.LSTMCell(3, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h, c = cell(torch.randn(2, 3))
    assert h.dtype == c.dtype == torch.bfloat16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_autocast_cuda(dtype):
    ref = torch.nn.LSTM(5, 7, num_layers=2).cuda()
    ours = lstm_fused.LSTM(5, 7, num_layers=2).cuda()
    ours.load_state_dict(ref.state_dict())
    cell = lstm_fused.LSTMCell(5, 7).cuda()
    x = torch.randn(4, 3, 5, device="cuda")
    with torch.autocast("cuda", dtype=dtype):
        a, (ha, ca) = ours(x)
        b, _ = ref(x)
        h, c = cell(x[0])
    assert a.dtype == b.dtype == ha.dtype == ca.dtype == h.dtype == dtype
    torch.testing.assert_close(a.float(), b.float(), rtol=0, atol=5e-2)
    a.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in ours.parameters())
