"""Every CPU engine of the recurrence, forced in turn, in every dtype it
takes, against torch.nn.LSTM and a float64 run of it: padded and packed
batches, both directions, a projection, with gradients. Each test asserts
from the engine counters that the forced engine ran (forward steps and
backward products are counted per layer call)."""
import pytest
import torch

import lstm_fused
from conftest import assert_close_to_reference, make_pair
from test_packed import run_packed
from test_small_batch import NAMES, outputs_and_grads

GEMM_ENGINES = ["mkl", "onednn", "aten", "onednn_linear"]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def ran(engine, before):
    return lstm_fused.cpu_engine_counts()[engine] - before[engine]


def check(got, theirs, want, names, dtype):
    for name, a, b, r in zip(names, got, theirs, want):
        assert_close_to_reference(a, b, r, dtype, name)


@pytest.fixture
def engine(request):
    with lstm_fused.use_cpu_engine(request.param):
        yield request.param


def skip_unless_available(engine, dtype):
    if not lstm_fused.cpu_engine_available(engine, dtype):
        pytest.skip(f"the {engine} engine does not run {dtype} on this CPU")


def check_large_gemms(engine, dtype, before, calls):
    """A pinned mkl, onednn or onednn_linear runs every large GEMM of the call
    (input projection, dx, dW_ih, dW_hh, and dW_hr with a projection, per
    layer and direction) on its library (oneDNN for onednn_linear); aten pins
    none, so they run on the one timed faster."""
    ran_large = {k: v - before[k] for k, v in lstm_fused.cpu_large_gemm_counts().items()}
    assert sum(ran_large.values()) == calls, ran_large
    if engine == "onednn_linear":
        engine = "onednn"
    if engine == "onednn" and not torch.ops.lstm_fused._cpu_onednn_matmul_usable(dtype):
        engine = "mkl"  # oneDNN's matmul does not run this dtype on this CPU
    if engine in ran_large:
        assert ran_large[engine] == calls, ran_large


@pytest.mark.parametrize("engine", GEMM_ENGINES, indirect=True)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "H,kw", [(64, dict()), (48, dict(bidirectional=True, num_layers=2)), (32, dict(proj_size=16)),
             (8, dict())],
    ids=["plain", "bidir-2layer", "proj", "H8"])
def test_padded(engine, dtype, H, kw):
    """H = 64, 48, 32: groups of 64, 16 and 32 units in the fused step; H = 8:
    too narrow for it (the product alone still runs on brgemm)."""
    skip_unless_available(engine, dtype)
    D, L = 2 if kw.get("bidirectional") else 1, kw.get("num_layers", 1)
    P = kw.get("proj_size", H)
    ref, ours, ref64 = make_pair(dtype, input_size=24, hidden_size=H, **kw)
    x = torch.randn(12, 8, 24, dtype=torch.float64)  # 96 rows: prepared weights
    hx = (torch.randn(D * L, 8, P, dtype=torch.float64), torch.randn(D * L, 8, H, dtype=torch.float64))
    before, large_before = lstm_fused.cpu_engine_counts(), lstm_fused.cpu_large_gemm_counts()
    in_steps = lstm_fused.cpu_input_projection_counts()["step"]
    got = outputs_and_grads(ours, x, hx, True, dtype)
    # input projections that ran in the fused steps (test_input_projection.py) ran no large GEMM
    in_steps = lstm_fused.cpu_input_projection_counts()["step"] - in_steps
    check_large_gemms(engine, dtype, large_before, (5 if "proj_size" in kw else 4) * D * L - in_steps)
    # one forward step and one backward product per layer and direction; onednn
    # takes products of 16 columns or more: the backward's has H
    products = 2 if engine != "onednn" or H % 16 == 0 else 1
    assert ran(engine, before) == products * D * L, lstm_fused.cpu_engine_counts()
    theirs = outputs_and_grads(ref, x, hx, True, dtype)
    want = outputs_and_grads(ref64, x, hx, True, torch.float64)
    check(got, theirs, want, NAMES + [n for n, _ in ours.named_parameters()], dtype)


@pytest.mark.parametrize("engine", GEMM_ENGINES, indirect=True)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed(engine, dtype, bidirectional):
    skip_unless_available(engine, dtype)
    lengths = [3, 19, 1, 16, 6]
    ref, ours, ref64 = make_pair(dtype, input_size=7, hidden_size=32, bidirectional=bidirectional)
    B, T, D = len(lengths), max(lengths), 2 if bidirectional else 1
    x = torch.randn(T, B, 7, dtype=torch.float64)
    hx = (torch.randn(D, B, 32, dtype=torch.float64), torch.randn(D, B, 32, dtype=torch.float64))
    before = lstm_fused.cpu_engine_counts()
    got, _ = run_packed(ours, x, lengths, hx, dtype, False)
    assert ran(engine, before) == 2 * D
    theirs, _ = run_packed(ref, x, lengths, hx, dtype, False)
    want, _ = run_packed(ref64, x, lengths, hx, torch.float64, False)
    check(got, theirs, want, NAMES + [n for n, _ in ours.named_parameters()], dtype)


@pytest.mark.parametrize("engine", ["small_batch"], indirect=True)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_small_batch_runs_when_forced(engine, dtype):
    skip_unless_available(engine, dtype)
    ref, ours, ref64 = make_pair(dtype, input_size=7, hidden_size=32)
    x = torch.randn(20, 4, 7, dtype=torch.float64)
    hx = (torch.randn(1, 4, 32, dtype=torch.float64), torch.randn(1, 4, 32, dtype=torch.float64))
    before = lstm_fused.cpu_engine_counts()
    got = outputs_and_grads(ours, x, hx, False, dtype)
    assert ran("small_batch", before) == 1
    check(got, outputs_and_grads(ref, x, hx, False, dtype),
          outputs_and_grads(ref64, x, hx, False, torch.float64), NAMES, dtype)


def test_pinned_engine_that_cannot_run_falls_back():
    """small_batch takes float32 and bfloat16 only: pinned for float16 the call
    still runs, on another engine, and says which."""
    ref, ours, ref64 = make_pair(torch.float16, input_size=7, hidden_size=32)
    x = torch.randn(20, 4, 7, dtype=torch.float64)
    with lstm_fused.use_cpu_engine("small_batch"):
        before = lstm_fused.cpu_engine_counts()
        with torch.no_grad():
            out, _ = ours(x.half())
        assert ran("small_batch", before) == 0
        assert sum(ran(e, before) for e in GEMM_ENGINES) == 1
    with torch.no_grad():
        want, _ = ref64(x)
    assert_close_to_reference(out, ref(x.half())[0], want, torch.float16, "output")


def test_auto_choice_is_timed_once_and_cached():
    torch.ops.lstm_fused._cpu_clear_engine_choices()
    ours = lstm_fused.LSTM(16, 48)
    x = torch.randn(10, 7, 16)
    with torch.no_grad():
        first, _ = ours(x)
        choices = lstm_fused.cpu_engine_choices()
        second, _ = ours(x)
    assert any("forward step Float B=7 N=192 K=48" in c for c in choices), choices
    assert lstm_fused.cpu_engine_choices() == choices
    assert torch.equal(first, second)


def test_deterministic_algorithms_fix_the_choice():
    torch.ops.lstm_fused._cpu_clear_engine_choices()
    ours = lstm_fused.LSTM(16, 48)
    x = torch.randn(10, 7, 16)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.no_grad():
            ours(x)
    finally:
        torch.use_deterministic_algorithms(False)
    assert lstm_fused.cpu_engine_choices() == []


def test_set_cpu_engine_rejects_unknown_names():
    with pytest.raises(ValueError, match="CPU engine must be one of"):
        lstm_fused.set_cpu_engine("blas")
    assert lstm_fused.get_cpu_engine() == "auto"


def test_choosing_an_engine_leaves_the_random_stream_alone():
    """The first call of a kind times the engines on operands of its own: the
    user's random stream after it is the same as without the call."""
    torch.ops.lstm_fused._cpu_clear_engine_choices()
    ours = lstm_fused.LSTM(16, 80)
    x = torch.randn(10, 9, 16)
    torch.manual_seed(7)
    with torch.no_grad():
        ours(x)
    assert any("B=9 N=320" in c for c in lstm_fused.cpu_engine_choices())
    after = torch.randn(4)
    torch.manual_seed(7)
    assert torch.equal(torch.randn(4), after)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_odd_widths_of_16bit_weights(dtype):
    """oneDNN packs 16-bit weights in pairs of rows (VNNI): a product with an
    odd K (proj_size 5: W_hh is (4H, 5)) runs on another engine, not into an
    abort."""
    ref, ours, ref64 = make_pair(dtype, input_size=5, hidden_size=16, proj_size=5)
    x = torch.randn(12, 8, 5, dtype=torch.float64)
    with lstm_fused.use_cpu_engine("onednn"):
        before = lstm_fused.cpu_engine_counts()
        got = outputs_and_grads(ours, x, (torch.zeros(1, 8, 5), torch.zeros(1, 8, 16)), True, dtype)
        assert sum(ran(e, before) for e in ("mkl", "aten")) >= 1
    zeros = (torch.zeros(1, 8, 5, dtype=torch.float64), torch.zeros(1, 8, 16, dtype=torch.float64))
    check(got, outputs_and_grads(ref, x, zeros, True, dtype), outputs_and_grads(ref64, x, zeros, True, torch.float64),
          NAMES + [n for n, _ in ours.named_parameters()], dtype)


def test_onednn_linear_available_with_torch_onednn():
    """The engine's probe fails closed (a wrong product makes it unavailable,
    and its tests skip): where torch has oneDNN, it must pass in float32."""
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch has no oneDNN")
    assert lstm_fused.cpu_engine_available("onednn_linear", torch.float32)


def test_short_inferences_take_engines_with_kept_layouts():
    """Below 64 rows in all, an inference may run on the engines whose layouts are kept
    from call to call (small_batch, onednn), timed as usual; a training call there keeps
    aten (its weights change every call). Both against nn.LSTM and float64."""
    lstm_fused.empty_cache()
    kept = {"small_batch", "onednn"}
    if not any(lstm_fused.cpu_engine_available(e, torch.float32) for e in kept):
        pytest.skip("neither small_batch nor onednn runs float32 on this CPU")
    ref, ours, ref64 = make_pair(torch.float32, input_size=24, hidden_size=32)
    x = torch.randn(3, 2, 24, dtype=torch.float64)
    before = lstm_fused.cpu_engine_counts()
    with torch.no_grad():
        got = ours(x.float())[0]
    after = lstm_fused.cpu_engine_counts()
    ran = {e for e in after if after[e] > before[e]}
    assert ran and ran <= kept, ran
    assert_close_to_reference(got, ref(x.float())[0].detach(), ref64(x)[0].detach(),
                              torch.float32, "output")
    before = after
    xs = x.float().requires_grad_()
    ours(xs)[0].sum().backward()
    after = lstm_fused.cpu_engine_counts()
    assert {e for e in after if after[e] > before[e]} == {"aten"}


@pytest.mark.parametrize("engine", ["onednn"], indirect=True)
def test_wide_layer_on_narrow_blocks(engine):
    """H = 1024: the fused float step runs its groups of 64 units on blocks of
    16 columns (16 per group), forward and backward against the references."""
    skip_unless_available(engine, torch.float32)
    ref, ours, ref64 = make_pair(torch.float32, input_size=24, hidden_size=1024)
    x = torch.randn(4, 5, 24, dtype=torch.float64)
    hx = (torch.randn(1, 5, 1024, dtype=torch.float64), torch.randn(1, 5, 1024, dtype=torch.float64))
    before = lstm_fused.cpu_engine_counts()
    got = outputs_and_grads(ours, x, hx, True, torch.float32)
    assert ran(engine, before) == 2, lstm_fused.cpu_engine_counts()
    with torch.no_grad():
        inference = ours(x.float(), tuple(t.float() for t in hx))
    assert ran(engine, before) == 3
    theirs = outputs_and_grads(ref, x, hx, True, torch.float32)
    want = outputs_and_grads(ref64, x, hx, True, torch.float64)
    check(got, theirs, want, NAMES + [n for n, _ in ours.named_parameters()], torch.float32)
    check(list(inference[:1]) + list(inference[1]), theirs[:3], want[:3], NAMES[:3], torch.float32)
