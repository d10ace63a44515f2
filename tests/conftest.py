import os

# Every buffer a kernel should overwrite starts as NaN, so unwritten elements fail.
os.environ.setdefault("LSTM_FUSED_POISON", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import lstm_fused  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

# The smallest error bound per dtype (relative to the reference's scale); the
# tests also allow a multiple of torch.nn.LSTM's own error in that dtype.
BASE_TOL = {torch.float64: 1e-10, torch.float32: 2e-5, torch.bfloat16: 3e-2, torch.float16: 5e-3}
TORCH_ERR_FACTOR = 4.0


def rel_err(x, ref):
    x, ref = x.double(), ref.double()
    scale = ref.abs().max().clamp_min(1.0)
    return ((x - ref).abs().max() / scale).item() if x.numel() else 0.0


def assert_close_to_reference(ours, theirs, ref64, dtype, what):
    """ours/theirs: the same quantity from lstm_fused and torch.nn in `dtype`;
    ref64: from torch.nn in float64. Ours must be within the per-dtype bound or
    a small multiple of torch's own error, whichever is larger."""
    assert ours.shape == ref64.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(ref64.shape)}"
    assert ours.dtype == dtype, f"{what}: dtype {ours.dtype} != {dtype}"
    e_ours = rel_err(ours, ref64)
    e_torch = rel_err(theirs, ref64) if theirs is not None else 0.0
    bound = max(BASE_TOL[dtype], TORCH_ERR_FACTOR * e_torch)
    assert e_ours <= bound, f"{what}: error {e_ours:.3g} > bound {bound:.3g} (torch.nn's error {e_torch:.3g})"


def make_pair(dtype, **kw):
    """torch.nn.LSTM and lstm_fused.LSTM in `dtype` with the same weights, and
    torch.nn.LSTM in float64 with them too (the reference)."""
    ref = torch.nn.LSTM(**kw)
    ours = lstm_fused.LSTM(**kw)
    ours.load_state_dict(ref.state_dict())
    ref64 = torch.nn.LSTM(**kw).double()
    ref64.load_state_dict(ref.state_dict())
    return ref.to(dtype), ours.to(dtype), ref64


def cell_pair(I, H, bias, dtype):
    """torch.nn.LSTMCell and lstm_fused.LSTMCell in `dtype` with the same
    weights, and torch.nn.LSTMCell in float64 with them too."""
    ref = torch.nn.LSTMCell(I, H, bias=bias)
    ours = lstm_fused.LSTMCell(I, H, bias=bias)
    ours.load_state_dict(ref.state_dict())
    ref64 = torch.nn.LSTMCell(I, H, bias=bias).double()
    ref64.load_state_dict(ref.state_dict())
    return ref.to(dtype), ours.to(dtype), ref64


@pytest.fixture
def onednn():
    """Layers run on the onednn engine (oneDNN's brgemm micro-kernel) in float32."""
    if not lstm_fused.cpu_engine_available("onednn", torch.float32):
        pytest.skip("the onednn engine does not run float32 on this CPU")
    with lstm_fused.use_cpu_engine("onednn"):
        yield


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)
