"""Loads the compiled ops and registers what the dispatcher needs from Python:
fake (meta) kernels for torch.compile and opcheck. Autograd is registered in
C++ (csrc/autograd.cpp). Every op lives in the ``torch.ops.lstm_fused`` namespace."""
import torch


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
# The gate rows (w_ih's) are K blocks of H: K = 4 for the standard cell, 3
# for the variants without an input gate (csrc/cell_variants.h).
@torch.library.register_fake("lstm_fused::lstm_cell")
def _cell_fake(input, hx, cx, w_ih, w_hh, b_ih, b_hh, need_gates, variant=0, peephole=None):
    B, H = input.shape[0], w_hh.shape[1]
    gates = input.new_empty((B, w_ih.shape[0])) if need_gates else input.new_empty((0,))
    return input.new_empty((B, H)), input.new_empty((B, H)), gates


@torch.library.register_fake("lstm_fused::lstm_cell_backward")
def _cell_backward_fake(grad_hy, grad_cy, input, hx, cx, w_ih, w_hh, cy, gates, has_bias,
                        need_input_grad=True, need_hx_grad=True, need_weight_grad=True, variant=0,
                        peephole=None):
    def asked(need, like):
        return torch.empty_like(like) if need else input.new_empty((0,))

    w = need_weight_grad
    return (
        asked(need_input_grad, input),
        asked(need_hx_grad, hx),
        torch.empty_like(cx),
        asked(w, w_ih),
        asked(w, w_hh),
        input.new_empty((w_ih.shape[0],)) if w and has_bias else input.new_empty((0,)),
        asked(w and peephole is not None, peephole),
    )


@torch.library.register_fake("lstm_fused::lstm_layer")
def _layer_fake(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse, need_grad, variant=0,
                peephole=None):
    T, B = input.shape[0], input.shape[1]
    H = c0.shape[-1]
    P = w_hr.shape[0] if w_hr is not None else H
    if need_grad:
        gates, cells = input.new_empty((T, B, w_ih.shape[0])), input.new_empty((T, B, H))
    else:
        gates, cells = input.new_empty((0,)), input.new_empty((0,))
    return input.new_empty((T, B, P)), input.new_empty((B, P)), input.new_empty((B, H)), gates, cells


@torch.library.register_fake("lstm_fused::lstm_layer_backward")
def _layer_backward_fake(grad_output, grad_hn, grad_cn, input, h0, c0, w_ih, w_hh, w_hr, lengths,
                         output, gates, cells, has_bias, reverse, need_input_grad=True,
                         need_weight_grad=True, variant=0, peephole=None):
    def asked(need, like):
        return torch.empty_like(like) if need else input.new_empty((0,))

    bias = input.new_empty((w_ih.shape[0],)) if has_bias and need_weight_grad else input.new_empty((0,))
    return (
        asked(need_input_grad, input),
        torch.empty_like(h0),
        torch.empty_like(c0),
        asked(need_weight_grad, w_ih),
        asked(need_weight_grad, w_hh),
        bias,
        asked(need_weight_grad and w_hr is not None, w_hr) if w_hr is not None else input.new_empty((0,)),
        asked(need_weight_grad, peephole) if peephole is not None else input.new_empty((0,)),
    )
