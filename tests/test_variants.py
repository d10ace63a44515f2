"""The cell variants (cifg, no_input_gate, peepholes, forget_bias) against the
float64 reference of their equations (lstm_fused._reference): outputs, states
and every gradient, on every CPU engine, layered, bidirectional, projected
and packed; gradcheck and double backward in float64; LSTMCell; parameters,
recording and errors."""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstm_fused
from lstm_fused import _reference
from lstm_fused.functional import _layer_weights
from conftest import BASE_TOL, rel_err

VARIANTS = ["standard", "cifg", "no_input_gate"]
CELLS = [(v, p) for v in VARIANTS for p in (False, True) if (v, p) != ("standard", False)]
CELL_IDS = [f"{v}{'-peephole' if p else ''}" for v, p in CELLS]
TOL = {**BASE_TOL, torch.bfloat16: 6e-2}
CONFIGS = {
    "plain": dict(),
    "bidir-2layer": dict(num_layers=2, bidirectional=True),
    "proj": dict(proj_size=8),
    "nobias": dict(bias=False),
}


def randomize(module):
    """Weights large enough that every gate, peepholes included, matters."""
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-0.6, 0.6)
    return module


def groups_of(module, dtype=torch.float64):
    """Per layer and direction (w_ih, w_hh, b_ih, b_hh, w_hr, w_peep) as
    functional.lstm takes them, cast to dtype."""
    weights = [getattr(module, n).detach().to(dtype).requires_grad_() for n in module._flat_weights_names]
    return _layer_weights(weights, module.num_layers, 2 if module.bidirectional else 1, module.bias,
                          module.proj_size, module.peephole)


def loss_of(out, h, c):
    w = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view(out.shape)
    return (out.double() * w).sum() + h.double().sin().sum() + c.double().sum()


def run_ours(module, x, hx, lengths=None):
    x = x.detach().requires_grad_()
    hx = tuple(t.detach().requires_grad_() for t in hx)
    if lengths is None:
        out, (h, c) = module(x, hx)
    else:
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, (h, c) = module(packed, hx)
        out, _ = pad_packed_sequence(out, total_length=x.shape[0])
    grads = torch.autograd.grad(loss_of(out, h, c), [x, *hx, *[getattr(module, n) for n in module._flat_weights_names]])
    return [out, h, c, *grads]


def run_reference(module, x, hx, lengths=None):
    x = x.detach().double().requires_grad_()
    hx = tuple(t.detach().double().requires_grad_() for t in hx)
    groups = groups_of(module)
    out, h, c = _reference.stack(x, groups, *hx, module.bidirectional,
                                 None if lengths is None else torch.as_tensor(lengths), module.variant)
    weights = [w for g in groups for w in g if w is not None]
    grads = torch.autograd.grad(loss_of(out, h, c), [x, *hx, *weights])
    return [out, h, c, *grads]


def check(got, want, dtype, names):
    assert len(got) == len(want)
    for name, a, b in zip(names, got, want):
        assert a.shape == b.shape, f"{name}: shape {tuple(a.shape)} != {tuple(b.shape)}"
        err = rel_err(a, b)
        assert err <= TOL[dtype], f"{name}: error {err:.3g} > {TOL[dtype]:.3g}"


def names_of(module):
    return ["output", "h_n", "c_n", "grad input", "grad h0", "grad c0",
            *[f"grad {n}" for n in module._flat_weights_names]]


def inputs(module, T=7, B=5, dtype=torch.float32):
    D, L = 2 if module.bidirectional else 1, module.num_layers
    P = module.proj_size or module.hidden_size
    x = torch.randn(T, B, module.input_size, dtype=dtype)
    hx = (torch.randn(D * L, B, P, dtype=dtype), torch.randn(D * L, B, module.hidden_size, dtype=dtype))
    return x, hx


@pytest.mark.parametrize("variant,peephole", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("config", list(CONFIGS), ids=list(CONFIGS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_layers_match_reference(variant, peephole, config, dtype):
    m = randomize(lstm_fused.LSTM(6, 16, variant=variant, peephole=peephole, **CONFIGS[config])).to(dtype)
    x, hx = inputs(m, dtype=dtype)
    check(run_ours(m, x, hx), run_reference(m, x, hx), dtype, names_of(m))


@pytest.mark.parametrize("variant,peephole", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_matches_reference(variant, peephole, bidirectional):
    m = randomize(lstm_fused.LSTM(6, 16, variant=variant, peephole=peephole, bidirectional=bidirectional))
    x, hx = inputs(m)
    lengths = [3, 7, 1, 5, 7]
    check(run_ours(m, x, hx, lengths), run_reference(m, x, hx, lengths), torch.float32, names_of(m))


@pytest.mark.parametrize("engine", ["mkl", "onednn", "aten", "small_batch", "onednn_linear"])
@pytest.mark.parametrize("variant,peephole", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_every_engine(engine, variant, peephole, dtype):
    """Each engine forced, and seen to run (forward step and backward
    product per layer call); H = 32: one fused group in onednn's step."""
    if not lstm_fused.cpu_engine_available(engine, dtype):
        pytest.skip(f"the {engine} engine does not run {dtype} on this CPU")
    m = randomize(lstm_fused.LSTM(24, 32, variant=variant, peephole=peephole)).to(dtype)
    x, hx = inputs(m, T=16, B=4 if engine == "small_batch" else 8, dtype=dtype)
    before = lstm_fused.cpu_engine_counts()[engine]
    with lstm_fused.use_cpu_engine(engine):
        got = run_ours(m, x, hx)
    runs = 1 if engine == "small_batch" else 2  # small_batch runs forward steps only
    assert lstm_fused.cpu_engine_counts()[engine] - before == runs
    check(got, run_reference(m, x, hx), dtype, names_of(m))


@pytest.mark.parametrize("variant,peephole", CELLS, ids=CELL_IDS)
def test_gradcheck(variant, peephole):
    m = randomize(lstm_fused.LSTM(3, 4, variant=variant, peephole=peephole, bidirectional=True)).double()
    x, (h0, c0) = inputs(m, T=4, B=2, dtype=torch.float64)
    params = [getattr(m, n) for n in m._flat_weights_names]

    def f(x, h0, c0, *weights):
        out, (h, c) = lstm_fused.lstm(x, weights, (h0, c0), bidirectional=True, variant=variant, peephole=peephole)
        return out, h, c

    args = (x.requires_grad_(), h0.requires_grad_(), c0.requires_grad_(), *params)
    assert torch.autograd.gradcheck(f, args)
    assert torch.autograd.gradgradcheck(f, args)


@pytest.mark.parametrize("variant,peephole", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("engine", ["mkl", "small_batch", "aten"])
@pytest.mark.parametrize("H", [16, 40])
def test_cell_matches_reference(variant, peephole, dtype, engine, H):
    """Every cell engine (mkl, small_batch: float only; float64 runs on
    aten); H = 40: blocks of 16 units and a partial one."""
    if dtype == torch.float32 and not lstm_fused.cpu_engine_available(engine, dtype):
        pytest.skip(f"the {engine} engine does not run {dtype} on this CPU")
    cell = randomize(lstm_fused.LSTMCell(6, H, variant=variant, peephole=peephole)).to(dtype)
    x, h, c = (torch.randn(5, n, dtype=dtype, requires_grad=True) for n in (6, H, H))
    params = list(cell.parameters())
    ran = "aten" if dtype == torch.float64 else engine
    before = lstm_fused.cpu_engine_counts()[ran]
    with lstm_fused.use_cpu_engine(engine):
        hy, cy = cell(x, (h, c))
    assert lstm_fused.cpu_engine_counts()[ran] - before == 1
    got = [hy, cy, *torch.autograd.grad(loss_of(hy, hy, cy), [x, h, c, *params])]
    p64 = [p.detach().double().requires_grad_() for p in params]
    x64, h64, c64 = (t.detach().double().requires_grad_() for t in (x, h, c))
    peep = p64[4] if peephole else None
    hr, cr = _reference.cell(x64, h64, c64, *p64[:4], variant=variant, w_peep=peep)
    want = [hr, cr, *torch.autograd.grad(loss_of(hr, hr, cr), [x64, h64, c64, *p64])]
    check(got, want, dtype, ["hy", "cy", "grad x", "grad h", "grad c", *[n for n, _ in cell.named_parameters()]])


@pytest.mark.parametrize("variant,peephole", CELLS, ids=CELL_IDS)
def test_cell_gradcheck(variant, peephole):
    cell = randomize(lstm_fused.LSTMCell(3, 4, variant=variant, peephole=peephole)).double()
    x, h, c = (torch.randn(2, n, dtype=torch.float64, requires_grad=True) for n in (3, 4, 4))
    assert torch.autograd.gradcheck(lambda *a: cell(a[0], (a[1], a[2])), (x, h, c))
    assert torch.autograd.gradgradcheck(lambda *a: cell(a[0], (a[1], a[2])), (x, h, c))


def test_standard_reference_is_torch():
    """The reference of the standard cell is torch.nn.LSTM's."""
    ref = torch.nn.LSTM(6, 16, num_layers=2, bidirectional=True, proj_size=8).double()
    ours = lstm_fused.LSTM(6, 16, num_layers=2, bidirectional=True, proj_size=8).double()
    ours.load_state_dict(ref.state_dict())
    x, hx = inputs(ref, dtype=torch.float64)
    out, (h, c) = ref(x, hx)
    rout, rh, rc = _reference.stack(x, groups_of(ours), *hx, True)
    for a, b in ((out, rout), (h, rh), (c, rc)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("variant,rows", [("standard", 4), ("cifg", 3), ("no_input_gate", 3)])
@pytest.mark.parametrize("peephole", [False, True])
def test_parameters(variant, rows, peephole):
    m = lstm_fused.LSTM(5, 8, num_layers=2, bidirectional=True, proj_size=3, variant=variant, peephole=peephole)
    shapes = dict((n, tuple(p.shape)) for n, p in m.named_parameters())
    assert shapes["weight_ih_l0"] == (rows * 8, 5)
    assert shapes["weight_hh_l1_reverse"] == (rows * 8, 3)
    assert shapes["bias_ih_l1"] == (rows * 8,)
    assert shapes["weight_hr_l0"] == (3, 8)
    peep = {n: s for n, s in shapes.items() if "peephole" in n}
    if peephole:
        assert set(peep) == {f"weight_peephole_l{k}{r}" for k in (0, 1) for r in ("", "_reverse")}
        assert set(peep.values()) == {(rows - 1, 8)}  # (i, f, o) or (f, o)
    else:
        assert not peep
    # every parameter is used: each gets a non-zero gradient
    out, (h, c) = m(torch.randn(4, 2, 5))
    (out.sum() + c.sum()).backward()
    for n, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n
    # a state_dict round trip
    m2 = lstm_fused.LSTM(5, 8, num_layers=2, bidirectional=True, proj_size=3, variant=variant, peephole=peephole)
    m2.load_state_dict(m.state_dict())
    x = torch.randn(4, 2, 5)
    torch.testing.assert_close(m2(x)[0], m(x)[0], rtol=0, atol=0)
    cell = lstm_fused.LSTMCell(5, 8, variant=variant, peephole=peephole)
    assert cell.weight_ih.shape == (rows * 8, 5) and cell.bias_hh.shape == (rows * 8,)
    assert hasattr(cell, "weight_peephole") == peephole


@pytest.mark.parametrize("variant", VARIANTS)
def test_forget_bias(variant):
    torch.manual_seed(0)
    plain = lstm_fused.LSTM(5, 64, variant=variant)
    torch.manual_seed(0)
    biased = lstm_fused.LSTM(5, 64, variant=variant, forget_bias=1.0)
    f = 1 if variant == "standard" else 0
    delta = biased.bias_ih_l0 - plain.bias_ih_l0
    torch.testing.assert_close(delta[f * 64:(f + 1) * 64], torch.ones(64))
    assert delta[:f * 64].abs().max() == 0 if f else True
    assert delta[(f + 1) * 64:].abs().max() == 0
    torch.testing.assert_close(biased.bias_hh_l0, plain.bias_hh_l0)
    biased.reset_parameters()  # applied again on re-initialisation
    assert biased.bias_ih_l0[f * 64:(f + 1) * 64].min() > 1.0 - 1.0 / 8 - 1e-6
    cell = lstm_fused.LSTMCell(5, 64, variant=variant, forget_bias=2.0)
    assert cell.bias_ih[f * 64:(f + 1) * 64].min() > 2.0 - 1.0 / 8 - 1e-6
    assert "forget_bias=1.0" in repr(biased)


@pytest.mark.parametrize("variant,peephole", CELLS, ids=CELL_IDS)
def test_recorded_gates(variant, peephole):
    """The recorded i is the one the cell used: 1 − f for cifg, 1 without an
    input gate; every gate matches the reference's."""
    m = randomize(lstm_fused.LSTM(6, 16, variant=variant, peephole=peephole, bidirectional=True)).double()
    x, hx = inputs(m, dtype=torch.float64)
    with lstm_fused.record_gates(m) as rec:
        m(x, hx)
    groups = groups_of(m)
    for d, key in enumerate(("l0", "l0_reverse")):
        w_ih, w_hh, b_ih, b_hh, w_hr, w_peep = groups[d]
        *_, gates, cells = _reference.layer(x, hx[0][d], hx[1][d], w_ih, w_hh, b_ih, b_hh, w_hr, None, d == 1,
                                            return_gates=True, variant=variant, w_peep=w_peep)
        torch.testing.assert_close(rec[key].gates, gates.detach())
        torch.testing.assert_close(rec[key].c, cells.detach())
        i, f = rec[key].gates[:, :, 0], rec[key].gates[:, :, 1]
        if variant == "cifg":
            torch.testing.assert_close(i, 1 - f)
        elif variant == "no_input_gate":
            assert torch.equal(i, torch.ones_like(i))
    cell = randomize(lstm_fused.LSTMCell(6, 16, variant=variant, peephole=peephole))
    with lstm_fused.record_gates(cell) as rec:
        cell(torch.randn(3, 6))
    assert rec["l0"].gates.shape == (1, 3, 4, 16)


def test_func_transforms_and_compile():
    m = randomize(lstm_fused.LSTM(4, 8, variant="cifg", peephole=True)).double()
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    params = dict(m.named_parameters())

    def loss(p):
        out, (h, c) = torch.func.functional_call(m, p, (x,))
        return out.sum() + c.sum()

    got = torch.func.grad(loss)(params)
    want = torch.autograd.grad(loss(params), list(params.values()))
    for (n, a), b in zip(got.items(), want):
        torch.testing.assert_close(a, b, msg=n)
    torch._dynamo.reset()
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x)[0], m(x)[0])


def test_opcheck():
    ops = torch.ops.lstm_fused
    T, B, I, H = 3, 2, 4, 5
    for variant, rows in ((1, 3), (2, 3), (0, 4)):
        for peep in (None, torch.randn(rows - 1, H, requires_grad=True)):
            args = (torch.randn(T, B, I, requires_grad=True), torch.randn(B, H), torch.randn(B, H),
                    torch.randn(rows * H, I, requires_grad=True), torch.randn(rows * H, H), torch.randn(rows * H),
                    torch.randn(rows * H), None, None, False, True, variant, peep)
            torch.library.opcheck(ops.lstm_layer.default, args)
            cargs = (torch.randn(B, I, requires_grad=True), torch.randn(B, H), torch.randn(B, H),
                     torch.randn(rows * H, I), torch.randn(rows * H, H), None, None, True, variant, peep)
            torch.library.opcheck(ops.lstm_cell.default, cargs)


def test_errors():
    err = lstm_fused.LSTMArgumentError
    with pytest.raises(err, match="variant must be one of"):
        lstm_fused.LSTM(4, 8, variant="coupled")
    with pytest.raises(err, match="peephole must be a bool"):
        lstm_fused.LSTM(4, 8, peephole="yes")
    with pytest.raises(err, match="forget_bias needs bias=True"):
        lstm_fused.LSTMCell(4, 8, bias=False, forget_bias=1.0)
    with pytest.raises(err, match="forget_bias must be finite"):
        lstm_fused.LSTM(4, 8, forget_bias=float("nan"))
    std = lstm_fused.LSTM(4, 8)
    x = torch.randn(3, 2, 4)
    weights = [getattr(std, n) for n in std._flat_weights_names]
    with pytest.raises(err, match=r"expected 5 weight tensors"):
        lstm_fused.lstm(x, weights, peephole=True)
    with pytest.raises(err, match=r"weight_peephole of layer 0 \(rows f, o\) must have shape \(2, 8\)"):
        lstm_fused.lstm(x, [torch.randn(24, 4), torch.randn(24, 8), torch.randn(3, 8)], bias=False,
                        variant="cifg", peephole=True)
    with pytest.raises(err, match=r"weight_ih must be \(3H, I\)"):
        lstm_fused.lstm_cell(torch.randn(2, 4), None, *weights, variant="cifg")
    with pytest.raises(RuntimeError, match="variant must be 0"):
        torch.ops.lstm_fused.lstm_layer(x, torch.zeros(2, 8), torch.zeros(2, 8), *weights, None, None, False,
                                        False, 7)


def test_conversions_refuse_variants():
    m = lstm_fused.LSTM(4, 8, variant="cifg")
    with pytest.raises(lstm_fused.LSTMArgumentError, match="cifg"):
        lstm_fused.convert(m, to="torch")
    lstm_fused.convert(lstm_fused.LSTM(4, 8, forget_bias=1.0), to="torch")  # a standard cell converts


@pytest.mark.parametrize("variant,peephole", [("cifg", True), ("no_input_gate", False)])
def test_recorded_gates_packed_projected(variant, peephole):
    """Recording a packed batch (unsorted lengths) through a projected variant:
    the caller's batch order, zeros at the steps a sequence does not run."""
    m = randomize(lstm_fused.LSTM(6, 16, proj_size=8, variant=variant, peephole=peephole)).double()
    x, hx = inputs(m, dtype=torch.float64)
    lengths = torch.tensor([3, 7, 1, 5, 7])
    with lstm_fused.record_gates(m) as rec:
        m(pack_padded_sequence(x, lengths, enforce_sorted=False), hx)
    w_ih, w_hh, b_ih, b_hh, w_hr, w_peep = groups_of(m)[0]
    *_, gates, cells = _reference.layer(x, hx[0][0], hx[1][0], w_ih, w_hh, b_ih, b_hh, w_hr, lengths,
                                        return_gates=True, variant=variant, w_peep=w_peep)
    torch.testing.assert_close(rec["l0"].gates, gates.detach())
    torch.testing.assert_close(rec["l0"].c, cells.detach())
    assert torch.equal(rec["l0"].valid, torch.arange(7).unsqueeze(1) < lengths)
