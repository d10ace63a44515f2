"""torch.func transforms (grad, vmap, jacrev, jacfwd, hessian) over lstm_fused
modules, against the same transforms over torch.nn.LSTM / LSTMCell."""
import pytest
import torch
from torch.func import functional_call, grad, hessian, jacfwd, jacrev, vmap

import lstm_fused
from conftest import cell_pair, make_pair


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize(
    "kw",
    [dict(num_layers=2, bidirectional=True), dict(proj_size=3), dict(batch_first=True, bias=False)],
    ids=["2layer_bidir", "proj", "batch_first_nobias"],
)
def test_grad_of_functional_call(kw):
    ref, ours, _ = make_pair(torch.float64, input_size=4, hidden_size=5, **kw)
    x = torch.randn(3, 6, 4, dtype=torch.float64)
    w_out = torch.randn(6, 3, 1, dtype=torch.float64)

    def loss(model):
        def f(params):
            out, (h, c) = functional_call(model, params, (x,))
            return (out.transpose(0, 1) * w_out).sum() + h.pow(2).sum() + c.sum()
        return f

    want = grad(loss(ref))(dict(ref.named_parameters()))
    got = grad(loss(ours))(dict(ours.named_parameters()))
    assert got.keys() == want.keys()
    for name in want:
        close(got[name], want[name])


def test_per_sample_gradients():
    """vmap(grad): the per-sample gradients of private or meta-learning training
    (torch.nn.LSTM cannot run under vmap: the reference is a loop of autograd)."""
    ref, ours, _ = make_pair(torch.float64, input_size=4, hidden_size=5, batch_first=True)
    xs = torch.randn(5, 7, 4, dtype=torch.float64)  # 5 samples of 7 steps
    ys = torch.randn(5, 5, dtype=torch.float64)

    def loss(model, params, x, y):
        _, (h, _) = functional_call(model, params, (x.unsqueeze(0),))
        return ((h[-1, 0] - y) ** 2).sum()

    params = {k: v.detach() for k, v in ours.named_parameters()}
    got = vmap(grad(lambda p, x, y: loss(ours, p, x, y)), in_dims=(None, 0, 0))(params, xs, ys)
    for n in range(5):
        want = torch.autograd.grad(loss(ref, dict(ref.named_parameters()), xs[n], ys[n]),
                                   list(ref.parameters()))
        for (name, _), w in zip(ref.named_parameters(), want):
            close(got[name][n], w)


def test_lengths_under_grad():
    """Per-sequence lengths (lstm_fused.lstm's lengths=, what a PackedSequence
    becomes) under torch.func.grad, against autograd of torch.nn.LSTM on the
    packed batch (packing itself does not run under torch.func)."""
    ref, ours, _ = make_pair(torch.float64, input_size=3, hidden_size=4)
    x = torch.randn(6, 3, 3, dtype=torch.float64)
    lengths = torch.tensor([4, 6, 2])
    weights = [w.detach() for w in ours._flat_weights]

    def ours_loss(x):
        out, (h, c) = lstm_fused.lstm(x, weights, lengths=lengths)
        return out.sum() + h.sum() + c.pow(2).sum()

    xr = x.clone().requires_grad_()
    packed = torch.nn.utils.rnn.pack_padded_sequence(xr, lengths, enforce_sorted=False)
    out, (h, c) = ref(packed)
    padded, _ = torch.nn.utils.rnn.pad_packed_sequence(out)
    (want,) = torch.autograd.grad(padded.sum() + h.sum() + c.pow(2).sum(), xr)
    close(grad(ours_loss)(x), want)


def test_cell_jacobians_and_hessian():
    ref, ours, _ = cell_pair(3, 4, True, torch.float64)
    x = torch.randn(2, 3, dtype=torch.float64)
    hx = (torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64))

    def h_of(model):
        return lambda x: model(x, hx)[0]

    close(jacrev(h_of(ours))(x), jacrev(h_of(ref))(x))
    # Forward mode over ours against reverse mode over torch.nn's.
    close(jacfwd(h_of(ours))(x), jacrev(h_of(ref))(x))
    close(hessian(lambda x: h_of(ours)(x).sum())(x), hessian(lambda x: h_of(ref)(x).sum())(x))


def test_layer_jacfwd_matches_jacrev():
    """Forward mode over the whole sequence (torch.nn.LSTM's CPU kernel has none)."""
    ref, ours, _ = make_pair(torch.float64, input_size=3, hidden_size=4, num_layers=2)
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    close(jacfwd(lambda x: ours(x)[0])(x), jacrev(lambda x: ref(x)[0])(x))


def test_vmap_forward():
    ref, ours, _ = make_pair(torch.float32, input_size=4, hidden_size=5)
    xs = torch.randn(3, 6, 2, 4)  # a vmapped dimension of 3 over (T, B, I) inputs
    torch.testing.assert_close(vmap(lambda x: ours(x)[0])(xs), torch.stack([ref(x)[0] for x in xs]))
