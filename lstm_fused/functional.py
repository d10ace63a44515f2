"""Functional forms: ``lstm`` (a stack of layers, both directions) and
``lstm_cell`` (one step). Arguments are checked here, before any kernel runs."""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from . import _reference, onnx_export, variants
from ._ops import ops
from .errors import LSTMArgumentError

_FLOATING = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def _fail(msg):
    raise LSTMArgumentError(f"lstm_fused: {msg}")


def _check_tensor(t, name, ref=None):
    if not isinstance(t, torch.Tensor):
        _fail(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _FLOATING:
        _fail(f"{name} must be a floating tensor (float32, float64, bfloat16, float16), got {t.dtype}")
    if ref is not None:
        ref_name, ref_t = ref
        if t.dtype != ref_t.dtype:
            _fail(f"{name} has dtype {t.dtype} but {ref_name} has dtype {ref_t.dtype}; they must match")
        if t.device != ref_t.device:
            _fail(f"{name} is on {t.device} but {ref_name} is on {ref_t.device}; they must be on one device")


def _check_shape(t, expected, name):
    if tuple(t.shape) != tuple(expected):
        _fail(f"{name} must have shape {tuple(expected)}, got {tuple(t.shape)}")


def _autocast(tensors):
    """Under torch.autocast the ops run in the autocast dtype, as torch.nn.LSTM
    does: floating arguments are cast to it (parameters stay as they are).
    tensors[0] is the input, never None."""
    ref = tensors[0]
    # is_cuda/is_cpu: a one-step call cannot afford building a torch.device
    device = "cuda" if ref.is_cuda else "cpu" if ref.is_cpu else None
    if device is None or not torch.is_autocast_enabled(device):
        return tensors
    dtype = torch.get_autocast_dtype(device)
    return [t.to(dtype) if t is not None and t.is_floating_point() else t for t in tensors]


def _under_func_transform():
    """Inside torch.func transforms (grad, vjp, jacrev, jvp, vmap) the ops' C++
    autograd cannot run: there the layer and the cell run as plain torch ops,
    which every transform understands."""
    return torch._C._are_functorch_transforms_active() and not torch.compiler.is_compiling()


def _needs_grad(*tensors):
    # Under torch.jit.trace the flag becomes a constant of the graph, and the
    # trace's check re-runs under no_grad: it must not depend on the grad mode.
    if not torch.is_grad_enabled() and not torch.jit.is_tracing():
        return False
    return any(t is not None and t.requires_grad for t in tensors)


def lstm_cell(input, hx=None, w_ih=None, w_hh=None, b_ih=None, b_hh=None, *, variant="standard",
              w_peep=None, _record=None):
    """One LSTM step, as torch.nn.LSTMCell computes it.

    input (B, I) or (I,); hx a pair (h, c) of (B, H) (or (H,) unbatched), zeros if None;
    w_ih (KH, I), w_hh (KH, H), b_ih/b_hh (KH) or None, with K = 4 gate blocks
    for the standard cell and 3 for the variants without an input gate
    (variants.py); w_peep: the peephole weights (3 or 2, H) or None. Returns
    (h', c'). _record: a gate recorder (record.recorder_for) or None."""
    v = variants.get(variant)
    if torch.compiler.is_compiling():
        _check_cell_args(input, hx, w_ih, w_hh, b_ih, b_hh, v, w_peep)
        return _cell(input, hx, w_ih, w_hh, b_ih, b_hh, v, w_peep)
    # A step can cost as little as the argument checks: the op validates every
    # argument in C++ before computing anything, and the checks here only run
    # to name the bad argument when it refuses.
    try:
        if hx is not None and not isinstance(hx, (tuple, list)):
            raise TypeError("hx")
        return _cell(input, hx, w_ih, w_hh, b_ih, b_hh, v, w_peep, _record)
    except (RuntimeError, TypeError, ValueError, AttributeError, IndexError):
        _check_cell_args(input, hx, w_ih, w_hh, b_ih, b_hh, v, w_peep)
        raise


_cell_op = ops.lstm_cell.default


def _cell(input, hx, w_ih, w_hh, b_ih, b_hh, v=variants.STANDARD, w_peep=None, record=None):
    batched = input.dim() == 2
    x = input if batched else input.unsqueeze(0)
    if hx is None:
        h = c = x.new_zeros((x.shape[0], w_hh.shape[1]))
    else:
        h, c = hx
        if not batched:
            h, c = h.unsqueeze(0), c.unsqueeze(0)
    x, h, c, w_ih, w_hh, b_ih, b_hh, w_peep = _autocast([x, h, c, w_ih, w_hh, b_ih, b_hh, w_peep])
    if _under_func_transform():
        hy, cy = _reference.cell(x, h, c, w_ih, w_hh, b_ih, b_hh, v, w_peep)
    elif onnx_export.exporting():
        hy, cy = onnx_export.lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh, w_peep, v.name)
    elif record is None:
        need = _needs_grad(x, h, c, w_ih, w_hh, b_ih, b_hh, w_peep)
        hy, cy, _ = _cell_op(x, h, c, w_ih, w_hh, b_ih, b_hh, need, v.code, w_peep)
    else:
        hy, cy, gates = _cell_op(x, h, c, w_ih, w_hh, b_ih, b_hh, True, v.code, w_peep)
        B, H = cy.shape
        record(0, 0, four_gates(gates.view(1, B, v.num_gates, H), v), cy.unsqueeze(0),
               cy.new_ones((1, B), dtype=torch.bool))
    if not batched:
        hy, cy = hy.squeeze(0), cy.squeeze(0)
    return hy, cy


def four_gates(gates, v):
    """Activated gates (..., K, H) in the variant's blocks as (..., 4, H) i, f, g,
    o, with the i the cell used: 1 − f (cifg) or 1 (no input gate)."""
    if v.standard:
        return gates
    i = v.implied_input_gate(gates.select(-2, v.gates.index("f")))
    return torch.cat([i.unsqueeze(-2), gates], dim=-2)


def _check_peephole(w_peep, v, H, input, where=""):
    if w_peep is None:
        return
    _check_tensor(w_peep, f"weight_peephole{where}", ("input", input))
    _check_shape(w_peep, (len(v.peephole_rows), H), f"weight_peephole{where} (rows {', '.join(v.peephole_rows)})")


def _check_cell_args(input, hx, w_ih, w_hh, b_ih, b_hh, v=variants.STANDARD, w_peep=None):
    _check_tensor(input, "input")
    for name, w in (("weight_ih", w_ih), ("weight_hh", w_hh)):
        _check_tensor(w, name, ("input", input))
    H, K = w_hh.shape[1], v.num_gates
    if w_ih.dim() != 2 or w_ih.shape[0] != K * H or w_hh.shape != (K * H, H):
        _fail(f"weight_ih must be ({K}H, I) and weight_hh ({K}H, H) for variant={v.name!r}, got "
              f"{tuple(w_ih.shape)} and {tuple(w_hh.shape)}")
    _check_peephole(w_peep, v, H, input)
    if input.dim() not in (1, 2):
        _fail(f"input must be 1-D (input_size,) or 2-D (batch, input_size), got {input.dim()}-D")
    if input.shape[-1] != w_ih.shape[1]:
        _fail(f"input must have {w_ih.shape[1]} features (input_size), got {input.shape[-1]}")
    batched = input.dim() == 2
    if hx is not None:
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            _fail("hx must be a tuple (h_0, c_0)")
        for name, t in (("hx[0] (h_0)", hx[0]), ("hx[1] (c_0)", hx[1])):
            _check_tensor(t, name, ("input", input))
            _check_shape(t, (input.shape[0], H) if batched else (H,), name)
    if (b_ih is None) != (b_hh is None):
        _fail("bias_ih and bias_hh must both be given or both be None")
    if b_ih is not None:
        for name, b in (("bias_ih", b_ih), ("bias_hh", b_hh)):
            _check_tensor(b, name, ("input", input))
            _check_shape(b, (K * H,), name)


def _layer_weights(weights, num_layers, num_directions, bias, proj_size, peephole=False):
    """Per layer and direction (w_ih, w_hh, b_ih, b_hh, w_hr, w_peep), absent ones None."""
    per = 2 + (2 if bias else 0) + (1 if proj_size > 0 else 0) + (1 if peephole else 0)
    if len(weights) != per * num_layers * num_directions:
        _fail(f"expected {per * num_layers * num_directions} weight tensors "
              f"({per} per layer and direction), got {len(weights)}")
    groups = []
    for k in range(num_layers * num_directions):
        w = list(weights[k * per:(k + 1) * per])
        w_peep = w.pop() if peephole else None
        w_ih, w_hh = w[0], w[1]
        b_ih, b_hh = (w[2], w[3]) if bias else (None, None)
        w_hr = w[-1] if proj_size > 0 else None
        groups.append((w_ih, w_hh, b_ih, b_hh, w_hr, w_peep))
    return groups


def _check_lengths(lengths, B, batched):
    """lengths as a tensor, its shape and dtype checked (not its values)."""
    if not batched:
        _fail("lengths applies to batched (3-D) input only")
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1 or lengths.shape[0] != B:
        _fail(f"lengths must be a 1-D tensor of {B} sequence lengths (batch size), got shape {tuple(lengths.shape)}")
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        _fail(f"lengths must hold integers, got {lengths.dtype}")
    return lengths


def _sorted_lengths(lengths, T, B, batched):
    """lengths as the op takes them (int64 on the CPU, non-increasing) and the
    batch permutation that sorts them (None when already sorted)."""
    lengths = _check_lengths(lengths, B, batched).to("cpu", torch.int64)
    if B and (int(lengths.min()) < 1 or int(lengths.max()) > T):
        _fail(f"lengths must lie in [1, {T}] (the padded sequence length), got min {int(lengths.min())} "
              f"and max {int(lengths.max())}")
    if bool((lengths[:-1] >= lengths[1:]).all()):
        return lengths, None
    order = torch.argsort(lengths, descending=True, stable=True)
    return lengths[order], order


def lstm(
    input: torch.Tensor,
    weights: Sequence[torch.Tensor],
    hx: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
    *,
    num_layers: int = 1,
    bias: bool = True,
    batch_first: bool = False,
    dropout: float = 0.0,
    training: bool = False,
    bidirectional: bool = False,
    proj_size: int = 0,
    lengths: Optional[torch.Tensor] = None,
    variant: str = "standard",
    peephole: bool = False,
    _record=None,
) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """A multi-layer LSTM with torch.nn.LSTM's semantics.

    weights: nn.LSTM's flat weight list (``module._flat_weights``): for each layer
    and direction w_ih (KH, I_l), w_hh (KH, P), [b_ih, b_hh (KH)], [w_hr (P, H)],
    [w_peep (3 or 2, H) with peephole], with P = proj_size or H and K = 4 gate
    blocks for the standard cell, 3 for the variants without an input gate
    (variant: see variants.py). input (T, B, I) ((B, T, I) if batch_first) or
    unbatched (T, I). Returns (output, (h_n, c_n)) shaped as nn.LSTM's.

    lengths: optional per-sequence lengths (B,) of a padded batch, in any order:
    sequence b runs steps t < lengths[b] only; its h_n/c_n are taken at its own
    last step, and output is zero past its end (as pad_packed_sequence gives).

    _record: a gate recorder (record.recorder_for) or None."""
    _check_tensor(input, "input")
    v = variants.get(variant)
    D = 2 if bidirectional else 1
    groups = _layer_weights(weights, num_layers, D, bias, proj_size, peephole)
    H = groups[0][1].shape[0] // v.num_gates
    P = proj_size if proj_size > 0 else H
    I = groups[0][0].shape[1]
    for k, (w_ih, w_hh, b_ih, b_hh, w_hr, w_peep) in enumerate(groups):
        for name, w in (("weight_ih", w_ih), ("weight_hh", w_hh), ("bias_ih", b_ih), ("bias_hh", b_hh),
                        ("weight_hr", w_hr)):
            if w is not None:
                _check_tensor(w, f"{name} of layer {k // D}", ("input", input))
        _check_peephole(w_peep, v, H, input, f" of layer {k // D}")
    if input.dim() not in (2, 3):
        _fail(f"input must be 2-D (seq_len, input_size) unbatched or 3-D "
              f"({'batch, seq_len' if batch_first else 'seq_len, batch'}, input_size), got {input.dim()}-D "
              f"with shape {tuple(input.shape)}")
    if input.shape[-1] != I:
        _fail(f"input.size(-1) must be equal to input_size. Expected {I}, got {input.shape[-1]}")
    batched = input.dim() == 3
    seq_dim = 1 if batched and batch_first else 0
    if input.shape[seq_dim] == 0:
        _fail(f"Expected sequence length to be larger than 0 in RNN (input has shape {tuple(input.shape)})")
    if not batched:
        x = input.unsqueeze(1)
    else:
        x = input.transpose(0, 1) if batch_first else input
    B = x.shape[1]
    if hx is None:
        h0 = x.new_zeros((num_layers * D, B, P))
        c0 = x.new_zeros((num_layers * D, B, H))
    else:
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            _fail("hx must be a tuple (h_0, c_0)")
        h0, c0 = hx
        for name, t, width in (("hx[0] (h_0)", h0, P), ("hx[1] (c_0)", c0, H)):
            _check_tensor(t, name, ("input", input))
            expected = (num_layers * D, B, width) if batched else (num_layers * D, width)
            if tuple(t.shape) != expected:
                _fail(f"{name} must have shape {expected} (num_layers * num_directions, "
                      f"{'batch, ' if batched else ''}{'proj_size' if width != H else 'hidden_size'}), "
                      f"got {tuple(t.shape)}")
        if not batched:
            h0, c0 = h0.unsqueeze(1), c0.unsqueeze(1)
    if onnx_export.exporting():
        # ONNX's LSTM takes the lengths in any order; their values are the graph's input
        if lengths is not None:
            lengths = _check_lengths(lengths, B, batched)
        output, hn, cn = onnx_export.lstm_layers(x, groups, h0, c0, lengths, num_layers, D, dropout, training,
                                                 v.name)
        return _batch_layout(output, hn, cn, batched, batch_first)
    order = None
    if lengths is not None:
        lengths, order = _sorted_lengths(lengths, x.shape[0], B, batched)
        if order is not None:
            x, h0, c0 = (t.index_select(1, order.to(t.device)) for t in (x, h0, c0))
    x, h0, c0 = _autocast([x, h0, c0])
    groups = [tuple(_autocast(list(g))) for g in groups]
    need = _needs_grad(x, h0, c0, *[w for g in groups for w in g])
    layer_op = _reference_layer if _under_func_transform() else ops.lstm_layer
    if _record is not None and layer_op is ops.lstm_layer:
        need = True  # the kernels keep the gates and cells
        valid = _valid_steps(x.shape[0], B, lengths, order, x.device)
    else:
        _record = None
    h_n: List[torch.Tensor] = []
    c_n: List[torch.Tensor] = []
    layer_input = x
    for layer in range(num_layers):
        outs = []
        for d in range(D):
            k = layer * D + d
            w_ih, w_hh, b_ih, b_hh, w_hr, w_peep = groups[k]
            out, h, c, gates, cells = layer_op(
                layer_input, h0[k], c0[k], w_ih, w_hh, b_ih, b_hh, w_hr, lengths, d == 1, need, v.code, w_peep
            )
            if _record is not None:
                _record(layer, d, *_caller_order(gates, cells, valid, order, v))
            outs.append(out)
            h_n.append(h)
            c_n.append(c)
        layer_input = outs[0] if D == 1 else torch.cat(outs, dim=2)
        if dropout > 0 and training and layer < num_layers - 1:
            layer_input = F.dropout(layer_input, p=dropout, training=True)
    output = layer_input
    hn, cn = torch.stack(h_n), torch.stack(c_n)
    if order is not None:
        inverse = torch.argsort(order).to(output.device)
        output, hn, cn = (t.index_select(1, inverse) for t in (output, hn, cn))
    return _batch_layout(output, hn, cn, batched, batch_first)


def _valid_steps(T, B, lengths, order, device):
    """(T, B) bool in the caller's batch order: whether sequence b ran step t."""
    if lengths is None:
        return torch.ones((T, B), dtype=torch.bool, device=device)
    valid = torch.arange(T).unsqueeze(1) < lengths.unsqueeze(0)
    if order is not None:
        valid = valid.index_select(1, torch.argsort(order))
    return valid.to(device)


def _caller_order(gates, cells, valid, order, v=variants.STANDARD):
    """The kernels' gates (T, B, KH) and cells (T, B, H), in the sorted batch
    order of packed input, as (T, B, 4, H) (four_gates) and (T, B, H) in the
    caller's order with zeros at the steps a sequence did not run."""
    T, B, H = cells.shape
    gates = four_gates(gates.view(T, B, v.num_gates, H), v)
    if order is not None:
        inverse = torch.argsort(order).to(gates.device)
        gates, cells = gates.index_select(1, inverse), cells.index_select(1, inverse)
    if not bool(valid.all()):
        gates = gates * valid.view(T, B, 1, 1)
        cells = cells * valid.view(T, B, 1)
    return gates, cells, valid


def _batch_layout(output, hn, cn, batched, batch_first):
    """The stack's time-major results in the caller's layout."""
    if not batched:
        return output.squeeze(1), (hn.squeeze(1), cn.squeeze(1))
    if batch_first:
        output = output.transpose(0, 1)
    return output, (hn, cn)


def _reference_layer(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse, need_grad, variant=0,
                     peephole=None):
    """lstm_layer's signature and outputs (no gates or cells) in plain torch ops."""
    out, h, c = _reference.layer(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse,
                                 variant=variants.by_code(variant), w_peep=peephole)
    return out, h, c, None, None
