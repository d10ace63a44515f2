"""The shapes that the CPU small-batch fused step runs (H a multiple of 16, no
projection, 16 steps or more; float32: at most 8 rows and 256 (row, unit)
pairs; bfloat16, on AVX512_BF16 dot products: at most 64 rows), against
torch.nn.LSTM and a float64 run of it: padded and packed batches, both
directions, with and without gradients."""
import pytest
import torch

import lstm_fused
from conftest import assert_close_to_reference, make_pair
from test_packed import run_packed

DTYPES = [torch.float32, torch.bfloat16]


def outputs_and_grads(model, x, hx, grad, dtype):
    x = x.to(dtype).requires_grad_(grad)
    hx = tuple(t.to(dtype).requires_grad_(grad) for t in hx)
    with torch.set_grad_enabled(grad):
        out, (h, c) = model(x, hx)
    if not grad:
        return [out, h, c]
    w = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view(out.shape)
    loss = (out.double() * w).sum() + h.double().sin().sum() + c.double().sum()
    return [out, h, c] + list(torch.autograd.grad(loss, [x, *hx, *model.parameters()]))


NAMES = ["output", "h_n", "c_n", "grad input", "grad h0", "grad c0"]


@pytest.fixture(params=DTYPES, ids=str)
def small_batch(request):
    """The small-batch engine pinned for a dtype, and asserted to have run."""
    if not lstm_fused.cpu_engine_available("small_batch", request.param):
        pytest.skip(f"the small_batch engine does not run {request.param} on this build and CPU")
    before = lstm_fused.cpu_engine_counts()["small_batch"]
    with lstm_fused.use_cpu_engine("small_batch"):
        yield request.param
    assert lstm_fused.cpu_engine_counts()["small_batch"] > before


@pytest.mark.parametrize("B", [1, 3, 4, 5, 8])
@pytest.mark.parametrize("H", [16, 32])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("grad", [False, True])
def test_padded(B, H, bidirectional, grad, small_batch):
    DT, D = small_batch, 2 if bidirectional else 1
    ref, ours, ref64 = make_pair(DT, input_size=7, hidden_size=H, bidirectional=bidirectional)
    x = torch.randn(20, B, 7, dtype=torch.float64)
    hx = (torch.randn(D, B, H, dtype=torch.float64), torch.randn(D, B, H, dtype=torch.float64))
    got = outputs_and_grads(ours, x, hx, grad, DT)
    theirs = outputs_and_grads(ref, x, hx, grad, DT)
    want = outputs_and_grads(ref64, x, hx, grad, torch.float64)
    names = NAMES + [n for n, _ in ours.named_parameters()]
    for name, a, b, r in zip(names, got, theirs, want):
        assert_close_to_reference(a, b, r, DT, name)


@pytest.mark.parametrize("lengths,enforce_sorted", [([19, 19, 4, 1], True), ([3, 19, 1, 16, 6], False), ([2, 5, 5, 1, 19, 17, 3, 8], False)])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed(lengths, enforce_sorted, bidirectional, small_batch):
    DT = small_batch
    kw = dict(input_size=7, hidden_size=32, bidirectional=bidirectional)
    ref, ours, ref64 = make_pair(DT, **kw)
    B, T, D = len(lengths), max(lengths), 2 if bidirectional else 1
    x = torch.randn(T, B, 7, dtype=torch.float64)
    hx = (torch.randn(D, B, 32, dtype=torch.float64), torch.randn(D, B, 32, dtype=torch.float64))
    got, _ = run_packed(ours, x, lengths, hx, DT, enforce_sorted)
    theirs, _ = run_packed(ref, x, lengths, hx, DT, enforce_sorted)
    want, _ = run_packed(ref64, x, lengths, hx, torch.float64, enforce_sorted)
    names = NAMES + [n for n, _ in ours.named_parameters()]
    for name, a, b, r in zip(names, got, theirs, want):
        assert_close_to_reference(a, b, r, DT, name)


@pytest.mark.parametrize("B", [8, 13, 64])
def test_bfloat16_beyond_float_pairs(B):
    """bfloat16 has no (row, unit) pair bound and takes up to 64 rows: 8, 13
    (tiles of 4, 4, 4 and 1 rows) and 64 rows of 64 units (past float's 256
    pairs) run on it, with k in pairs over all of H."""
    if not lstm_fused.cpu_engine_available("small_batch", torch.bfloat16):
        pytest.skip("the small_batch engine does not run bfloat16 on this build and CPU")
    ref, ours, ref64 = make_pair(torch.bfloat16, input_size=7, hidden_size=64)
    x = torch.randn(20, B, 7, dtype=torch.float64)
    hx = (torch.randn(1, B, 64, dtype=torch.float64), torch.randn(1, B, 64, dtype=torch.float64))
    before = lstm_fused.cpu_engine_counts()["small_batch"]
    with lstm_fused.use_cpu_engine("small_batch"):
        got = outputs_and_grads(ours, x, hx, False, torch.bfloat16)
    assert lstm_fused.cpu_engine_counts()["small_batch"] == before + 1
    theirs = outputs_and_grads(ref, x, hx, False, torch.bfloat16)
    want = outputs_and_grads(ref64, x, hx, False, torch.float64)
    for name, a, b, r in zip(NAMES, got, theirs, want):
        assert_close_to_reference(a, b, r, torch.bfloat16, name)


def test_bfloat16_available_with_avx512_bf16():
    """The bf16 tests above skip where the engine says it does not run bf16;
    on a CPU with AVX512_BF16 (the build adds -mavx512bf16 there) it must."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    caps = torch._C._cpu._get_cpu_capability()
    if " avx512_bf16" not in flags or not caps.get("avx512_bf16"):
        pytest.skip("this CPU has no AVX512_BF16")
    assert lstm_fused.cpu_engine_available("small_batch", torch.float32)
    assert lstm_fused.cpu_engine_available("small_batch", torch.bfloat16)
    assert not lstm_fused.cpu_engine_available("small_batch", torch.float16)
