"""ONNX export of lstm_fused.LSTM / LSTMCell / lstm with both exporters
(dynamo=True and dynamo=False): the exported model runs in onnxruntime and is
compared with the module in eager mode, at other batch sizes and sequence
lengths than the export's sample where the axes are dynamic."""
import warnings

import pytest
import torch

import lstm_fused

onnx = pytest.importorskip("onnx", reason="ONNX export tests need the [onnx] extra: pip install .[onnx]")
pytest.importorskip("onnxscript", reason="ONNX export tests need the [onnx] extra: pip install .[onnx]")
ort = pytest.importorskip("onnxruntime", reason="ONNX export tests need the [onnx] extra: pip install .[onnx]")

EXPORTERS = [pytest.param(True, id="dynamo"), pytest.param(False, id="torchscript")]
TOL = dict(rtol=2e-5, atol=2e-5)


def export(model, args, names, dynamic, dynamo, path):
    """Exports `model` on `args` (inputs named `names`); dynamic: {name: {dim: axis name}}.
    Returns the onnxruntime session and the ONNX graph's node types."""
    if dynamo:
        dims = {}
        shapes = tuple({d: dims.setdefault(a, torch.export.Dim(a, min=1 if a == "B" else 2, max=64))
                        for d, a in dynamic.get(n, {}).items()} or None for n in names)
        kw = dict(dynamic_shapes=shapes)
    else:
        kw = dict(dynamic_axes=dynamic)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), dynamo=dynamo, input_names=list(names), **kw)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]), [n.op_type for n in proto.graph.node]


def run(session, names, args):
    outs = session.run(None, {n: a.numpy() for n, a in zip(names, args)})
    return [torch.from_numpy(o) for o in outs]


def flat(out):
    """output, (output, (h_n, c_n)) or (h, c) -> a flat list of tensors."""
    if isinstance(out, torch.Tensor):
        return [out]
    y, rest = out
    return [y, *rest] if isinstance(rest, tuple) else [y, rest]


def check(session, names, model, args, where=""):
    """The exported model's outputs in onnxruntime against the module's in eager mode."""
    with torch.no_grad():
        want = flat(model(*args))
    got = run(session, names, args)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        torch.testing.assert_close(g, w, **TOL, msg=lambda m: f"output {i}{where}: {m}")


class WithState(torch.nn.Module):
    def __init__(self, lstm):
        super().__init__()
        self.lstm = lstm

    def forward(self, x, h0, c0):
        return self.lstm(x, (h0, c0))


class NoState(torch.nn.Module):
    def __init__(self, lstm):
        super().__init__()
        self.lstm = lstm

    def forward(self, x):
        return self.lstm(x)


LSTM_CASES = [
    # num_layers, bidirectional, batch_first, with (h0, c0), bias
    (1, False, False, False, True),
    (1, True, True, True, True),
    (2, True, False, True, True),
    (2, True, True, False, True),
    (3, False, True, True, True),
    (3, True, False, False, True),
    (2, False, False, True, False),
]


@pytest.mark.parametrize("dynamo", EXPORTERS)
@pytest.mark.parametrize("L,bidir,batch_first,state,bias", LSTM_CASES)
def test_lstm_export(tmp_path, dynamo, L, bidir, batch_first, state, bias):
    I, H, D = 5, 8, 2 if bidir else 1
    lstm = lstm_fused.LSTM(I, H, num_layers=L, bidirectional=bidir, batch_first=batch_first, bias=bias).eval()

    def sample(B, T):
        x = torch.randn(B, T, I) if batch_first else torch.randn(T, B, I)
        return (x, torch.randn(L * D, B, H), torch.randn(L * D, B, H)) if state else (x,)

    xdyn = {0: "B", 1: "T"} if batch_first else {0: "T", 1: "B"}
    names = ["x", "h0", "c0"] if state else ["x"]
    dynamic = {"x": xdyn, "h0": {1: "B"}, "c0": {1: "B"}} if state else {"x": xdyn}
    model = WithState(lstm) if state else NoState(lstm)
    session, nodes = export(model, sample(3, 6), names, dynamic, dynamo, tmp_path / "m.onnx")
    assert nodes.count("LSTM") == L, nodes
    for B, T in [(3, 6), (1, 2), (5, 11)]:
        args = sample(B, T)
        check(session, names, model, args, f" (output, h_n, c_n) at B={B}, T={T}")


@pytest.mark.parametrize("dynamo", EXPORTERS)
def test_lstm_proj_size_export(tmp_path, dynamo):
    """ONNX's LSTM has no projection: plain ops, unrolled over the export's T."""
    L, I, H, P, T = 2, 4, 8, 3, 5
    lstm = lstm_fused.LSTM(I, H, num_layers=L, bidirectional=True, proj_size=P).eval()
    model = WithState(lstm)
    names = ["x", "h0", "c0"]
    sample = lambda B: (torch.randn(T, B, I), torch.randn(2 * L, B, P), torch.randn(2 * L, B, H))  # noqa: E731
    dynamic = {"x": {1: "B"}, "h0": {1: "B"}, "c0": {1: "B"}}
    session, nodes = export(model, sample(2), names, dynamic, dynamo, tmp_path / "m.onnx")
    assert "LSTM" not in nodes
    for B in (2, 4):
        args = sample(B)
        check(session, names, model, args, f" at B={B}")


class WithLengths(torch.nn.Module):
    def __init__(self, lstm):
        super().__init__()
        self.lstm = lstm

    def forward(self, x, lengths):
        weights = [getattr(self.lstm, n) for n in self.lstm._flat_weights_names]
        return lstm_fused.lstm(x, weights, num_layers=self.lstm.num_layers, bidirectional=self.lstm.bidirectional,
                               batch_first=True, proj_size=self.lstm.proj_size, lengths=lengths)


@pytest.mark.parametrize("dynamo", EXPORTERS)
@pytest.mark.parametrize("proj", [0, 2])
def test_lengths_export(tmp_path, dynamo, proj):
    """lengths= becomes the ONNX LSTM's sequence_lens, in any order; with
    proj_size the plain ops mask the steps past each sequence's end."""
    I, H = 4, 6
    model = WithLengths(lstm_fused.LSTM(I, H, num_layers=2, bidirectional=True, batch_first=True,
                                        proj_size=proj).eval())
    names = ["x", "lengths"]
    dynamic = {"x": {0: "B"} if proj else {0: "B", 1: "T"}, "lengths": {0: "B"}}
    session, nodes = export(model, (torch.randn(3, 5, I), torch.tensor([5, 3, 1])), names, dynamic, dynamo,
                            tmp_path / "m.onnx")
    assert nodes.count("LSTM") == (0 if proj else 2), nodes
    cases = [([5, 3, 1], 5), ([2, 5, 4, 1], 5)] + ([] if proj else [([3, 9, 1, 9], 9)])
    for lengths, T in cases:
        check(session, names, model, (torch.randn(len(lengths), T, I), torch.tensor(lengths)))


@pytest.mark.parametrize("dynamo", EXPORTERS)
def test_unbatched_export(tmp_path, dynamo):
    model = NoState(lstm_fused.LSTM(4, 6, num_layers=2, bidirectional=True).eval())
    session, _ = export(model, (torch.randn(5, 4),), ["x"], {"x": {0: "T"}}, dynamo, tmp_path / "m.onnx")
    for T in (5, 9):
        x = torch.randn(T, 4)
        check(session, ["x"], model, (x,), f" at T={T}")


class CellModel(torch.nn.Module):
    def __init__(self, cell, state):
        super().__init__()
        self.cell, self.state = cell, state

    def forward(self, x, h=None, c=None):
        return self.cell(x, (h, c) if self.state else None)


@pytest.mark.parametrize("dynamo", EXPORTERS)
@pytest.mark.parametrize("state,bias", [(True, True), (False, True), (True, False)])
def test_cell_export(tmp_path, dynamo, state, bias):
    I, H = 5, 7
    model = CellModel(lstm_fused.LSTMCell(I, H, bias=bias).eval(), state)
    sample = lambda B: (torch.randn(B, I), torch.randn(B, H), torch.randn(B, H)) if state else (torch.randn(B, I),)  # noqa: E731
    names = ["x", "h", "c"][:3 if state else 1]
    session, nodes = export(model, sample(3), names, {n: {0: "B"} for n in names}, dynamo, tmp_path / "m.onnx")
    assert nodes.count("LSTM") == 1, nodes
    for B in (3, 1, 6):
        args = sample(B)
        check(session, names, model, args, f" at B={B}")


@pytest.mark.parametrize("dynamo", EXPORTERS)
def test_model_mixing_layers_export(tmp_path, dynamo):
    """A model of several layers around the LSTM, as users export them."""

    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(20, 6)
            self.lstm = lstm_fused.LSTM(6, 8, num_layers=2, bidirectional=True, batch_first=True)
            self.head = torch.nn.Linear(16, 3)

        def forward(self, tokens):
            out, _ = self.lstm(self.embed(tokens))
            return self.head(out)

    model = Tagger().eval()
    session, _ = export(model, (torch.randint(0, 20, (2, 5)),), ["tokens"], {"tokens": {0: "B", 1: "T"}}, dynamo,
                        tmp_path / "m.onnx")
    tokens = torch.randint(0, 20, (4, 9))
    check(session, ["tokens"], model, (tokens,))


def test_training_dropout_refused(tmp_path):
    """The dynamo exporter traces the model in its mode (the TorchScript one
    switches to eval()): dropout in training mode is refused, naming it."""
    model = NoState(lstm_fused.LSTM(4, 6, num_layers=2, dropout=0.5)).train()
    with pytest.raises(Exception) as info:
        export(model, (torch.randn(5, 2, 4),), ["x"], {}, True, tmp_path / "m.onnx")
    assert isinstance(info.value.__cause__, lstm_fused.LSTMArgumentError)
    assert "dropout" in str(info.value.__cause__)


def test_not_exporting_outside_onnx_export():
    """torch.export and torch.jit.trace keep the compiled ops (only ONNX export swaps them)."""
    model = NoState(lstm_fused.LSTM(4, 6)).eval()
    ep = torch.export.export(model, (torch.randn(5, 2, 4),))
    assert any("lstm_fused" in str(n.target) for n in ep.graph.nodes)
    assert not lstm_fused.onnx_export.exporting()


def test_onnx_reference_matches_module():
    """The values the TorchScript exporter's trace computes (ONNX LSTM's
    semantics on ONNX-ordered weights) are the module's."""
    from lstm_fused.onnx_export import _onnx_gate_order, _onnx_reference

    I, H, B, T = 4, 5, 3, 6
    lstm = lstm_fused.LSTM(I, H, bidirectional=True)
    x, h0, c0, lengths = torch.randn(T, B, I), torch.randn(2, B, H), torch.randn(2, B, H), torch.tensor([6, 2, 4])
    stack = lambda name: torch.stack([_onnx_gate_order(getattr(lstm, name + s), H) for s in ("_l0", "_l0_reverse")])  # noqa: E731
    bias = torch.cat([stack("bias_ih"), stack("bias_hh")], 1)
    with torch.no_grad():
        y, hy, cy = _onnx_reference(x, stack("weight_ih"), stack("weight_hh"), bias, lengths, h0, c0)
        weights = [getattr(lstm, n) for n in lstm._flat_weights_names]
        want, (h_n, c_n) = lstm_fused.lstm(x, weights, (h0, c0), bidirectional=True, lengths=lengths)
    torch.testing.assert_close(y.transpose(1, 2).flatten(2), want)
    torch.testing.assert_close(hy, h_n)
    torch.testing.assert_close(cy, c_n)


@pytest.mark.parametrize("dynamo", EXPORTERS)
@pytest.mark.parametrize("proj", [0, 3])
def test_peephole_export(tmp_path, dynamo, proj):
    """Peepholes become the ONNX LSTM's P input (projected layers: plain ops);
    an LSTMCell with peepholes, a one-step node with P."""
    I, H, L = 5, 8, 2
    lstm = lstm_fused.LSTM(I, H, num_layers=L, bidirectional=True, proj_size=proj, peephole=True).eval()
    with torch.no_grad():
        for n, p in lstm.named_parameters():
            if "peephole" in n:
                p.uniform_(-1, 1)  # large enough to matter
    P = proj or H
    model = WithState(lstm)
    names = ["x", "h0", "c0"]
    sample = lambda B: (torch.randn(6, B, I), torch.randn(2 * L, B, P), torch.randn(2 * L, B, H))  # noqa: E731
    dynamic = {"x": {1: "B"}, "h0": {1: "B"}, "c0": {1: "B"}}
    session, nodes = export(model, sample(3), names, dynamic, dynamo, tmp_path / "m.onnx")
    assert nodes.count("LSTM") == (0 if proj else L), nodes
    for B in (3, 1):
        check(session, names, model, sample(B), f" at B={B}")
    cell = lstm_fused.LSTMCell(I, H, peephole=True).eval()
    with torch.no_grad():
        cell.weight_peephole.uniform_(-1, 1)
    cell_model = CellModel(cell, True)
    cnames = ["x", "h", "c"]
    csample = lambda B: (torch.randn(B, I), torch.randn(B, H), torch.randn(B, H))  # noqa: E731
    session, nodes = export(cell_model, csample(3), cnames, {n: {0: "B"} for n in cnames}, dynamo,
                            tmp_path / "c.onnx")
    assert nodes.count("LSTM") == 1, nodes
    check(session, cnames, cell_model, csample(2), " (cell)")


@pytest.mark.parametrize("dynamo", EXPORTERS)
@pytest.mark.parametrize("variant,peephole", [("cifg", False), ("no_input_gate", True)])
def test_variant_export(tmp_path, dynamo, variant, peephole):
    """The cifg and no_input_gate cells, which ONNX's LSTM does not compute:
    plain ops unrolled over the export's T (as a projected layer); an
    LSTMCell, plain ops of one step."""
    I, H, L, T = 5, 8, 2, 6
    lstm = lstm_fused.LSTM(I, H, num_layers=L, bidirectional=True, variant=variant, peephole=peephole).eval()
    model = WithState(lstm)
    names = ["x", "h0", "c0"]
    sample = lambda B: (torch.randn(T, B, I), torch.randn(2 * L, B, H), torch.randn(2 * L, B, H))  # noqa: E731
    session, nodes = export(model, sample(3), names, {n: {1: "B"} for n in names}, dynamo, tmp_path / "m.onnx")
    assert "LSTM" not in nodes
    for B in (3, 1):
        check(session, names, model, sample(B), f" at B={B}")
    cell_model = CellModel(lstm_fused.LSTMCell(I, H, variant=variant, peephole=peephole).eval(), True)
    cnames = ["x", "h", "c"]
    csample = lambda B: (torch.randn(B, I), torch.randn(B, H), torch.randn(B, H))  # noqa: E731
    session, nodes = export(cell_model, csample(3), cnames, {n: {0: "B"} for n in cnames}, dynamo,
                            tmp_path / "c.onnx")
    assert "LSTM" not in nodes
    check(session, cnames, cell_model, csample(2), " (cell)")
