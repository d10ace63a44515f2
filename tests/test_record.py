"""lstm_fused.record_gates: the gates and cells the kernels computed, under the
documented keys, against the float64 plain-torch reference (_reference.layer)
with the same weights; padded steps, batch order, training, cells, and that
nothing is recorded or held outside the context."""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import lstm_fused
from lstm_fused import _reference
from conftest import BASE_TOL, make_pair


def reference_gates(ref64, x, h0, c0, lengths=None):
    """{key: (gates, cells)} of a float64 torch.nn.LSTM's weights, time-major x."""
    D = 2 if ref64.bidirectional else 1
    out = {}
    layer_input = x
    for layer in range(ref64.num_layers):
        outs = []
        for d in range(D):
            sfx = "_reverse" if d else ""
            w = [getattr(ref64, f"{n}_l{layer}{sfx}", None)
                 for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")]
            k = layer * D + d
            o, _, _, g, c = _reference.layer(layer_input, h0[k], c0[k], *w, lengths=lengths, reverse=d == 1,
                                             return_gates=True)
            out[f"l{layer}{sfx}"] = (g, c)
            outs.append(o)
        layer_input = torch.cat(outs, 2)
    return out


def check(rec, want, prefix, dtype):
    assert sorted(rec.keys()) == sorted(prefix + k for k in want)
    for k, (g, c) in want.items():
        got = rec[prefix + k]
        assert got.gates.shape == g.shape and got.c.shape == c.shape
        assert got.gates.dtype == dtype
        tol = 10 * BASE_TOL[dtype]
        assert (got.gates.double() - g).abs().max() <= tol, k
        assert (got.c.double() - c).abs().max() <= tol * max(1.0, c.abs().max().item()), k


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kw", [dict(), dict(num_layers=2, bidirectional=True), dict(proj_size=5)],
                         ids=["plain", "2layer-bidir", "proj"])
@pytest.mark.parametrize("grad", [False, True])
def test_gates_match_the_reference(dtype, kw, grad):
    kw = dict(input_size=6, hidden_size=16, **kw)
    _, ours, ref64 = make_pair(dtype, **kw)
    D, L = 2 if kw.get("bidirectional") else 1, kw.get("num_layers", 1)
    P = kw.get("proj_size") or 16
    x = torch.randn(11, 8, 6, dtype=torch.float64)
    h0, c0 = torch.randn(D * L, 8, P, dtype=torch.float64), torch.randn(D * L, 8, 16, dtype=torch.float64)
    model = torch.nn.Sequential(ours)
    with lstm_fused.record_gates(model) as rec:
        with torch.set_grad_enabled(grad):
            xi = x.to(dtype).requires_grad_(grad)
            out, _ = model[0](xi, (h0.to(dtype), c0.to(dtype)))
    check(rec, reference_gates(ref64, x, h0, c0), "0.", dtype)
    if grad:  # the gradients are those of an unrecorded run
        g1, = torch.autograd.grad(out.float().sum(), xi)
        out2, _ = ours(xi, (h0.to(dtype), c0.to(dtype)))
        g2, = torch.autograd.grad(out2.float().sum(), xi)
        assert torch.equal(g1, g2)


def test_keys_of_nested_modules_and_of_the_model_itself():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Module()
            self.encoder.rnn = lstm_fused.LSTM(3, 4, bidirectional=True)
            self.decoder = lstm_fused.LSTMCell(8, 4)

        def forward(self, x):
            y, _ = self.encoder.rnn(x)
            h = None
            for t in range(y.shape[0]):
                h = self.decoder(y[t], h)
            return h

    net = Net()
    with lstm_fused.record_gates(net) as rec:
        net(torch.randn(5, 2, 3))
    assert sorted(rec) == ["decoder.l0", "encoder.rnn.l0", "encoder.rnn.l0_reverse"]
    assert rec["decoder.l0"].gates.shape == (5, 2, 4, 4)  # one step per call
    solo = lstm_fused.LSTM(3, 4)
    with lstm_fused.record_gates(solo) as rec:
        solo(torch.randn(5, 2, 3))
    assert list(rec) == ["l0"]


def test_cell_steps_match_the_reference():
    ref = torch.nn.LSTMCell(5, 8).double()
    cell = lstm_fused.LSTMCell(5, 8)
    cell.load_state_dict(ref.state_dict())
    x = torch.randn(6, 3, 5, dtype=torch.float64)
    with lstm_fused.record_gates(cell) as rec:
        h = None
        for t in range(6):
            h = cell(x[t].float(), h)
    h0 = torch.zeros(3, 8, dtype=torch.float64)
    _, _, _, g, c = _reference.layer(x, h0, h0, ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh,
                                     return_gates=True)
    assert (rec["l0"].gates.double() - g).abs().max() < 1e-5
    assert (rec["l0"].c.double() - c).abs().max() < 1e-5


@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_batch_in_the_callers_order_with_zeros_at_padded_steps(bidirectional):
    lengths = [3, 9, 1, 6]
    _, ours, ref64 = make_pair(torch.float32, input_size=4, hidden_size=16, bidirectional=bidirectional)
    D = 2 if bidirectional else 1
    x = torch.randn(9, 4, 4, dtype=torch.float64)
    zeros = torch.zeros(D, 4, 16, dtype=torch.float64)
    packed = pack_padded_sequence(x.float(), lengths, enforce_sorted=False)
    with lstm_fused.record_gates(ours) as rec:
        with torch.no_grad():
            ours(packed)
    want = reference_gates(ref64, x, zeros, zeros, torch.tensor(lengths))
    check(rec, want, "", torch.float32)
    valid = torch.arange(9).unsqueeze(1) < torch.tensor(lengths)
    assert torch.equal(rec["l0"].valid, valid)
    assert (rec["l0"].gates[~valid] == 0).all()


def test_summary():
    ours = lstm_fused.LSTM(4, 16)
    with lstm_fused.record_gates(ours) as rec:
        ours(torch.randn(7, 3, 4))
    s = rec.summary()["l0"]
    g = rec["l0"].gates.double()
    for q, name in enumerate("ifgo"):
        assert s[name]["mean"] == pytest.approx(g[:, :, q].mean().item())
        assert s[name]["below_0.05"] == pytest.approx((g[:, :, q] < 0.05).double().mean().item())
        assert s[name]["above_0.95"] == pytest.approx((g[:, :, q] > 0.95).double().mean().item())
    assert "l0" in str(rec)


def test_nothing_is_recorded_or_held_outside_the_context():
    ours = lstm_fused.LSTM(4, 16)
    x = torch.randn(7, 3, 4)
    with lstm_fused.record_gates(ours) as rec:
        ours(x)
    n = len(rec["l0"]._parts)
    ours(x)
    assert len(rec["l0"]._parts) == n
    assert lstm_fused.record._ACTIVE == []
    other = lstm_fused.LSTM(4, 16)
    with lstm_fused.record_gates(other) as rec2:
        ours(x)  # not inside the recorded model
    assert dict(rec2) == {}


def test_functional_lengths_in_any_order_record_in_the_callers_order():
    """lstm(..., lengths=) sorts the batch for the kernels; the recorder gets
    it back in the caller's order, zeros past each sequence's end."""
    _, ours, ref64 = make_pair(torch.float32, input_size=4, hidden_size=16)
    lengths = torch.tensor([3, 9, 1, 6])
    x = torch.randn(9, 4, 4, dtype=torch.float64)
    rec = lstm_fused.GateRecorder()

    def record(layer, direction, gates, c, valid):
        rec.setdefault("l0", lstm_fused.GateRecord())._add(gates, c, valid)

    weights = [getattr(ours, n) for n in ours._flat_weights_names]
    with torch.no_grad():
        lstm_fused.functional.lstm(x.float(), weights, lengths=lengths, _record=record)
    zeros = torch.zeros(1, 4, 16, dtype=torch.float64)
    check(rec, reference_gates(ref64, x, zeros, zeros, lengths), "", torch.float32)
    assert torch.equal(rec["l0"].valid, torch.arange(9).unsqueeze(1) < lengths)
