"""Checkpoints (torch.load with weights_only, its default) and a quiet import."""
import pickle
import subprocess
import sys

import pytest
import torch
from torch import nn

import lstm_fused


def _roundtrip(obj, path, allow=None):
    torch.save(obj, path)
    if allow is None:
        return torch.load(path)
    with torch.serialization.safe_globals(allow):
        return torch.load(path)


@pytest.mark.parametrize("make,x", [
    (lambda: lstm_fused.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2, batch_first=True),
     torch.randn(2, 4, 3)),
    (lambda: lstm_fused.LSTMCell(3, 5, bias=False), torch.randn(2, 3)),
])
def test_weights_only_load_needs_safe_globals(tmp_path, make, x):
    module = make()
    path = tmp_path / "model.pt"
    with pytest.raises(pickle.UnpicklingError, match="lstm_fused.modules"):
        _roundtrip(module, path)
    assert set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) <= {
        f"{c.__module__}.{c.__qualname__}" for c in lstm_fused.safe_globals()}
    loaded = _roundtrip(module, path, lstm_fused.safe_globals())
    assert type(loaded) is type(module)
    torch.testing.assert_close(loaded(x)[0], module(x)[0], rtol=0, atol=0)
    for (n, p), (n2, p2) in zip(module.named_parameters(), loaded.named_parameters()):
        assert n == n2 and torch.equal(p, p2)


def test_model_holding_lstm_fused_modules(tmp_path):
    """The model's other classes (here nn.Sequential, nn.Linear) are allow-listed by the user beside ours."""
    model = nn.Sequential(lstm_fused.LSTM(4, 6), nn.Flatten(0), nn.Linear(6 * 2 * 3, 2))
    loaded = _roundtrip(model, tmp_path / "m.pt", [*lstm_fused.safe_globals(), nn.Sequential, nn.Flatten, nn.Linear])
    x = torch.randn(3, 2, 4)
    lstm_out = lambda m: m[0](x)[0]  # noqa: E731
    torch.testing.assert_close(lstm_out(loaded), lstm_out(model), rtol=0, atol=0)


def test_import_is_quiet_and_light():
    """`import lstm_fused` warns about nothing and does not import torch.onnx
    (the ONNX export path loads it only when an export traces the model)."""
    code = "import sys, lstm_fused; assert 'torch.onnx' not in sys.modules, 'torch.onnx imported'"
    result = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
