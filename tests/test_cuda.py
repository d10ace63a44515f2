"""The CUDA kernels against a float64 CPU reference (lstm_fused._reference, plain
torch ops) and against torch.nn on the same GPU: outputs, states and every
gradient, for each dtype and each kernel path forced in turn.

Error bounds. Errors are max |ours - ref| / max(1, max |ref|) against the float64
reference; a quantity passes if its error is within the precision's bound or
within TORCH_FACTOR times torch.nn's own error in that precision, whichever is
larger. The float64 reference is _reference.layer's math (checked against it at small
T) and _reference.cell. The bounds follow from the rounding of each precision:
  fp64   1e-10  (cuBLAS fp64 GEMMs, fp64 pointwise)
  fp32   1e-4   TF32 off: fp32 GEMMs, or 3xTF32 in the persistent kernels
                (operand split error 3·2^-22 per product, below fp32 accumulation
                error sqrt(K)·2^-24 for K <= 4·257); over T = 1000 the state is
                contractive (forget gates < 1), so errors stay ~1e-6..1e-5
  tf32   1e-2   operands rounded to 10 mantissa bits: 2^-11 ≈ 5e-4 relative per
                product, ~1e-3 on a step's pre-activations, a few 1e-3 on c after
                the forget-gate geometric sum, the same order on gradients
  bf16   3e-2   storage of h, c, gates and dgates rounded to 2^-9 ≈ 2e-3, a few
                roundings per step compounded through c
  fp16   5e-3   the same with 2^-12 ≈ 2.4e-4 relative
The unwritten-output check: conftest sets LSTM_FUSED_POISON=1, so every buffer a
kernel must overwrite starts as NaN, and NaN never passes.
"""
import contextlib
import copy
import functools
import math
import os

import pytest
import torch

import lstm_fused
from lstm_fused import _reference
from conftest import rel_err

CUDA = torch.cuda.is_available() and lstm_fused.cuda_compiled()
# On the GPU machine (bench/gpu_check.sh) a silent skip of every test would read as a pass.
if os.environ.get("LSTM_FUSED_REQUIRE_CUDA") == "1" and not CUDA:
    raise RuntimeError(
        "LSTM_FUSED_REQUIRE_CUDA=1 but the CUDA tests cannot run: "
        f"torch.cuda.is_available()={torch.cuda.is_available()}, "
        f"lstm_fused.cuda_compiled()={lstm_fused.cuda_compiled()}")
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not CUDA, reason="needs a CUDA device and a CUDA build of lstm_fused")]

ops = torch.ops.lstm_fused
# LSTM_FUSED_PATH=step: bench/gpu_check.sh after a hung persistent kernel; only
# the per-step path is exercised then.
STEP_ONLY = os.environ.get("LSTM_FUSED_PATH") == "step"
PATHS = ("step",) if STEP_ONLY else ("persistent", "step", "auto")
needs_persistent = pytest.mark.skipif(STEP_ONLY, reason="LSTM_FUSED_PATH=step")
# precision name -> (dtype, TF32 allowed)
PRECISIONS = {
    "fp64": (torch.float64, False),
    "fp32": (torch.float32, False),
    "tf32": (torch.float32, True),
    "bf16": (torch.bfloat16, False),
    "fp16": (torch.float16, False),
}
BOUND = {"fp64": 1e-10, "fp32": 1e-4, "tf32": 1e-2, "bf16": 3e-2, "fp16": 5e-3}
TORCH_FACTOR = 4.0

LAYER_NAMES = ["output", "h_n", "c_n", "grad input", "grad h0", "grad c0", "grad w_ih",
               "grad w_hh", "grad b_ih", "grad b_hh"]
CELL_NAMES = ["h'", "c'", "grad input", "grad h", "grad c", "grad w_ih", "grad w_hh",
              "grad b_ih", "grad b_hh"]


@contextlib.contextmanager
def tf32(enabled):
    """TF32 for cuBLAS (what the kernels follow) and cuDNN (what torch.nn.LSTM follows)."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def counts():
    """Launches so far: [persistent forward, persistent backward, fused cell]."""
    return list(ops._cuda_kernel_counts())


def plan(dtype, backward, B, H, allow_tf32=False):
    with tf32(allow_tf32):
        ok, HS, blocks, smem, mode = ops._cuda_persistent_plan(
            torch.cuda.current_device(), dtype, backward, B, H)[:5]
    return bool(ok), HS, blocks, smem


def check(names, ours, theirs, ref, prec, what):
    failures = []
    for name, a, b, r in zip(names, ours, theirs, ref):
        assert a.shape == r.shape, f"{what} {name}: shape {tuple(a.shape)} != {tuple(r.shape)}"
        e_ours = rel_err(a.cpu(), r)
        e_torch = rel_err(b.cpu(), r) if b is not None else 0.0
        bound = max(BOUND[prec], TORCH_FACTOR * e_torch)
        if not e_ours <= bound:  # NaN fails too
            failures.append(f"{name}: error {e_ours:.3g} > bound {bound:.3g} (torch.nn {e_torch:.3g})")
    assert not failures, f"{what}: " + "; ".join(failures)


def _uniform(gen, *shape, scale=1.0):
    return (torch.rand(*shape, generator=gen, dtype=torch.float64) * 2 - 1) * scale


# ------------------------------------------------------------------- layer
def reference_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse):
    """_reference.layer's math (no lengths, no projection) with the steps taken by
    unbind: its backward is one stack, where indexing xp[t] makes each step's
    backward write a (T, B, 4H) zero tensor (minutes at T = 1000)."""
    xp = x @ w_ih.t()
    if b_ih is not None:
        xp = xp + (b_ih + b_hh)
    steps = xp.unbind(0)
    T = len(steps)
    h, c = h0, c0
    outs = [None] * T
    for s in range(T):
        t = T - 1 - s if reverse else s
        i, f, g, o = (steps[t] + h @ w_hh.t()).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs[t] = h
    return torch.stack(outs), h, c


@functools.lru_cache(maxsize=None)
def layer_problem(T, B, I, H, reverse, bias=True, seed=0):
    """float64 CPU inputs, output cotangents, and the reference's results and gradients."""
    g = torch.Generator().manual_seed(seed + 1000 * T + 100 * B + 10 * I + H)
    k = 1.0 / math.sqrt(H)
    x = torch.randn(T, B, I, generator=g, dtype=torch.float64)
    h0, c0 = _uniform(g, B, H), _uniform(g, B, H, scale=2.0)
    w_ih, w_hh = _uniform(g, 4 * H, I, scale=k), _uniform(g, 4 * H, H, scale=k)
    b_ih = _uniform(g, 4 * H, scale=k) if bias else None
    b_hh = _uniform(g, 4 * H, scale=k) if bias else None
    inputs = (x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    cot = (torch.randn(T, B, H, generator=g, dtype=torch.float64),
           torch.randn(B, H, generator=g, dtype=torch.float64),
           torch.randn(B, H, generator=g, dtype=torch.float64))
    leaves = [t.clone().requires_grad_() if t is not None else None for t in inputs]
    out, h, c = reference_layer(*leaves, reverse=reverse)
    if T <= 8:  # the package's own reference agrees (it is slow to differentiate at large T)
        with torch.no_grad():
            want = _reference.layer(*inputs, reverse=reverse)
        assert all(torch.allclose(a, b, rtol=1e-12, atol=1e-12) for a, b in zip((out, h, c), want))
    live = [t for t in leaves if t is not None]
    grads = torch.autograd.grad((out, h, c), live, cot)
    return inputs, cot, [out.detach(), h.detach(), c.detach()] + list(grads)


def ours_layer(inputs, cot, dtype, reverse):
    leaves = [t.to("cuda", dtype).requires_grad_() if t is not None else None for t in inputs]
    out, h, c, _, _ = ops.lstm_layer(*leaves, None, None, reverse, True)
    live = [t for t in leaves if t is not None]
    grads = torch.autograd.grad((out, h, c), live, [t.to("cuda", dtype) for t in cot])
    return [out.detach(), h.detach(), c.detach()] + list(grads)


@functools.lru_cache(maxsize=None)
def torch_layer(key, prec):
    """torch.nn.LSTM (cuDNN) on the same problem in the same precision; a reverse
    layer is the forward layer over the time-flipped input."""
    T, B, I, H, reverse, bias = key
    inputs, cot, _ = layer_problem(*key)
    dtype, allow = PRECISIONS[prec]
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = inputs
    m = torch.nn.LSTM(I, H, bias=bias).to("cuda", dtype)
    with torch.no_grad():
        m.weight_ih_l0.copy_(w_ih)
        m.weight_hh_l0.copy_(w_hh)
        if bias:
            m.bias_ih_l0.copy_(b_ih)
            m.bias_hh_l0.copy_(b_hh)
    with tf32(allow):
        xs, hs, cs = (t.to("cuda", dtype).requires_grad_() for t in (x, h0, c0))
        out, (h, c) = m(xs.flip(0) if reverse else xs, (hs.unsqueeze(0), cs.unsqueeze(0)))
        out = out.flip(0) if reverse else out
        grads = torch.autograd.grad((out, h[0], c[0]), [xs, hs, cs] + list(m.parameters()),
                                    [t.to("cuda", dtype) for t in cot])
    return [t.detach().cpu() for t in [out, h[0], c[0]] + list(grads)]


LAYER_SHAPES = [  # T, B, I, H
    (1, 1, 3, 1),
    (4, 3, 7, 33),
    (3, 65, 20, 100),
    (2, 3, 9, 257),
    (1000, 3, 8, 33),
    (1000, 65, 16, 100),
]


@pytest.mark.parametrize("shape", LAYER_SHAPES, ids=lambda s: "T{}_B{}_I{}_H{}".format(*s))
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("prec", list(PRECISIONS))
def test_layer_matches_reference(prec, path, reverse, shape):
    T, B, I, H = shape
    key = (T, B, I, H, reverse, True)
    inputs, cot, ref = layer_problem(*key)
    dtype, allow = PRECISIONS[prec]
    theirs = torch_layer(key, prec)
    before = counts()
    with tf32(allow), lstm_fused.use_path(path):
        ours = ours_layer(inputs, cot, dtype, reverse)
    after = counts()
    check(LAYER_NAMES, ours, theirs, ref, prec, f"{prec} {path} T={T} B={B} H={H}")
    # The path that ran is the one asked for.
    if path == "step" or dtype == torch.float64:
        assert after[:2] == before[:2], "a persistent kernel ran"
    else:
        fwd_ok = plan(dtype, False, B, H, allow)[0]
        bwd_ok = plan(dtype, True, B, H, allow)[0]
        assert after[0] - before[0] == int(fwd_ok), "persistent forward launches"
        assert after[1] - before[1] == int(bwd_ok), "persistent backward launches"


def expected_blocks(H, backward):
    """The planner's grid with one block per SM: the fewest hidden units per
    block (multiples of 2 forward, of 8 backward) whose blocks all fit on the SMs."""
    sms = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
    step = 8 if backward else 2
    hs = step
    while math.ceil(H / hs) > sms:
        hs += step
    return math.ceil(H / hs)


@needs_persistent
@pytest.mark.parametrize("B", [8, 64])
@pytest.mark.parametrize("prec", ["fp32", "bf16"])
def test_persistent_plans_exist_and_launch(prec, B):
    """The benchmark shapes have persistent plans with the expected grids (a
    failed cudaFuncSetAttribute or occupancy query would leave no plan, cached,
    and every call on the per-step path), and one layer call launches the
    persistent forward and backward once each, on the default path."""
    dtype, allow = PRECISIONS[prec]
    H = 512
    for backward in (False, True):
        ok, HS, blocks, smem = plan(dtype, backward, B, H, allow)
        assert ok, f"no persistent {'backward' if backward else 'forward'} plan at B={B}, H={H}"
        assert blocks == expected_blocks(H, backward), (backward, HS, blocks)
    key = (3, B, 16, H, False, True)
    inputs, cot, ref = layer_problem(*key)
    before = counts()
    with tf32(allow), lstm_fused.use_path("auto"):
        ours = ours_layer(inputs, cot, dtype, False)
    after = counts()
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1), "persistent launches per layer call"
    check(LAYER_NAMES, ours, torch_layer(key, prec), ref, prec, f"{prec} B={B} H={H}")


def test_layer_without_bias_and_need_grad_false():
    key = (5, 4, 6, 40, False, False)
    inputs, cot, ref = layer_problem(*key)
    for path in [p for p in ("persistent", "step") if p in PATHS]:
        with lstm_fused.use_path(path):
            ours = ours_layer(inputs, cot, torch.float32, False)
            x, h0, c0, w_ih, w_hh = (t.cuda().float() for t in inputs[:5])
            out, h, c, gates, cells = ops.lstm_layer(x, h0, c0, w_ih, w_hh, None, None, None, None,
                                                     False, False)
        assert gates.numel() == 0 and cells.numel() == 0
        check(LAYER_NAMES[:3], [out, h, c], [None] * 3, ref[:3], "fp32", f"{path} need_grad=False")
        check(LAYER_NAMES[:8], ours, [None] * 8, ref, "fp32", f"{path} no bias")


@needs_persistent
@pytest.mark.parametrize("prec", ["fp32", "bf16", "fp16"])
def test_capacity(prec):
    """At the largest H whose forward plan fits on chip, and above it: the
    persistent kernels where a plan exists, the per-step path otherwise, the
    same results either way (forward and backward may take different paths)."""
    dtype, allow = PRECISIONS[prec]
    B = 8
    lo, hi = 1, 8192
    if not plan(dtype, False, B, lo, allow)[0]:
        pytest.skip("no persistent plan at all on this device")
    while hi - lo > 1:  # the plan's feasibility is monotone in H
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if plan(dtype, False, B, mid, allow)[0] else (lo, mid)
    for H in (lo, lo + 1):
        key = (3, B, 16, H, False, True)
        inputs, cot, ref = layer_problem(*key)
        fwd_ok, bwd_ok = plan(dtype, False, B, H, allow)[0], plan(dtype, True, B, H, allow)[0]
        assert fwd_ok == (H == lo)
        before = counts()
        with tf32(allow), lstm_fused.use_path("persistent"):
            ours = ours_layer(inputs, cot, dtype, False)
        after = counts()
        assert after[0] - before[0] == int(fwd_ok) and after[1] - before[1] == int(bwd_ok)
        check(LAYER_NAMES, ours, torch_layer(key, prec), ref, prec, f"{prec} H={H}")


@needs_persistent
def test_batch_over_persistent_limit_falls_back():
    key = (3, 300, 5, 24, False, True)
    inputs, cot, ref = layer_problem(*key)
    before = counts()
    with lstm_fused.use_path("persistent"):
        ours = ours_layer(inputs, cot, torch.float32, False)
    assert counts()[:2] == before[:2]
    check(LAYER_NAMES, ours, torch_layer(key, "fp32"), ref, "fp32", "B=300")


@needs_persistent
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_persistent_is_deterministic(dtype):
    key = (50, 7, 12, 96, False, True)
    inputs, cot, _ = layer_problem(*key)
    with lstm_fused.use_path("persistent"):
        a = ours_layer(inputs, cot, dtype, False)
        b = ours_layer(inputs, cot, dtype, False)
    for name, x, y in zip(LAYER_NAMES, a, b):
        assert torch.equal(x, y), f"{name} differs between two identical runs"


def test_current_stream_is_used():
    key = (20, 5, 6, 48, True, True)
    inputs, cot, ref = layer_problem(*key)
    side = torch.cuda.Stream()
    for path in PATHS:
        with torch.cuda.stream(side), lstm_fused.use_path(path):
            ours = ours_layer(inputs, cot, torch.float32, True)
        side.synchronize()
        check(LAYER_NAMES, ours, [None] * 10, ref, "fp32", f"side stream, {path}")


def test_degenerate_sizes():
    for path in PATHS:
        with lstm_fused.use_path(path):
            x = torch.randn(0, 3, 4, device="cuda")
            h0, c0 = torch.randn(3, 5, device="cuda"), torch.randn(3, 5, device="cuda")
            w_ih, w_hh = torch.randn(20, 4, device="cuda"), torch.randn(20, 5, device="cuda")
            out, h, c, _, _ = ops.lstm_layer(x, h0, c0, w_ih, w_hh, None, None, None, None, False, True)
            assert out.shape == (0, 3, 5) and torch.equal(h, h0) and torch.equal(c, c0)
            x = torch.randn(4, 0, 4, device="cuda")
            out, h, c, _, _ = ops.lstm_layer(x, h0[:0], c0[:0], w_ih, w_hh, None, None, None, None,
                                             False, True)
            assert out.shape == (4, 0, 5)


# ------------------------------------------------------------------ module
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("prec", ["fp32", "tf32", "bf16", "fp16"])
def test_module_matches_nn(prec, path):
    """Two layers, both directions, batch_first (a non-contiguous input), with a
    projection-free stack: lstm_fused.LSTM against torch.nn.LSTM on the GPU."""
    dtype, allow = PRECISIONS[prec]
    torch.manual_seed(0)
    kw = dict(input_size=24, hidden_size=40, num_layers=2, bidirectional=True, batch_first=True)
    ref = torch.nn.LSTM(**kw)
    ours = lstm_fused.LSTM(**kw)
    ours.load_state_dict(ref.state_dict())
    ref64 = torch.nn.LSTM(**kw).double()
    ref64.load_state_dict(ref.state_dict())
    x = torch.randn(6, 30, 24, dtype=torch.float64)
    hx = (torch.randn(4, 6, 40, dtype=torch.float64), torch.randn(4, 6, 40, dtype=torch.float64))

    def run(model, device, dt):
        model = model.to(device, dt)
        xs = x.to(device, dt).requires_grad_()
        hs = tuple(t.to(device, dt).requires_grad_() for t in hx)
        out, (h, c) = model(xs, hs)
        w = torch.linspace(-1, 1, out.numel(), dtype=torch.float64, device=device).view(out.shape)
        loss = (out.double() * w).sum() + h.double().sin().sum() + (c.double() * 0.5).sum()
        grads = torch.autograd.grad(loss, [xs, *hs] + list(model.parameters()))
        return [t.detach().cpu() for t in [out, h, c] + list(grads)]

    with tf32(allow):
        with lstm_fused.use_path(path):
            got = run(ours, "cuda", dtype)
        theirs = run(ref, "cuda", dtype)
    want = run(ref64, "cpu", torch.float64)
    names = ["output", "h_n", "c_n", "grad x", "grad h0", "grad c0"] + [n for n, _ in ours.named_parameters()]
    check(names, got, theirs, want, prec, f"module {prec} {path}")


# -------------------------------------------------------------------- cell
@functools.lru_cache(maxsize=None)
def cell_problem(B, I, H, seed=0):
    g = torch.Generator().manual_seed(seed + 100 * B + 10 * I + H)
    k = 1.0 / math.sqrt(H)
    x = torch.randn(B, I, generator=g, dtype=torch.float64)
    hx, cx = _uniform(g, B, H), _uniform(g, B, H, scale=2.0)
    w_ih, w_hh = _uniform(g, 4 * H, I, scale=k), _uniform(g, 4 * H, H, scale=k)
    b_ih, b_hh = _uniform(g, 4 * H, scale=k), _uniform(g, 4 * H, scale=k)
    inputs = (x, hx, cx, w_ih, w_hh, b_ih, b_hh)
    cot = (torch.randn(B, H, generator=g, dtype=torch.float64),
           torch.randn(B, H, generator=g, dtype=torch.float64))
    leaves = [t.clone().requires_grad_() for t in inputs]
    hy, cy = _reference.cell(*leaves)
    grads = torch.autograd.grad((hy, cy), leaves, cot)
    return inputs, cot, [hy.detach(), cy.detach()] + list(grads)


@functools.lru_cache(maxsize=None)
def torch_cell(key, prec):
    inputs, cot, _ = cell_problem(*key)
    dtype, allow = PRECISIONS[prec]
    x, hx, cx, w_ih, w_hh, b_ih, b_hh = inputs
    B, I = x.shape
    H = hx.shape[1]
    m = torch.nn.LSTMCell(I, H).to("cuda", dtype)
    with torch.no_grad():
        for p, v in zip(m.parameters(), (w_ih, w_hh, b_ih, b_hh)):
            p.copy_(v)
    with tf32(allow):
        xs, hs, cs = (t.to("cuda", dtype).requires_grad_() for t in (x, hx, cx))
        hy, cy = m(xs, (hs, cs))
        grads = torch.autograd.grad((hy, cy), [xs, hs, cs] + list(m.parameters()),
                                    [t.to("cuda", dtype) for t in cot])
    return [t.detach().cpu() for t in [hy, cy] + list(grads)]


CELL_SHAPES = [(1, 3, 1), (3, 7, 33), (64, 20, 100), (65, 5, 257), (8, 256, 256)]


@pytest.mark.parametrize("shape", CELL_SHAPES, ids=lambda s: "B{}_I{}_H{}".format(*s))
@pytest.mark.parametrize("path", ["auto", "step"])
@pytest.mark.parametrize("prec", list(PRECISIONS))
def test_cell_matches_reference(prec, path, shape):
    inputs, cot, ref = cell_problem(*shape)
    dtype, allow = PRECISIONS[prec]
    theirs = torch_cell(shape, prec)
    before = counts()
    with tf32(allow), lstm_fused.use_path(path):
        leaves = [t.to("cuda", dtype).requires_grad_() for t in inputs]
        hy, cy, _ = ops.lstm_cell(*leaves, True)
        grads = torch.autograd.grad((hy, cy), leaves, [t.to("cuda", dtype) for t in cot])
    fused = counts()[2] - before[2]
    expect_fused = path != "step" and dtype != torch.float64 and shape[0] <= 64
    assert fused == int(expect_fused), "fused cell launches"
    check(CELL_NAMES, [hy, cy] + list(grads), theirs, ref, prec, f"cell {prec} {path} {shape}")


def test_cell_module_without_state_and_bias():
    for path in ("auto", "step"):
        with lstm_fused.use_path(path):
            torch.manual_seed(1)
            ref = torch.nn.LSTMCell(10, 20, bias=False).cuda()
            ours = lstm_fused.LSTMCell(10, 20, bias=False).cuda()
            ours.load_state_dict(ref.state_dict())
            x = torch.randn(5, 10, device="cuda")
            with tf32(False):
                a, b = ours(x), ref(x)
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("path", ["auto", "step"])
@pytest.mark.parametrize("variant,peephole", [("cifg", False), ("no_input_gate", True), ("standard", True)])
@pytest.mark.parametrize("prec", ["fp32", "bf16"])
def test_variants_and_recording(variant, peephole, prec, path):
    """The cell variants on the persistent and fused cell kernels ("auto": one
    persistent forward and backward per layer and direction, one fused cell
    launch) and on the per-step path, against a float64 CPU run; the recorded
    gates too."""
    dtype = PRECISIONS[prec][0]
    torch.manual_seed(3)
    cpu = lstm_fused.LSTM(24, 64, num_layers=2, bidirectional=True, variant=variant, peephole=peephole)
    with torch.no_grad():
        for p in cpu.parameters():
            p.uniform_(-0.5, 0.5)
    gpu = copy.deepcopy(cpu).cuda().to(dtype)
    cpu = cpu.double()
    x = torch.randn(20, 8, 24, dtype=torch.float64)

    def run(m, x):
        x = x.detach().requires_grad_()
        with lstm_fused.record_gates(m) as rec:
            out, (h, c) = m(x)
        (out.double().sum() + c.double().sin().sum()).backward()
        return [out, h, c, x.grad, *[p.grad for p in m.parameters()]], rec

    persistent = 4 if path == "auto" else 0  # 2 layers x 2 directions
    before = counts()
    with tf32(False), lstm_fused.use_path(path):
        got, rec = run(gpu, x.cuda().to(dtype))
    torch.cuda.synchronize()
    ran = [a - b for a, b in zip(counts(), before)]
    assert ran == [persistent, persistent, 0], f"kernel launches {ran} on path {path}"
    want, rec64 = run(cpu, x)
    for k, (a, r) in enumerate(zip(got, want)):
        assert rel_err(a.cpu(), r) <= BOUND[prec], f"tensor {k}: error {rel_err(a.cpu(), r):.3g}"
    for key in ("l0", "l0_reverse", "l1", "l1_reverse"):
        assert rel_err(rec[key].gates.cpu(), rec64[key].gates) <= BOUND[prec], key
    cell64 = lstm_fused.LSTMCell(24, 64, variant=variant, peephole=peephole).double()
    cell = copy.deepcopy(cell64).cuda().to(dtype)
    xc = torch.randn(8, 24, dtype=torch.float64)
    before = counts()
    with tf32(False), lstm_fused.use_path(path):
        hy, cy = cell(xc.cuda().to(dtype))
    torch.cuda.synchronize()
    want_h, want_c = cell64(xc)
    assert rel_err(hy.cpu(), want_h) <= BOUND[prec] and rel_err(cy.cpu(), want_c) <= BOUND[prec]
    ran = [a - b for a, b in zip(counts(), before)]
    assert ran == [0, 0, 1 if path == "auto" else 0], f"kernel launches {ran} on path {path}"
