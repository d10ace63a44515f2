"""Module behaviour a torch.nn.LSTM user relies on: parameters, init, state_dict
in both directions, copies, pickling, repr; and the build's torch-version check."""
import copy
import io
import pickle

import pytest
import torch

import lstm_fused
from lstm_fused import _ops
from conftest import cell_pair

CONFIGS = [
    dict(input_size=5, hidden_size=7),
    dict(input_size=5, hidden_size=7, num_layers=3, bidirectional=True, bias=False),
    dict(input_size=5, hidden_size=7, proj_size=3, num_layers=2, batch_first=True, dropout=0.25),
]


@pytest.mark.parametrize("kw", CONFIGS)
def test_same_parameters_and_init_as_nn(kw):
    torch.manual_seed(7)
    ref = torch.nn.LSTM(**kw)
    torch.manual_seed(7)
    ours = lstm_fused.LSTM(**kw)
    assert [(n, p.shape) for n, p in ref.named_parameters()] == [(n, p.shape) for n, p in ours.named_parameters()]
    for (n, a), b in zip(ref.named_parameters(), ours.parameters()):
        assert torch.equal(a, b), n


@pytest.mark.parametrize("kw", CONFIGS)
def test_state_dict_both_directions(kw):
    ref, ours = torch.nn.LSTM(**kw), lstm_fused.LSTM(**kw)
    ours.load_state_dict(ref.state_dict())
    back = torch.nn.LSTM(**kw)
    back.load_state_dict(ours.state_dict())
    for a, b in zip(ref.state_dict().values(), back.state_dict().values()):
        assert torch.equal(a, b)
    ours.eval()
    ref.eval()
    x = torch.randn(2, 3, 5)
    torch.testing.assert_close(ours(x)[0], ref(x)[0], rtol=1e-5, atol=1e-6)


def test_cell_state_dict_and_init():
    torch.manual_seed(3)
    ref = torch.nn.LSTMCell(4, 6)
    torch.manual_seed(3)
    ours = lstm_fused.LSTMCell(4, 6)
    assert ref.state_dict().keys() == ours.state_dict().keys()
    for a, b in zip(ref.state_dict().values(), ours.state_dict().values()):
        assert torch.equal(a, b)


def test_repr_like_nn():
    assert repr(lstm_fused.LSTM(5, 7, num_layers=2, bidirectional=True)) == repr(
        torch.nn.LSTM(5, 7, num_layers=2, bidirectional=True)
    )
    assert repr(lstm_fused.LSTMCell(5, 7)) == repr(torch.nn.LSTMCell(5, 7))


def test_copies_pickle_and_save():
    m = lstm_fused.LSTM(3, 4, num_layers=2)
    x = torch.randn(5, 2, 3)
    want = m(x)[0]
    for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert type(clone) is lstm_fused.LSTM
        torch.testing.assert_close(clone(x)[0], want)
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    torch.testing.assert_close(loaded(x)[0], want)


def test_to_dtype_and_flatten_parameters():
    m = lstm_fused.LSTM(3, 4).to(torch.float64)
    m.flatten_parameters()
    assert all(p.dtype == torch.float64 for p in m.parameters())
    out, (h, c) = m(torch.randn(2, 1, 3, dtype=torch.float64))
    assert out.dtype == h.dtype == c.dtype == torch.float64


def test_parameters_update_after_assignment():
    m = lstm_fused.LSTM(3, 4)
    x = torch.randn(2, 1, 3)
    before = m(x)[0]
    with torch.no_grad():
        m.weight_hh_l0.mul_(0)
        m.weight_ih_l0.mul_(0)
    assert not torch.allclose(before, m(x)[0])


def test_version_mismatch_names_both_versions(monkeypatch):
    monkeypatch.setattr(torch, "__version__", "0.0.1-other")
    with pytest.raises(ImportError, match=r"built against torch .* but torch 0.0.1-other is installed.*pip install"):
        _ops._check_build()


def test_build_records_cuda_part():
    from lstm_fused import _build_info

    assert lstm_fused.cuda_compiled() == _build_info.WITH_CUDA


class _Double(torch.nn.Module):
    def forward(self, w):
        return 2 * w


@pytest.mark.parametrize("how", ["parametrize", "weight_norm", "no_bias"])
def test_cell_with_computed_weights(how):
    """Weights that are not plain parameters (parametrizations, weight norm) are
    read through the module's attributes, as nn.LSTMCell reads them."""
    ref, ours, _ = cell_pair(5, 7, how != "no_bias", torch.float32)
    for m in (ref, ours):
        if how == "parametrize":
            torch.nn.utils.parametrize.register_parametrization(m, "weight_hh", _Double())
        elif how == "weight_norm":
            torch.nn.utils.parametrizations.weight_norm(m, "weight_ih")
    x, h, c = torch.randn(3, 5), torch.randn(3, 7), torch.randn(3, 7)
    for a, b in zip(ref(x, (h, c)), ours(x, (h, c))):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    if how == "parametrize":
        ours(x, (h, c))[0].sum().backward()
        assert ours.parametrizations.weight_hh.original.grad is not None
