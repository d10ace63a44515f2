"""lstm_fused.convert: torch.nn.LSTM/LSTMCell <-> lstm_fused.LSTM/LSTMCell in place."""
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import lstm_fused
from conftest import assert_close_to_reference


class Mixed(nn.Module):
    """LSTM, LSTMCell and other layers, one LSTM reachable under two names."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(5, 6)
        self.encoder = nn.LSTM(6, 8, num_layers=2, bidirectional=True, batch_first=True)
        self.blocks = nn.ModuleList([nn.Sequential(nn.LSTM(16, 4, proj_size=3), nn.Tanh())])
        self.alias = self.encoder
        self.cell = nn.LSTMCell(3, 7)
        self.cell_nobias = nn.LSTMCell(7, 7, bias=False)
        self.head = nn.Linear(7, 2)

    def forward(self, x):
        out, _ = self.encoder(torch.tanh(self.embed(x)))  # (B, T, 16)
        out, _ = self.blocks[0][0](out.transpose(0, 1))  # (T, B, 3)
        hc = None
        for step in out.unbind(0):
            hc = self.cell(step, hc)
            hc = self.cell_nobias(hc[0], hc)
        return self.head(hc[0]), out


def _outputs(model, x):
    out, seq = model(x)
    return [out, seq]


@pytest.mark.filterwarnings("ignore:LSTM with projections")
def test_round_trip_mixed_model():
    model = Mixed()
    model.cell.eval()  # training mode is kept per module
    model.encoder.weight_hh_l1.requires_grad_(False)
    params = dict(model.named_parameters())
    x = torch.randn(3, 5, 5)
    want = _outputs(model, x)
    model64 = Mixed().double()
    model64.load_state_dict(model.state_dict())
    want64 = _outputs(model64, x.double())

    assert lstm_fused.convert(model) is model
    assert type(model.encoder) is lstm_fused.LSTM and model.alias is model.encoder
    assert type(model.blocks[0][0]) is lstm_fused.LSTM and type(model.blocks[0][1]) is nn.Tanh
    assert type(model.cell) is lstm_fused.LSTMCell and type(model.cell_nobias) is lstm_fused.LSTMCell
    assert type(model.embed) is nn.Linear and type(model.head) is nn.Linear
    assert model.blocks[0][0].proj_size == 3 and model.cell_nobias.bias_ih is None
    assert not model.cell.training and model.encoder.training
    # the same Parameter objects, under the same names
    assert all(p is params[n] for n, p in model.named_parameters())
    assert not model.encoder.weight_hh_l1.requires_grad
    got = _outputs(model, x)
    for g, w, w64, what in zip(got, want, want64, ("head", "sequence")):
        assert_close_to_reference(g, w, w64, torch.float32, what)

    assert lstm_fused.convert(model, to="torch") is model
    assert type(model.encoder) is nn.LSTM and type(model.blocks[0][0]) is nn.LSTM
    assert type(model.cell) is nn.LSTMCell and type(model.cell_nobias) is nn.LSTMCell
    assert all(p is params[n] for n, p in model.named_parameters())
    assert not model.cell.training
    for g, w in zip(_outputs(model, x), want):
        torch.testing.assert_close(g, w, rtol=0, atol=0)  # torch's own modules again: bitwise


def test_training_continues_with_the_optimizer():
    """Shared parameters: an optimizer built before the conversion keeps training the model."""
    model = nn.Sequential(nn.LSTM(4, 6))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model[0].weight_ih_l0.detach().clone()
    lstm_fused.convert(model)
    out, _ = model(torch.randn(5, 2, 4))
    out.square().sum().backward()
    opt.step()
    assert type(model[0]) is lstm_fused.LSTM
    assert not torch.equal(model[0].weight_ih_l0, before)


def test_model_itself_an_lstm():
    for make in (lambda: nn.LSTM(3, 4, num_layers=2, dtype=torch.float64), lambda: nn.LSTMCell(3, 4)):
        m = make().eval()
        new = lstm_fused.convert(m)
        assert type(new) in (lstm_fused.LSTM, lstm_fused.LSTMCell) and new is not m
        assert not new.training
        assert [p for p in new.parameters()] == [p for p in m.parameters()]
        back = lstm_fused.convert(new, to="torch")
        assert type(back) is type(m)
        dtype = next(m.parameters()).dtype
        x = torch.randn(2, 3, dtype=dtype) if isinstance(m, nn.LSTMCell) else torch.randn(5, 2, 3, dtype=dtype)
        torch.testing.assert_close(new(x)[0], m(x)[0])


def test_hooks_travel():
    m = nn.Sequential(nn.LSTM(3, 4))
    calls = []
    handle = m[0].register_forward_hook(lambda mod, args, out: calls.append(type(mod)))
    lstm_fused.convert(m)
    m(torch.randn(2, 1, 3))
    assert calls == [lstm_fused.LSTM]
    handle.remove()
    m(torch.randn(2, 1, 3))
    assert len(calls) == 1


def test_subclasses_and_other_modules_left_alone():
    class MyLSTM(nn.LSTM):
        pass

    model = nn.Sequential(MyLSTM(3, 4), nn.GRU(4, 4), nn.Linear(4, 4))
    kinds = [type(m) for m in model]
    lstm_fused.convert(model)
    assert [type(m) for m in model] == kinds


def test_parametrized_refused():
    class Scale(nn.Module):
        def forward(self, w):
            return 2 * w

    m = nn.Sequential(nn.LSTM(3, 4))
    parametrize.register_parametrization(m[0], "weight_hh_l0", Scale())
    with pytest.raises(lstm_fused.LSTMArgumentError, match=r"0 .*parametriz"):
        lstm_fused.convert(m)
    assert type(m[0]).__name__ == "ParametrizedLSTM"

    cell = lstm_fused.LSTMCell(3, 4)
    parametrize.register_parametrization(cell, "weight_ih", Scale())
    with pytest.raises(lstm_fused.LSTMArgumentError, match="parametriz"):
        lstm_fused.convert(cell, to="torch")


def test_weight_norm_refused():
    with pytest.warns(FutureWarning):
        m = nn.utils.weight_norm(nn.LSTM(3, 4), name="weight_hh_l0")
    with pytest.raises(lstm_fused.LSTMArgumentError, match="weight-norm"):
        lstm_fused.convert(m)


def test_bad_arguments():
    with pytest.raises(lstm_fused.LSTMArgumentError, match="to must be"):
        lstm_fused.convert(nn.LSTM(3, 4), to="cudnn")
    with pytest.raises(lstm_fused.LSTMArgumentError, match="model must be"):
        lstm_fused.convert([nn.LSTM(3, 4)])
