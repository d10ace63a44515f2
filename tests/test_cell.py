"""lstm_fused.LSTMCell against torch.nn.LSTMCell, and gradcheck of the ops."""
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import lstm_fused
from conftest import assert_close_to_reference, cell_pair

ops = torch.ops.lstm_fused


def run_cell(model, x, hx, dtype):
    x = x.to(dtype).requires_grad_()
    hx = None if hx is None else tuple(t.to(dtype).requires_grad_() for t in hx)
    h, c = model(x, hx)
    loss = (h.double() * torch.linspace(-1, 1, h.numel(), dtype=torch.float64).view(h.shape)).sum() + c.double().cos().sum()
    inputs = [x] + ([] if hx is None else list(hx))
    return [h, c] + list(torch.autograd.grad(loss, inputs + list(model.parameters())))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("I,H", [(1, 1), (7, 33), (33, 97), (256, 256)])
@pytest.mark.parametrize("B", [1, 8])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_hx", [True, False])
def test_cell_matches_nn(dtype, I, H, B, bias, with_hx):
    ref, ours, ref64 = cell_pair(I, H, bias, dtype)
    x = torch.randn(B, I, dtype=torch.float64)
    hx = (torch.randn(B, H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)) if with_hx else None
    got, theirs, want = (run_cell(m, x, hx, d) for m, d in ((ours, dtype), (ref, dtype), (ref64, torch.float64)))
    labels = ["h'", "c'", "grad input"] + (["grad h", "grad c"] if with_hx else []) + [n for n, _ in ours.named_parameters()]
    for name, a, b, r in zip(labels, got, theirs, want):
        assert_close_to_reference(a, b, r, dtype, name)


@pytest.mark.parametrize("engine", ["mkl", "small_batch", "aten"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("B,I,H", [(1, 1, 1), (8, 33, 97), (3, 256, 256), (64, 40, 48), (6, 17, 30)])
def test_cell_engines(engine, dtype, B, I, H):
    """Each cell engine forced and seen to run once per step: mkl and
    small_batch (float only: the other types run on aten) with blocks of 16
    units per thread, a partial last block (H = 97, 30, 1), partial tiles of
    4 rows and 4 units and K not a multiple of the vector (I = 17, 33), and
    aten."""
    ref, ours, ref64 = cell_pair(I, H, True, dtype)
    x = torch.randn(B, I, dtype=torch.float64)
    hx = (torch.randn(B, H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64))
    runs = dtype == torch.float32 and lstm_fused.cpu_engine_available(engine, dtype)
    ran = engine if runs else "aten"
    before = lstm_fused.cpu_engine_counts()
    with lstm_fused.use_cpu_engine(engine):
        got = run_cell(ours, x, hx, dtype)
    after = lstm_fused.cpu_engine_counts()
    assert after[ran] - before[ran] == 1, after
    assert sum(after.values()) - sum(before.values()) == 1, after
    theirs, want = run_cell(ref, x, hx, dtype), run_cell(ref64, x, hx, torch.float64)
    labels = ["h'", "c'", "grad input", "grad h", "grad c"] + [n for n, _ in ours.named_parameters()]
    for name, a, b, r in zip(labels, got, theirs, want):
        assert_close_to_reference(a, b, r, dtype, name)


def test_cell_engine_choice_is_timed_once():
    torch.ops.lstm_fused._cpu_clear_engine_choices()
    cell = lstm_fused.LSTMCell(24, 40)
    x, hx = torch.randn(6, 24), (torch.randn(6, 40), torch.randn(6, 40))
    first = cell(x, hx)
    choices = lstm_fused.cpu_engine_choices()
    assert [c for c in choices if c.startswith("cell step Float B=6 N=160 K=64")], choices
    second = cell(x, hx)
    assert lstm_fused.cpu_engine_choices() == choices
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_cell_deterministic_algorithms_fix_the_engine():
    """Under deterministic algorithms the first engine of the fixed order runs
    (mkl for float32) without timing."""
    if not lstm_fused.cpu_engine_available("mkl", torch.float32):
        pytest.skip("this torch build has no MKL")
    torch.ops.lstm_fused._cpu_clear_engine_choices()
    cell = lstm_fused.LSTMCell(24, 40)
    x, hx = torch.randn(6, 24), (torch.randn(6, 40), torch.randn(6, 40))
    torch.use_deterministic_algorithms(True)
    try:
        before = lstm_fused.cpu_engine_counts()
        first, second = cell(x, hx), cell(x, hx)
        assert lstm_fused.cpu_engine_counts()["mkl"] - before["mkl"] == 2
    finally:
        torch.use_deterministic_algorithms(False)
    assert lstm_fused.cpu_engine_choices() == []
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_cell_unbatched():
    ref, ours, _ = cell_pair(3, 4, True, torch.float32)
    x = torch.randn(3)
    hx = (torch.randn(4), torch.randn(4))
    for args in [(x,), (x, hx)]:
        a, b = ours(*args), ref(*args)
        assert a[0].shape == b[0].shape == (4,)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _double(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("bias", [True, False])
def test_cell_gradcheck(bias):
    B, I, H = 3, 4, 5
    args = [_double(B, I), _double(B, H), _double(B, H), _double(4 * H, I), _double(4 * H, H)]
    args += [_double(4 * H), _double(4 * H)] if bias else [None, None]
    assert gradcheck(lambda *a: ops.lstm_cell(*a, True)[:2], args)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("proj", [False, True])
def test_layer_gradcheck(reverse, proj):
    T, B, I, H, P = 4, 2, 3, 5, 3
    Pw = P if proj else H
    w_hr = _double(P, H) if proj else None
    args = [_double(T, B, I), _double(B, Pw), _double(B, H), _double(4 * H, I), _double(4 * H, Pw),
            _double(4 * H), _double(4 * H), w_hr]
    fn = lambda *a: ops.lstm_layer(*a, None, reverse, True)[:3]  # noqa: E731
    assert gradcheck(fn, args)


def test_layer_double_backward():
    T, B, I, H = 3, 2, 3, 4
    args = [_double(T, B, I), _double(B, H), _double(B, H), _double(4 * H, I), _double(4 * H, H), _double(4 * H), _double(4 * H)]
    fn = lambda *a: ops.lstm_layer(*a, None, None, False, True)[:3]  # noqa: E731
    assert gradgradcheck(fn, args)


def test_cell_double_backward():
    B, I, H = 2, 3, 4
    args = [_double(B, I), _double(B, H), _double(B, H), _double(4 * H, I), _double(4 * H, H), _double(4 * H), _double(4 * H)]
    assert gradgradcheck(lambda *a: ops.lstm_cell(*a, True)[:2], args)


def test_module_double_backward_matches_reference():
    ours = lstm_fused.LSTM(3, 4, num_layers=2, bidirectional=True).double()
    ref = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True).double()
    ref.load_state_dict(ours.state_dict())

    def second(model, x):
        out = model(x)[0]
        (g,) = torch.autograd.grad(out.pow(2).sum(), x, create_graph=True)
        return torch.autograd.grad(g.pow(2).sum(), list(model.parameters()))

    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    with torch.backends.cudnn.flags(enabled=False):
        for a, b in zip(second(ours, x), second(ref, x)):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
