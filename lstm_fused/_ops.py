"""Loads the compiled ops and registers what the dispatcher needs from Python:
fake (meta) kernels for torch.compile, and autograd formulas built on the
backward ops. Every op lives in the ``torch.ops.lstm_fused`` namespace."""
import torch

from . import _reference


def _check_build():
    hint = "rebuild it with: pip install --no-build-isolation -e ."
    try:
        from . import _build_info
    except ImportError as e:
        raise ImportError(f"lstm_fused: the extension has not been built; {hint}") from e
    if _build_info.TORCH_VERSION != torch.__version__:
        raise ImportError(
            f"lstm_fused was built against torch {_build_info.TORCH_VERSION} but torch "
            f"{torch.__version__} is installed; {hint}"
        )
    from . import _C

    if _C.built_torch_version() != torch.__version__:
        raise ImportError(
            f"lstm_fused._C was built against torch {_C.built_torch_version()} but torch "
            f"{torch.__version__} is installed; {hint}"
        )
    return _C


_C = _check_build()
ops = torch.ops.lstm_fused


# ---------------------------------------------------------------- fake kernels
@torch.library.register_fake("lstm_fused::lstm_cell")
def _cell_fake(input, hx, cx, w_ih, w_hh, b_ih, b_hh, need_gates):
    B, H = input.shape[0], w_hh.shape[1]
    gates = input.new_empty((B, 4 * H)) if need_gates else input.new_empty((0,))
    return input.new_empty((B, H)), input.new_empty((B, H)), gates


@torch.library.register_fake("lstm_fused::lstm_cell_backward")
def _cell_backward_fake(grad_hy, grad_cy, input, hx, cx, w_ih, w_hh, cy, gates, has_bias):
    bias = input.new_empty((w_ih.shape[0],)) if has_bias else input.new_empty((0,))
    return (
        torch.empty_like(input),
        torch.empty_like(hx),
        torch.empty_like(cx),
        torch.empty_like(w_ih),
        torch.empty_like(w_hh),
        bias,
    )


@torch.library.register_fake("lstm_fused::lstm_layer")
def _layer_fake(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse, need_grad):
    T, B = input.shape[0], input.shape[1]
    H = w_ih.shape[0] // 4
    P = w_hr.shape[0] if w_hr is not None else H
    if need_grad:
        gates, cells = input.new_empty((T, B, 4 * H)), input.new_empty((T, B, H))
    else:
        gates, cells = input.new_empty((0,)), input.new_empty((0,))
    return input.new_empty((T, B, P)), input.new_empty((B, P)), input.new_empty((B, H)), gates, cells


@torch.library.register_fake("lstm_fused::lstm_layer_backward")
def _layer_backward_fake(grad_output, grad_hn, grad_cn, input, h0, c0, w_ih, w_hh, w_hr, lengths,
                         output, gates, cells, has_bias, reverse):
    bias = input.new_empty((w_ih.shape[0],)) if has_bias else input.new_empty((0,))
    whr = torch.empty_like(w_hr) if w_hr is not None else input.new_empty((0,))
    return (
        torch.empty_like(input),
        torch.empty_like(h0),
        torch.empty_like(c0),
        torch.empty_like(w_ih),
        torch.empty_like(w_hh),
        bias,
        whr,
    )


# -------------------------------------------------------------------- autograd
def _zeros_if_none(grad, like):
    return torch.zeros_like(like) if grad is None else grad


def _cell_setup(ctx, inputs, output):
    input, hx, cx, w_ih, w_hh, b_ih, b_hh, need_gates = inputs
    hy, cy, gates = output
    ctx.has_bias = b_ih is not None
    ctx.need_gates = need_gates
    ctx.save_for_backward(input, hx, cx, w_ih, w_hh, b_ih, b_hh, cy, gates)


def _cell_backward(ctx, grad_hy, grad_cy, _grad_gates):
    input, hx, cx, w_ih, w_hh, b_ih, b_hh, cy, gates = ctx.saved_tensors
    if not ctx.need_gates:
        raise RuntimeError("lstm_fused: lstm_cell was called with need_gates=False; "
                           "call it with need_gates=True to differentiate it")
    grad_hy = _zeros_if_none(grad_hy, cy)
    grad_cy = _zeros_if_none(grad_cy, cy)
    if torch.is_grad_enabled():
        # create_graph=True: differentiate a differentiable recomputation so that
        # the gradient itself has a graph (double backward).
        return _reference.cell_vjp(
            (input, hx, cx, w_ih, w_hh, b_ih, b_hh), ctx.needs_input_grad, (grad_hy, grad_cy)
        ) + (None,)
    gi, ghx, gcx, gwi, gwh, gb = ops.lstm_cell_backward(
        grad_hy, grad_cy, input, hx, cx, w_ih, w_hh, cy, gates, ctx.has_bias
    )
    gb = gb if ctx.has_bias else None
    return gi, ghx, gcx, gwi, gwh, gb, gb, None


def _layer_setup(ctx, inputs, output):
    input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse, need_grad = inputs
    out, h_n, c_n, gates, cells = output
    ctx.has_bias = b_ih is not None
    ctx.reverse = reverse
    ctx.need_grad = need_grad
    ctx.save_for_backward(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, out, gates, cells)


def _layer_backward(ctx, grad_out, grad_hn, grad_cn, _grad_gates, _grad_cells):
    input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, out, gates, cells = ctx.saved_tensors
    if not ctx.need_grad:
        raise RuntimeError("lstm_fused: lstm_layer was called with need_grad=False; "
                           "call it with need_grad=True to differentiate it")
    grad_out = _zeros_if_none(grad_out, out)
    grad_hn = _zeros_if_none(grad_hn, h0)
    grad_cn = _zeros_if_none(grad_cn, c0)
    if torch.is_grad_enabled():
        return _reference.layer_vjp(
            (input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr),
            ctx.needs_input_grad,
            (grad_out, grad_hn, grad_cn),
            lengths,
            ctx.reverse,
        ) + (None, None, None)
    gi, gh0, gc0, gwi, gwh, gb, gwr = ops.lstm_layer_backward(
        grad_out, grad_hn, grad_cn, input, h0, c0, w_ih, w_hh, w_hr, lengths, out, gates, cells,
        ctx.has_bias, ctx.reverse,
    )
    gb = gb if ctx.has_bias else None
    gwr = gwr if w_hr is not None else None
    return gi, gh0, gc0, gwi, gwh, gb, gb, gwr, None, None, None


torch.library.register_autograd("lstm_fused::lstm_cell", _cell_backward, setup_context=_cell_setup)
torch.library.register_autograd("lstm_fused::lstm_layer", _layer_backward, setup_context=_layer_setup)
