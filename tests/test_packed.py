"""PackedSequence and per-sequence lengths, against torch.nn.LSTM's packed path."""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstm_fused
from conftest import assert_close_to_reference, make_pair


def run_packed(model, x, lengths, hx, dtype, enforce_sorted):
    x = x.to(dtype).requires_grad_()
    hx = None if hx is None else tuple(t.to(dtype).requires_grad_() for t in hx)
    packed = pack_padded_sequence(x, lengths, batch_first=model.batch_first, enforce_sorted=enforce_sorted)
    out, (h, c) = model(packed, hx)
    assert isinstance(out, torch.nn.utils.rnn.PackedSequence)
    padded, out_lengths = pad_packed_sequence(out, batch_first=model.batch_first)
    assert torch.equal(out_lengths, torch.as_tensor(lengths))
    w = torch.linspace(-1, 1, out.data.numel(), dtype=torch.float64).view(out.data.shape)
    loss = (out.data.double() * w).sum() + h.double().sum() + c.double().sin().sum()
    inputs = [x] + ([] if hx is None else list(hx))
    grads = torch.autograd.grad(loss, inputs + list(model.parameters()))
    return [padded, h, c] + list(grads), out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("lengths,enforce_sorted", [([6, 6, 3, 1], True), ([2, 6, 1, 4], False), ([1, 1, 1, 1], True), ([6, 1, 6, 1], False)])
@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(num_layers=2, bidirectional=True),
        dict(proj_size=3, bidirectional=True),
        dict(num_layers=2, batch_first=True, bias=False),
    ],
    ids=["plain", "2layer-bidir", "proj-bidir", "batch_first-nobias"],
)
@pytest.mark.parametrize("with_hx", [False, True])
def test_packed_matches_nn(dtype, lengths, enforce_sorted, kw, with_hx):
    kw = dict(input_size=5, hidden_size=8, **kw)
    ref, ours, ref64 = make_pair(dtype, **kw)
    B, T = len(lengths), max(lengths)
    D = 2 if kw.get("bidirectional") else 1
    L = kw.get("num_layers", 1)
    P = kw.get("proj_size", 0) or kw["hidden_size"]
    x = torch.randn((B, T, 5) if kw.get("batch_first") else (T, B, 5), dtype=torch.float64)
    hx = (torch.randn(L * D, B, P, dtype=torch.float64), torch.randn(L * D, B, 8, dtype=torch.float64)) if with_hx else None
    got, got_packed = run_packed(ours, x, lengths, hx, dtype, enforce_sorted)
    theirs, their_packed = run_packed(ref, x, lengths, hx, dtype, enforce_sorted)
    want, _ = run_packed(ref64, x, lengths, hx, torch.float64, enforce_sorted)
    assert torch.equal(got_packed.batch_sizes, their_packed.batch_sizes)
    for idx in ("sorted_indices", "unsorted_indices"):
        a, b = getattr(got_packed, idx), getattr(their_packed, idx)
        assert (a is None and b is None) or torch.equal(a, b)
    labels = ["output", "h_n", "c_n", "grad input"] + (["grad h0", "grad c0"] if with_hx else []) + [
        n for n, _ in ours.named_parameters()
    ]
    for name, a, b, r in zip(labels, got, theirs, want):
        assert_close_to_reference(a, b, r, dtype, name)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_packed_16bit_long_enough_to_pack(dtype):
    """T·B >= 64 rows in 16 bits: the packed float weight serves steps where
    only some of the batch still runs."""
    lengths = [20, 17, 9, 3, 1]
    ref, ours, ref64 = make_pair(dtype, input_size=5, hidden_size=8, bidirectional=True)
    x = torch.randn(20, 5, 5, dtype=torch.float64)
    hx = (torch.randn(2, 5, 8, dtype=torch.float64), torch.randn(2, 5, 8, dtype=torch.float64))
    got, _ = run_packed(ours, x, lengths, hx, dtype, True)
    theirs, _ = run_packed(ref, x, lengths, hx, dtype, True)
    want, _ = run_packed(ref64, x, lengths, hx, torch.float64, True)
    labels = ["output", "h_n", "c_n", "grad input", "grad h0", "grad c0"] + [n for n, _ in ours.named_parameters()]
    for name, a, b, r in zip(labels, got, theirs, want):
        assert_close_to_reference(a, b, r, dtype, name)


def test_functional_lengths_match_packed():
    m = lstm_fused.LSTM(3, 5, bidirectional=True).double()
    weights = [getattr(m, n) for n in m._flat_weights_names]
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    lengths = torch.tensor([2, 6, 5, 1])
    out, (h, c) = lstm_fused.lstm(x, weights, lengths=lengths, bidirectional=True)
    packed_out, (hp, cp) = m(pack_padded_sequence(x, lengths, enforce_sorted=False))
    padded, _ = pad_packed_sequence(packed_out, total_length=6)
    torch.testing.assert_close(out, padded, rtol=0, atol=1e-12)
    torch.testing.assert_close(h, hp, rtol=0, atol=1e-12)
    torch.testing.assert_close(c, cp, rtol=0, atol=1e-12)
    for b, n in enumerate(lengths.tolist()):
        assert torch.all(out[n:, b] == 0), "output past a sequence's end must be zero"


def test_padding_values_do_not_leak():
    m = lstm_fused.LSTM(3, 4)
    x = torch.randn(5, 2, 3)
    lengths = torch.tensor([5, 2])
    weights = [getattr(m, n) for n in m._flat_weights_names]
    a = lstm_fused.lstm(x, weights, lengths=lengths)
    x2 = x.clone()
    x2[2:, 1] = 1e6
    b = lstm_fused.lstm(x2, weights, lengths=lengths)
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1][0], b[1][0])
