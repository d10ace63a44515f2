"""Only the gradients that are needed: an input that needs no gradient gets no
dx GEMM, frozen weights get no weight GEMMs; what is computed still matches
torch.nn.LSTM and a float64 run of it."""
import pytest
import torch

from conftest import assert_close_to_reference, cell_pair, make_pair

ops = torch.ops.lstm_fused


def layer_args(T=6, B=3, I=5, H=8, proj=0, dtype=torch.float32):
    P = proj or H
    x = torch.randn(T, B, I, dtype=dtype)
    h0, c0 = torch.randn(B, P, dtype=dtype), torch.randn(B, H, dtype=dtype)
    w_ih, w_hh = torch.randn(4 * H, I, dtype=dtype) * 0.3, torch.randn(4 * H, P, dtype=dtype) * 0.3
    b_ih, b_hh = torch.randn(4 * H, dtype=dtype), torch.randn(4 * H, dtype=dtype)
    w_hr = torch.randn(P, H, dtype=dtype) * 0.3 if proj else None
    return x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr


def assert_only_asked(got, full, asked):
    """Each output of a backward op asked for equals the full backward's; the
    others are empty."""
    for i, (a, f, want) in enumerate(zip(got, full, asked)):
        if want:
            assert torch.equal(a, f), f"output {i} differs from the full backward"
        else:
            assert a.numel() == 0, f"output {i} was computed though not asked for"


@pytest.mark.parametrize("need_input,need_weights", [(True, True), (False, True), (True, False), (False, False)])
@pytest.mark.parametrize("proj", [0, 4])
def test_backward_op_returns_what_is_asked(need_input, need_weights, proj):
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr = layer_args(proj=proj)
    out, hn, cn, gates, cells = ops.lstm_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, None, False, True)
    go, ghn, gcn = torch.randn_like(out), torch.randn_like(hn), torch.randn_like(cn)
    full = ops.lstm_layer_backward(go, ghn, gcn, x, h0, c0, w_ih, w_hh, w_hr, None, out, gates, cells, True, False)
    args = (go, ghn, gcn, x, h0, c0, w_ih, w_hh, w_hr, None, out, gates, cells, True, False, need_input, need_weights)
    got = ops.lstm_layer_backward(*args)
    assert_only_asked(got, full, [need_input, True, True, need_weights, need_weights, need_weights,
                                  need_weights and proj > 0])
    torch.library.opcheck(ops.lstm_layer_backward.default, args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("input_grad", [False, True])
def test_partial_gradients_match_nn(dtype, frozen, input_grad):
    kw = dict(input_size=6, hidden_size=16, num_layers=2)
    ref, ours, ref64 = make_pair(dtype, **kw)
    for m in (ref, ours, ref64):
        m.requires_grad_(not frozen)
    x = torch.randn(9, 4, 6, dtype=torch.float64)
    h0 = torch.randn(2, 4, 16, dtype=torch.float64)

    def grads(model, dt):
        xi = x.to(dt).requires_grad_(input_grad)
        hi = h0.to(dt).requires_grad_()
        out, (h, c) = model(xi, (hi, torch.zeros_like(hi)))
        wrt = [hi] + ([xi] if input_grad else []) + [p for p in model.parameters() if p.requires_grad]
        loss = (out.double() * torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view(out.shape)).sum()
        return torch.autograd.grad(loss + h.double().sum(), wrt)

    got, theirs, want = grads(ours, dtype), grads(ref, dtype), grads(ref64, torch.float64)
    assert len(got) == len(want)
    for i, (a, b, r) in enumerate(zip(got, theirs, want)):
        assert_close_to_reference(a, b, r, dtype, f"gradient {i}")


def test_autograd_asks_only_for_what_is_needed():
    """A first layer on raw features (x without grad) under frozen weights:
    the backward op is asked for neither dx nor the weight gradients."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.flags = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is ops.lstm_layer_backward.default:
                given = list(args[15:17])  # defaults (True) are left out of args
                self.flags.append(tuple(given + [True] * (2 - len(given))))
            return func(*args, **(kwargs or {}))

    _, ours, _ = make_pair(torch.float32, input_size=6, hidden_size=16, num_layers=2)
    x = torch.randn(9, 4, 6)
    for frozen, want in [(False, [(True, True), (False, True)]), (True, [(True, False), (False, False)])]:
        ours.requires_grad_(not frozen)
        h0 = torch.randn(2, 4, 16, requires_grad=True)
        out, _ = ours(x, (h0, torch.zeros_like(h0)))
        with Record() as rec:
            out.sum().backward()
        assert rec.flags == want  # layer 1 (its input is layer 0's output) first


def cell_args(B=3, I=5, H=8, dtype=torch.float32):
    x, h, c = torch.randn(B, I, dtype=dtype), torch.randn(B, H, dtype=dtype), torch.randn(B, H, dtype=dtype)
    w_ih, w_hh = torch.randn(4 * H, I, dtype=dtype) * 0.3, torch.randn(4 * H, H, dtype=dtype) * 0.3
    return x, h, c, w_ih, w_hh, torch.randn(4 * H, dtype=dtype), torch.randn(4 * H, dtype=dtype)


@pytest.mark.parametrize("need_input,need_hx,need_weights",
                         [(True, True, True), (False, True, True), (True, False, True), (True, True, False),
                          (False, False, False)])
def test_cell_backward_op_returns_what_is_asked(need_input, need_hx, need_weights):
    x, h, c, w_ih, w_hh, b_ih, b_hh = cell_args()
    hy, cy, gates = ops.lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh, True)
    ghy, gcy = torch.randn_like(hy), torch.randn_like(cy)
    full = ops.lstm_cell_backward(ghy, gcy, x, h, c, w_ih, w_hh, cy, gates, True)
    args = (ghy, gcy, x, h, c, w_ih, w_hh, cy, gates, True, need_input, need_hx, need_weights)
    got = ops.lstm_cell_backward(*args)
    assert_only_asked(got, full, [need_input, need_hx, True, need_weights, need_weights, need_weights, False])
    torch.library.opcheck(ops.lstm_cell_backward.default, args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("input_grad", [False, True])
@pytest.mark.parametrize("state_grad", [False, True])
def test_cell_partial_gradients_match_nn(dtype, frozen, input_grad, state_grad):
    ref, ours, ref64 = cell_pair(6, 16, True, dtype)
    for m in (ref, ours, ref64):
        m.requires_grad_(not frozen)
    x, h, c = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 16, dtype=torch.float64), torch.randn(4, 16, dtype=torch.float64)

    def grads(model, dt):
        xi = x.to(dt).requires_grad_(input_grad)
        hi, ci = h.to(dt).requires_grad_(state_grad), c.to(dt).requires_grad_()
        hy, cy = model(xi, (hi, ci))
        wrt = [ci] + ([xi] if input_grad else []) + ([hi] if state_grad else []) + \
            [p for p in model.parameters() if p.requires_grad]
        loss = (hy.double() * torch.linspace(-1, 1, hy.numel(), dtype=torch.float64).view(hy.shape)).sum()
        return torch.autograd.grad(loss + cy.double().cos().sum(), wrt)

    got, theirs, want = grads(ours, dtype), grads(ref, dtype), grads(ref64, torch.float64)
    assert len(got) == len(want)
    for i, (a, b, r) in enumerate(zip(got, theirs, want)):
        assert_close_to_reference(a, b, r, dtype, f"gradient {i}")


def test_cell_autograd_asks_only_for_what_is_needed():
    """A cell step on raw features from a zero state that needs no gradient,
    under frozen weights: the backward op is asked for none of dx, dh, dW."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.flags = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is ops.lstm_cell_backward.default:
                given = list(args[10:13])  # defaults (True) are left out of args
                self.flags.append(tuple(given + [True] * (3 - len(given))))
            return func(*args, **(kwargs or {}))

    _, ours, _ = cell_pair(6, 16, True, torch.float32)
    x = torch.randn(4, 6)
    for frozen, x_grad, h_grad, want in [(False, True, True, (True, True, True)),
                                          (False, False, True, (False, True, True)),
                                          (True, False, False, (False, False, False))]:
        ours.requires_grad_(not frozen)
        h = torch.randn(4, 16, requires_grad=h_grad)
        c = torch.randn(4, 16, requires_grad=True)
        hy, cy = ours(x.clone().requires_grad_(x_grad), (h, c))
        with Record() as rec:
            (hy.sum() + cy.sum()).backward()
        assert rec.flags == [want]
