"""ONNX export of lstm_fused.LSTM / LSTMCell / lstm / lstm_cell.

While ``torch.onnx.export`` traces a model (either exporter: ``dynamo=True``,
which traces with torch.export, or ``dynamo=False``, which traces with
torch.jit.trace), functional.py routes the layers here instead of to the
compiled ops, which no ONNX runtime knows. Each layer of the stack becomes one
standard ONNX ``LSTM`` node (both directions in one node, ``sequence_lens``
from ``lengths=``); the gate rows are reordered from torch's
(i, f, g, o) to ONNX's (i, o, f, c) by Slice/Concat on the weights, which the
exporters fold into the initializers; peephole weights (rows i, f, o) become
the node's P input (i, o, f). The cifg and no_input_gate cells have no ONNX
LSTM counterpart (ONNX's input_forget computes another cell): like a
projected layer, they are exported as plain ops unrolled over the steps. ONNX's LSTM has no projection, so a layer
with ``proj_size`` is exported as plain ONNX ops (MatMul, Sigmoid, Tanh, ...)
unrolled over the time steps: its sequence length is fixed at export. A cell
step is an ONNX LSTM node of one step.

The ONNX node comes from each exporter's own extension point:
``torch.onnx.ops.symbolic_multi_out`` under the dynamo exporter; under the
TorchScript one, an op ``lstm_fused::onnx_lstm`` (defined at the first export)
with a symbolic registered by ``torch.onnx.register_custom_op_symbolic``.
"""
import sys

import torch

from . import _reference
from .errors import LSTMArgumentError


_tracing_state = torch._C._get_tracing_state  # torch.jit.is_tracing() less its scripting check


def exporting() -> bool:
    """Whether torch.onnx.export is tracing the caller. Outside tracing it costs
    two flag reads: torch.onnx is only asked once something traces."""
    if _tracing_state() is not None:  # the TorchScript exporter traces with torch.jit.trace
        onnx = sys.modules.get("torch.onnx")
        return onnx is not None and onnx.is_in_onnx_export()
    if torch.compiler.is_compiling():  # the dynamo exporter traces with torch.export
        # Dynamo reads torch.onnx.is_in_onnx_export() as False (under strict
        # export, the exporter's fallback); the exporter's flag it reads stays true.
        flags = sys.modules.get("torch.onnx._internal.exporter._flags")
        if flags is not None and getattr(flags, "_is_onnx_exporting", False):
            return True
        onnx = sys.modules.get("torch.onnx")
        return onnx is not None and onnx.is_in_onnx_export()
    return False


def _onnx_gate_order(w, H):
    """torch's gate blocks (i, f, g, o) along dim 0 -> ONNX's (i, o, f, c)."""
    return torch.cat([w[0:H], w[3 * H:4 * H], w[H:2 * H], w[2 * H:3 * H]], 0)


def _torch_gate_order(w, H):
    """ONNX's gate blocks (i, o, f, c) along dim 0 -> torch's (i, f, g, o)."""
    return torch.cat([w[0:H], w[2 * H:3 * H], w[3 * H:4 * H], w[H:2 * H]], 0)


def _onnx_peephole(p, H):
    """Peephole rows (i, f, o) of (3, H) -> ONNX's P (i, o, f) of (3H,)."""
    return torch.cat([p[0], p[2], p[1]])


def _torch_peephole(P, H):
    """ONNX's P (i, o, f) of (3H,) -> rows (i, f, o) of (3, H)."""
    return torch.stack([P[0:H], P[2 * H:3 * H], P[H:2 * H]])


def _onnx_reference(x, W, R, B, seq_lens, h0, c0, P=None):
    """ONNX LSTM's semantics in torch ops (layout 0, default activations): the
    values the TorchScript exporter's trace computes. Shapes as the ONNX op."""
    D, H = W.shape[0], R.shape[2]
    ys, hs, cs = [], [], []
    for d in range(D):
        b_ih = b_hh = None
        if B is not None:
            b_ih, b_hh = _torch_gate_order(B[d, :4 * H], H), _torch_gate_order(B[d, 4 * H:], H)
        y, h, c = _reference.layer(x, h0[d], c0[d], _torch_gate_order(W[d], H), _torch_gate_order(R[d], H),
                                   b_ih, b_hh, None, seq_lens, d == 1,
                                   w_peep=None if P is None else _torch_peephole(P[d], H))
        ys.append(y)
        hs.append(h)
        cs.append(c)
    return torch.stack(ys, 1), torch.stack(hs), torch.stack(cs)


def _torchscript_symbolic(g, x, W, R, B, seq_lens, h0, c0, P):
    """lstm_fused::onnx_lstm -> ONNX LSTM, for the TorchScript exporter."""
    def given(v):
        return v is not None and not v.node().mustBeNone()

    none = g.op("prim::Constant").setType(torch._C.OptionalType.ofTensor())
    D, H = W.type().sizes()[0], R.type().sizes()[2]
    inputs = [x, W, R, B if given(B) else none,
              g.op("Cast", seq_lens, to_i=6) if given(seq_lens) else none, h0, c0]  # 6: INT32
    if given(P):
        inputs.append(P)
    return g.op("LSTM", *inputs, outputs=3, hidden_size_i=H, direction_s="bidirectional" if D == 2 else "forward")


_torchscript_op = None


def _torchscript_lstm_op():
    """An op that the TorchScript exporter's trace records as one node and
    translates with _torchscript_symbolic. Defined at the first export."""
    global _torchscript_op
    if _torchscript_op is None:
        from typing import Optional, Tuple

        Tensor = torch.Tensor

        @torch.library.custom_op("lstm_fused::onnx_lstm", mutates_args=())
        def onnx_lstm(x: Tensor, W: Tensor, R: Tensor, B: Optional[Tensor], seq_lens: Optional[Tensor],
                      h0: Tensor, c0: Tensor, P: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
            return _onnx_reference(x, W, R, B, seq_lens, h0, c0, P)

        torch.onnx.register_custom_op_symbolic("lstm_fused::onnx_lstm", _torchscript_symbolic, 9)
        _torchscript_op = onnx_lstm
    return _torchscript_op


def _onnx_lstm_node(x, W, R, B, seq_lens, h0, c0, P=None):
    """One ONNX LSTM node: x (T, B, I), W (D, 4H, I), R (D, 4H, H), B (D, 8H) or
    None, seq_lens (B,) or None, h0/c0 (D, B, H), P (D, 3H) or None. Returns Y
    (T, D, B, H), Y_h, Y_c."""
    if not torch.jit.is_tracing():
        D, H = W.shape[0], R.shape[2]
        T, N = x.shape[0], x.shape[1]
        if seq_lens is not None:
            seq_lens = seq_lens.to(torch.int32)
        return torch.onnx.ops.symbolic_multi_out(
            "LSTM", [x, W, R, B, seq_lens, h0, c0] + ([P] if P is not None else []),
            {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"},
            dtypes=[x.dtype] * 3, shapes=[(T, D, N, H), (D, N, H), (D, N, H)],
        )
    return _torchscript_lstm_op()(x, W, R, B, seq_lens, h0, c0, P)


def lstm_layers(x, groups, h0, c0, lengths, num_layers, D, dropout, training, variant="standard"):
    """The stack of layers for the exporters. x (T, B, I) time-major; groups as
    functional._layer_weights; h0 (L*D, B, P), c0 (L*D, B, H); lengths (B,) in
    any order or None; variant: the cell's name (variants.py). Returns (output
    (T, B, D*P), h_n, c_n) as functional.lstm's layer loop does."""
    if dropout > 0 and training and num_layers > 1:
        raise LSTMArgumentError("lstm_fused: dropout in training mode cannot be exported to ONNX (as with "
                                "torch.nn.LSTM); export the model in eval() mode")
    h_n, c_n = [], []
    layer_input = x
    for layer in range(num_layers):
        ks = range(layer * D, (layer + 1) * D)
        if groups[ks[0]][4] is not None or variant != "standard":  # plain ops, unrolled over the steps
            outs = []
            for k in ks:
                w_ih, w_hh, b_ih, b_hh, w_hr, w_peep = groups[k]
                out, h, c = _reference.layer(layer_input, h0[k], c0[k], w_ih, w_hh, b_ih, b_hh, w_hr,
                                             lengths, k == ks[0] + 1, variant=variant, w_peep=w_peep)
                outs.append(out)
                h_n.append(h.unsqueeze(0))
                c_n.append(c.unsqueeze(0))
            layer_input = torch.cat(outs, 2) if D == 2 else outs[0]
            continue
        H = groups[ks[0]][1].shape[1]
        W = torch.stack([_onnx_gate_order(groups[k][0], H) for k in ks])
        R = torch.stack([_onnx_gate_order(groups[k][1], H) for k in ks])
        B = None
        if groups[ks[0]][2] is not None:
            B = torch.stack([torch.cat([_onnx_gate_order(groups[k][2], H), _onnx_gate_order(groups[k][3], H)])
                             for k in ks])
        P = None
        if groups[ks[0]][5] is not None:
            P = torch.stack([_onnx_peephole(groups[k][5], H) for k in ks])
        y, hy, cy = _onnx_lstm_node(layer_input, W, R, B, lengths, h0[ks[0]:ks[-1] + 1], c0[ks[0]:ks[-1] + 1], P)
        layer_input = y.transpose(1, 2).flatten(2)  # (T, D, B, H) -> (T, B, D*H)
        h_n.append(hy)
        c_n.append(cy)
    return layer_input, torch.cat(h_n), torch.cat(c_n)


def lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh, w_peep=None, variant="standard"):
    """One step as an ONNX LSTM node of one step (plain ops for the cifg and
    no_input_gate cells): x (B, I), h/c (B, H)."""
    if variant != "standard":
        return _reference.cell(x, h, c, w_ih, w_hh, b_ih, b_hh, variant=variant, w_peep=w_peep)
    H = w_hh.shape[1]
    B = None if b_ih is None else torch.cat([_onnx_gate_order(b_ih, H), _onnx_gate_order(b_hh, H)]).unsqueeze(0)
    P = None if w_peep is None else _onnx_peephole(w_peep, H).unsqueeze(0)
    _, hy, cy = _onnx_lstm_node(x.unsqueeze(0), _onnx_gate_order(w_ih, H).unsqueeze(0),
                                _onnx_gate_order(w_hh, H).unsqueeze(0), B, None, h.unsqueeze(0), c.unsqueeze(0), P)
    return hy.squeeze(0), cy.squeeze(0)
