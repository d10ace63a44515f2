"""A fused float CPU layer's input projection run inside its steps
(csrc/cpu/input_projection_cpu.h), forced each way and chosen: against
torch.nn.LSTM and a float64 run of it, with the counters showing where the
projection ran. Buffers are poisoned (conftest), so a step that read the
gates buffer it no longer fills would fail."""
import pytest
import torch

import lstm_fused
from conftest import assert_close_to_reference, make_pair
from test_small_batch import NAMES, outputs_and_grads


def in_steps_since(before):
    now = lstm_fused.cpu_input_projection_counts()
    return {k: now[k] - before[k] for k in now}


@pytest.mark.parametrize("where", ["gemm", "step"])
@pytest.mark.parametrize("grad", [False, True], ids=["inference", "grad"])
@pytest.mark.parametrize(
    "I,H,kw", [(24, 64, dict()), (40, 48, dict(bidirectional=True, num_layers=2)), (7, 32, dict()),
               (16, 256, dict())],
    ids=["plain", "bidir-2layer", "odd-input", "groups-per-thread"])
def test_forced(onednn, where, grad, I, H, kw):
    D, L = 2 if kw.get("bidirectional") else 1, kw.get("num_layers", 1)
    ref, ours, ref64 = make_pair(torch.float32, input_size=I, hidden_size=H, **kw)
    x = torch.randn(12, 8, I, dtype=torch.float64)  # 96 rows: prepared weights
    hx = (torch.randn(D * L, 8, H, dtype=torch.float64), torch.randn(D * L, 8, H, dtype=torch.float64))
    before, large_before = lstm_fused.cpu_input_projection_counts(), lstm_fused.cpu_large_gemm_counts()
    with lstm_fused.use_cpu_input_projection(where):
        got = outputs_and_grads(ours, x, hx, grad, torch.float32)
    assert in_steps_since(before) == {"gemm": D * L * (where == "gemm"), "step": D * L * (where == "step")}
    # the projection's large GEMM runs only when it is not in the steps
    large = sum(lstm_fused.cpu_large_gemm_counts().values()) - sum(large_before.values())
    assert large == (4 if grad else 1) * D * L - D * L * (where == "step")
    theirs = outputs_and_grads(ref, x, hx, grad, torch.float32)
    want = outputs_and_grads(ref64, x, hx, grad, torch.float64)
    names = NAMES + [n for n, _ in ours.named_parameters()] if grad else NAMES[:3]
    for name, a, b, r in zip(names, got, theirs, want):
        assert_close_to_reference(a, b, r, torch.float32, name)


@pytest.mark.parametrize("kw", [dict(variant="cifg"), dict(variant="no_input_gate", peephole=True),
                                dict(peephole=True)], ids=["cifg", "no_input_gate-peephole", "peephole"])
def test_cell_variants_agree_both_ways(onednn, kw):
    """Cells without torch.nn twins: the projection in the steps against the
    GEMM before them (each checked against float64 in test_variants.py)."""
    ours = lstm_fused.LSTM(20, 32, **kw)
    x = torch.randn(10, 6, 20)
    outs = {}
    for where in ("gemm", "step"):
        before = lstm_fused.cpu_input_projection_counts()
        with lstm_fused.use_cpu_input_projection(where):
            out, (h, c) = ours(x)
            out.sum().backward()
        assert in_steps_since(before)[where] == 1
        outs[where] = [out, h, c] + [p.grad.clone() for p in ours.parameters()]
        ours.zero_grad()
    for a, b in zip(outs["gemm"], outs["step"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_auto_is_timed_once_and_kept(onednn):
    torch.ops.lstm_fused._cpu_clear_engine_choices()
    ours = lstm_fused.LSTM(16, 48)
    x = torch.randn(10, 7, 16)
    with torch.no_grad():
        first, _ = ours(x)
        choices = [c for c in lstm_fused.cpu_engine_choices() if c.startswith("input projection")]
        second, _ = ours(x)
    assert len(choices) == 1 and "B=7 I=16 G=192" in choices[0], choices
    assert choices[0].endswith(("-> gemm", "-> step"))
    assert [c for c in lstm_fused.cpu_engine_choices() if c.startswith("input projection")] == choices
    assert torch.equal(first, second)


def test_deterministic_algorithms_keep_the_gemm(onednn):
    torch.ops.lstm_fused._cpu_clear_engine_choices()
    ours = lstm_fused.LSTM(16, 48)
    before = lstm_fused.cpu_input_projection_counts()
    torch.use_deterministic_algorithms(True)
    try:
        with torch.no_grad():
            ours(torch.randn(10, 7, 16))
    finally:
        torch.use_deterministic_algorithms(False)
    assert in_steps_since(before) == {"gemm": 1, "step": 0}
    assert not [c for c in lstm_fused.cpu_engine_choices() if c.startswith("input projection")]


def test_packed_and_16bit_layers_keep_the_gemm(onednn):
    before = lstm_fused.cpu_input_projection_counts()
    with lstm_fused.use_cpu_input_projection("step"):
        ours = lstm_fused.LSTM(16, 32)
        x = torch.randn(9, 4, 16)
        with torch.no_grad():
            packed = torch.nn.utils.rnn.pack_padded_sequence(x, [9, 7, 3, 1])
            ours(packed)
            if lstm_fused.cpu_engine_available("onednn", torch.bfloat16):
                ours.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert in_steps_since(before) == {"gemm": 0, "step": 0}


def test_set_cpu_input_projection_rejects_unknown_names():
    with pytest.raises(ValueError, match="CPU input projection must be one of"):
        lstm_fused.set_cpu_input_projection("fused")
    assert lstm_fused.get_cpu_input_projection() == "auto"


def test_inference_in_steps_takes_no_gates_buffer(onednn):
    """The (T, B, 4H) gates buffer, the largest of an inference call, is
    taken from the host cache only when the projection runs as a GEMM."""
    ours = lstm_fused.LSTM(256, 256)
    x = torch.randn(100, 8, 256)

    def buffers_taken(where):
        lstm_fused.empty_cache()
        s = lstm_fused.cpu_cache_stats()
        with torch.no_grad(), lstm_fused.use_cpu_input_projection(where):
            ours(x)
        t = lstm_fused.cpu_cache_stats()
        return t["hits"] + t["misses"] - s["hits"] - s["misses"], t["cached_bytes"]

    taken, cached = buffers_taken("gemm")
    assert taken == 1 and cached >= 100 * 8 * 4 * 256 * 4
    assert buffers_taken("step") == (0, 0)


@pytest.fixture
def blocks_pin():
    """Pins where the float products that may run on oneDNN's brgemm over column
    blocks run (0 timed, 1 the library, 2 the blocks), and unpins after."""
    yield torch.ops.lstm_fused._cpu_pin_blocks
    torch.ops.lstm_fused._cpu_pin_blocks(0)


def block_runs():
    """Products run on the blocks: [an inference's projection on W_ih's kept
    blocks, a product with a dense right operand (dx = dgates · W_ih), the same
    with the left one stored transposed (dW = dgatesᵀ · x)]."""
    return list(torch.ops.lstm_fused._cpu_block_runs())


@pytest.mark.parametrize("pin", [1, 2], ids=["large-gemm", "kept-blocks"])
@pytest.mark.parametrize("I,H,B,T", [(48, 64, 8, 12), (72, 32, 3, 40)], ids=["plain", "odd-rows"])
def test_projection_before_the_loop_forced(onednn, blocks_pin, pin, I, H, B, T):
    """An inference's projection before the loop on each way, the second call too (its
    layout kept), against nn.LSTM and float64; the kept blocks run only when pinned."""
    blocks_pin(pin)
    ref, ours, ref64 = make_pair(torch.float32, input_size=I, hidden_size=H)
    x = torch.randn(T, B, I, dtype=torch.float64)
    runs = block_runs()
    with lstm_fused.use_cpu_input_projection("gemm"), torch.no_grad():
        for _ in range(2):
            got = ours(x.float())[0]
            want, exact = ref(x.float())[0], ref64(x)[0]
            assert_close_to_reference(got, want, exact, torch.float32, "output")
    assert block_runs()[0] - runs[0] == (2 if pin == 2 else 0)


@pytest.mark.parametrize("pin", [1, 2], ids=["large-gemm", "blocks"])
@pytest.mark.parametrize("I,H,B,T", [(32, 32, 8, 12), (48, 64, 3, 40), (32, 528, 3, 6)],
                         ids=["plain", "odd-rows", "K-chunks"])
def test_gradient_gemms_forced(onednn, blocks_pin, pin, I, H, B, T):
    """dx = dgates · W_ih (K = 4H) and dW = dgatesᵀ · (x, h) on each way, against
    nn.LSTM and float64; H = 528 runs dx's K in three chunks. A training step
    projects on the library (its W_ih changes every step); dx and dW run on the
    blocks only when pinned."""
    blocks_pin(pin)
    ref, ours, ref64 = make_pair(torch.float32, input_size=I, hidden_size=H)
    x = torch.randn(T, B, I, dtype=torch.float64)
    xs = [x.float().requires_grad_(), x.float().requires_grad_(), x.clone().requires_grad_()]
    weights = torch.randn(T, B, H, dtype=torch.float64)
    runs = block_runs()
    for model, xi in zip((ours, ref, ref64), xs):
        out = model(xi)[0]
        (out * weights.to(out.dtype)).sum().backward()
    after = block_runs()
    assert after[0] == runs[0]
    assert after[1] - runs[1] == (1 if pin == 2 else 0)
    assert after[2] - runs[2] == (2 if pin == 2 else 0)
    assert_close_to_reference(xs[0].grad, xs[1].grad, xs[2].grad, torch.float32, "dx")
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0"):
        assert_close_to_reference(getattr(ours, name).grad, getattr(ref, name).grad,
                                  getattr(ref64, name).grad, torch.float32, name)
