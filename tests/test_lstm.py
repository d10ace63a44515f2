"""lstm_fused.LSTM against torch.nn.LSTM with the same weights: outputs, final
states and every gradient, against a float64 run of torch.nn.LSTM."""
import itertools

import pytest
import torch

import lstm_fused
from conftest import assert_close_to_reference, make_pair

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


def run(model, x, hx, dtype):
    x = x.detach().to(dtype).requires_grad_()
    hx = None if hx is None else tuple(t.detach().to(dtype).requires_grad_() for t in hx)
    out, (h, c) = model(x, hx)
    # A loss that weights every output element differently.
    w_out = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view(out.shape)
    loss = (out.double() * w_out).sum() + h.double().sin().sum() + (c.double() * 0.5).sum()
    params = list(model.parameters())
    inputs = [x] + ([] if hx is None else list(hx))
    grads = torch.autograd.grad(loss, inputs + params)
    return [out, h, c] + list(grads)


def names(model, hx):
    return ["output", "h_n", "c_n", "grad input"] + (["grad h0", "grad c0"] if hx is not None else []) + [
        f"grad {n}" for n, _ in model.named_parameters()
    ]


def check(dtype, T, B, kw, with_hx, batch_first=False):
    ref, ours, ref64 = make_pair(dtype, batch_first=batch_first, **kw)
    D = 2 if kw.get("bidirectional") else 1
    L = kw.get("num_layers", 1)
    P = kw.get("proj_size", 0) or kw["hidden_size"]
    shape = (B, T, kw["input_size"]) if batch_first else (T, B, kw["input_size"])
    x = torch.randn(shape, dtype=torch.float64)
    hx = (torch.randn(L * D, B, P, dtype=torch.float64), torch.randn(L * D, B, kw["hidden_size"], dtype=torch.float64)) if with_hx else None
    got = run(ours, x, hx, dtype)
    theirs = run(ref, x, hx, dtype)
    want = run(ref64, x, hx, torch.float64)
    for name, a, b, r in zip(names(ours, hx), got, theirs, want):
        assert_close_to_reference(a, b, r, dtype, name)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, False), (1, True), (2, True)])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_nn_lstm(dtype, num_layers, bidirectional, batch_first, bias):
    kw = dict(input_size=7, hidden_size=33, num_layers=num_layers, bidirectional=bidirectional, bias=bias)
    check(dtype, T=5, B=3, kw=kw, with_hx=bias, batch_first=batch_first)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("I,H", [(1, 1), (7, 1), (1, 7), (33, 97), (97, 33)])
@pytest.mark.parametrize("B", [1, 7])
@pytest.mark.parametrize("with_hx", [False, True])
def test_odd_sizes(dtype, I, H, B, with_hx):
    check(dtype, T=4, B=B, kw=dict(input_size=I, hidden_size=H), with_hx=with_hx)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("T", [1, 2, 60])
def test_sequence_lengths(dtype, T):
    check(dtype, T=T, B=2, kw=dict(input_size=5, hidden_size=16), with_hx=True)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_16bit_long_enough_to_pack(dtype, bidirectional):
    """T·B >= 64 rows: the 16-bit per-step GEMM runs on the packed float weight
    (the other 16-bit cases are too short to pack)."""
    check(dtype, T=20, B=5, kw=dict(input_size=7, hidden_size=33, bidirectional=bidirectional), with_hx=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
def test_proj_size(dtype, num_layers, bidirectional):
    kw = dict(input_size=6, hidden_size=12, proj_size=5, num_layers=num_layers, bidirectional=bidirectional)
    check(dtype, T=5, B=3, kw=kw, with_hx=True)


def test_unbatched_input():
    ref, ours, _ = make_pair(torch.float32, input_size=4, hidden_size=6, num_layers=2)
    x = torch.randn(5, 4)
    hx = (torch.randn(2, 6), torch.randn(2, 6))
    for args in [(x,), (x, hx)]:
        a, (ha, ca) = ours(*args)
        b, (hb, cb) = ref(*args)
        assert a.shape == b.shape == (5, 6) and ha.shape == hb.shape == (2, 6)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ca, cb, rtol=1e-5, atol=1e-5)


def test_non_contiguous_input():
    ref, ours, _ = make_pair(torch.float32, input_size=4, hidden_size=6)
    x = torch.randn(4, 5, 3).permute(1, 2, 0)  # (5, 3, 4), strided
    assert not x.is_contiguous()
    torch.testing.assert_close(ours(x)[0], ref(x)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", ["transposed", "strided"])
@pytest.mark.parametrize("B", [3, 20])
def test_weights_in_other_layouts(layout, B):
    """Weights that are views in another memory layout (a transposed copy seen
    through .t(), every other row of a larger matrix) give nn.LSTM's numbers."""
    ref, _, ref64 = make_pair(torch.float32, input_size=5, hidden_size=9)
    def relayout(w):
        w = w.detach()
        if w.dim() == 2 and layout == "transposed":
            w = w.t().contiguous().t()
        elif w.dim() == 2:
            w = torch.zeros(2 * w.shape[0], w.shape[1]).index_copy(0, torch.arange(0, 2 * w.shape[0], 2), w)[::2]
        else:
            w = w.clone()
        assert w.dim() == 1 or not w.is_contiguous()
        return w.requires_grad_()

    weights = [relayout(w) for w in ref._flat_weights]
    x = torch.randn(7, B, 5)
    out, (h, c) = lstm_fused.lstm(x, weights)
    out64, (h64, c64) = ref64(x.double())
    for a, b, what in ((out, out64, "output"), (h, h64, "h_n"), (c, c64, "c_n")):
        assert_close_to_reference(a, None, b, torch.float32, what)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, weights, g)
    grads64 = torch.autograd.grad(out64, list(ref64.parameters()), g.double())
    for a, b, (n, _) in zip(grads, grads64, ref64.named_parameters()):
        assert_close_to_reference(a, None, b, torch.float32, f"grad {n}")


def test_dropout_between_layers():
    ours = lstm_fused.LSTM(4, 8, num_layers=3, dropout=0.5)
    x = torch.randn(6, 2, 4)
    ours.eval()
    ref = torch.nn.LSTM(4, 8, num_layers=3, dropout=0.5).eval()
    ref.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(x)[0], ref(x)[0], rtol=1e-5, atol=1e-5)
    ours.train()
    torch.manual_seed(0)
    a = ours(x)[0]
    torch.manual_seed(0)
    b = ours(x)[0]
    assert torch.equal(a, b), "dropout under a fixed seed must be reproducible"
    assert not torch.allclose(a, ref(x)[0]), "training mode must apply dropout"


def test_zero_batch_matches_nn():
    ref, ours, _ = make_pair(torch.float32, input_size=3, hidden_size=5)
    x = torch.randn(4, 0, 3)
    a, (ha, ca) = ours(x)
    b, (hb, cb) = ref(x)
    assert a.shape == b.shape and ha.shape == hb.shape and ca.shape == cb.shape


def test_zero_length_matches_nn():
    ref, ours, _ = make_pair(torch.float32, input_size=3, hidden_size=5)
    x = torch.randn(0, 2, 3)
    try:
        expected = ref(x)
    except RuntimeError:
        with pytest.raises(RuntimeError):
            ours(x)
        return
    got = ours(x)
    assert got[0].shape == expected[0].shape


# (H, B): scalar tail only; the small-batch fused step; vectors and a tail; vectors
@pytest.mark.parametrize("H,B", [(5, 2), (16, 2), (37, 2), (64, 8)])
def test_nan_propagates_like_nn(H, B):
    ref, ours, _ = make_pair(torch.float32, input_size=3, hidden_size=H)
    x = torch.randn(4, B, 3)
    x[1, 0, 0] = float("nan")
    x[2, 1, 1] = float("inf")
    a = ours(x)[0]
    b = ref(x)[0]
    assert torch.equal(torch.isnan(a), torch.isnan(b))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, equal_nan=True)


def test_no_grad_inference_matches():
    ref, ours, _ = make_pair(torch.float32, input_size=8, hidden_size=16, num_layers=2, bidirectional=True)
    x = torch.randn(7, 3, 8)
    with torch.no_grad():
        a = ours(x)
        b = ref(x)
    torch.testing.assert_close(a[0], b[0], rtol=1e-5, atol=1e-5)
    assert not a[0].requires_grad


def test_deterministic_bits():
    ours = lstm_fused.LSTM(16, 32, num_layers=2, bidirectional=True)
    x = torch.randn(9, 4, 16, requires_grad=True)

    def once():
        out, (h, c) = ours(x)
        grads = torch.autograd.grad(out.sum() + h.sum() + c.sum(), [x, *ours.parameters()])
        return [out, h, c, *grads]

    for a, b in itertools.zip_longest(once(), once()):
        assert torch.equal(a, b)


def test_outputs_held_across_calls_stay_intact():
    # Large buffers come from a reuse cache: outputs the caller still holds
    # must never be handed out again.
    m = lstm_fused.LSTM(64, 256)  # output of 1.3 MB: large enough to be cached
    x1, x2 = torch.randn(40, 32, 64), torch.randn(40, 32, 64)
    with torch.no_grad():
        first = m(x1)[0]
        snapshot = first.clone()
        for _ in range(3):
            second = m(x2)[0]
    assert first.data_ptr() != second.data_ptr()
    assert torch.equal(first, snapshot)
    del first, second
    with torch.no_grad():
        torch.testing.assert_close(m(x1)[0], snapshot)
