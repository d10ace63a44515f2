"""Bad input gets a clear error naming the argument, before any kernel runs."""
import pytest
import torch

import lstm_fused
from lstm_fused import LSTMArgumentError


@pytest.fixture
def lstm():
    return lstm_fused.LSTM(4, 6, num_layers=2)


@pytest.mark.parametrize(
    "make_input,match",
    [
        (lambda: torch.randn(3), r"input must be 2-D .* or 3-D"),
        (lambda: torch.randn(2, 3, 4, 5), r"input must be 2-D .* or 3-D"),
        (lambda: torch.randn(5, 3, 7), r"input_size. Expected 4, got 7"),
        (lambda: torch.randint(0, 3, (5, 3, 4)), r"input must be a floating tensor"),
        (lambda: torch.randn(5, 3, 4, dtype=torch.complex64), r"input must be a floating tensor"),
        (lambda: torch.randn(5, 3, 4, dtype=torch.float64), r"weight_ih of layer 0 has dtype torch.float32 but input has dtype torch.float64"),
        (lambda: [[1.0]], r"input must be a torch.Tensor"),
    ],
)
def test_bad_input(lstm, make_input, match):
    with pytest.raises(LSTMArgumentError, match=match):
        lstm(make_input())


@pytest.mark.parametrize(
    "hx,match",
    [
        ((torch.randn(2, 3, 6), torch.randn(2, 2, 6)), r"hx\[1\] \(c_0\) must have shape \(2, 3, 6\)"),
        ((torch.randn(1, 3, 6), torch.randn(2, 3, 6)), r"hx\[0\] \(h_0\) must have shape \(2, 3, 6\)"),
        ((torch.randn(2, 3, 6, dtype=torch.float64), torch.randn(2, 3, 6)), r"hx\[0\] \(h_0\) has dtype torch.float64"),
        ((torch.randn(2, 3, 6),), r"hx must be a tuple \(h_0, c_0\)"),
        (torch.randn(2, 3, 6), r"hx must be a tuple \(h_0, c_0\)"),
    ],
)
def test_bad_hidden(lstm, hx, match):
    with pytest.raises(LSTMArgumentError, match=match):
        lstm(torch.randn(5, 3, 4), hx)


def test_errors_are_runtime_errors_like_nn(lstm):
    with pytest.raises(RuntimeError):
        lstm(torch.randn(5, 3, 7))


def test_meta_device_mix(lstm):
    with pytest.raises(LSTMArgumentError, match="is on meta but input is on cpu|is on cpu but input is on meta"):
        lstm(torch.randn(5, 3, 4, device="meta"))


def test_zero_length_sequence(lstm):
    with pytest.raises(RuntimeError, match="sequence length to be larger than 0"):
        lstm(torch.randn(0, 3, 4))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda c: c(torch.randn(2, 5)), r"input must have 4 features"),
        (lambda c: c(torch.randn(2, 3, 4)), r"input must be 1-D .* or 2-D"),
        (lambda c: c(torch.randn(2, 4), (torch.randn(2, 6), torch.randn(3, 6))), r"hx\[1\] \(c_0\) must have shape \(2, 6\)"),
        (lambda c: c(torch.randn(2, 4).double()), r"weight_ih has dtype torch.float32 but input has dtype torch.float64"),
        (lambda c: c(torch.randn(2, 4), torch.randn(2, 6)), r"hx must be a tuple"),
    ],
)
def test_cell_bad_input(call, match):
    with pytest.raises(LSTMArgumentError, match=match):
        call(lstm_fused.LSTMCell(4, 6))


@pytest.mark.parametrize(
    "lengths,match",
    [
        ([5, 4], r"lengths must be a 1-D tensor of 3 sequence lengths"),
        ([5, 0, 2], r"lengths must lie in \[1, 5\]"),
        ([6, 4, 2], r"lengths must lie in \[1, 5\]"),
        (torch.tensor([5.0, 4.0, 2.0]), r"lengths must hold integers"),
    ],
)
def test_bad_lengths(lstm, lengths, match):
    weights = [getattr(lstm, n) for n in lstm._flat_weights_names]
    with pytest.raises(LSTMArgumentError, match=match):
        lstm_fused.lstm(torch.randn(5, 3, 4), weights, num_layers=2, lengths=lengths)


@pytest.mark.parametrize(
    "args,match",
    [
        (lambda t: (t(5, 3, 4), t(3, 6), t(3, 6), t(24, 5), t(24, 6), None, None, None, None, False, False), r"w_ih must have shape \[24, 4\]"),
        (lambda t: (t(5, 3, 4), t(3, 6), t(2, 6), t(24, 4), t(24, 6), None, None, None, None, False, False), r"c0 must have shape \[3, 6\]"),
        (lambda t: (t(5, 3, 4), t(3, 6), t(3, 6), t(24, 4), t(24, 6), t(24), None, None, None, False, False), r"b_ih and b_hh must both be given"),
        (lambda t: (t(5, 3, 4), t(3, 6), t(3, 6), t(24, 4), t(24, 6), None, None, None, torch.tensor([1, 5, 2]), False, False), r"lengths must be sorted"),
        (lambda t: (t(5, 3, 4), t(3, 6), t(3, 6), t(24, 4), t(24, 6), None, None, None, torch.tensor([9, 5, 2]), False, False), r"outside \[0, T = 5\]"),
        (lambda t: (t(5, 3, 4), t(3, 6), t(3, 6), t(24, 4), t(24, 6), None, None, None, torch.tensor([5.0, 5, 2]), False, False), r"lengths must be an int64 CPU tensor"),
    ],
)
def test_op_level_checks(args, match):
    with pytest.raises(RuntimeError, match=match):
        torch.ops.lstm_fused.lstm_layer(*args(torch.randn))


def test_set_path_rejects_unknown_names():
    with pytest.raises(ValueError, match="path must be one of"):
        lstm_fused.set_path("fastest")
    with lstm_fused.use_path("step"):
        assert lstm_fused.get_path() == "step"
    assert lstm_fused.get_path() == "auto"
