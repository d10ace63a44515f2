// Operator schemas, declared once. Kernels are registered per dispatch key
// beside their implementations (csrc/cpu/, csrc/cuda/).
//
// Layout conventions shared by every kernel:
//   time-major sequences: input (T, B, I), output (T, B, P) where P = proj
//   width if w_hr is given, else H; gates (T, B, KH) hold the *activated*
//   gates, K blocks in the cell variant's order (i, f, g, o for the standard
//   cell, PyTorch's; f, g, o without an input gate); cells (T, B, H) hold c_t.
//   variant: 0 standard, 1 cifg, 2 no_input_gate (cell_variants.h); the
//   weights and biases have KH rows. peephole: the diagonal peephole weights
//   (3, H) rows (i, f, o), or (2, H) rows (f, o) without an input gate; None
//   for a cell without peepholes.
//   lengths (optional): int64 CPU tensor (B,), non-increasing, each in [0, T];
//   sequence b is active at step t iff t < lengths[b]; padded outputs are 0.
#include <torch/library.h>

TORCH_LIBRARY(lstm_fused, m) {
  // One step. gates is (B, KH) activated gates when need_gates, else empty.
  m.def(
      "lstm_cell(Tensor input, Tensor hx, Tensor cx, Tensor w_ih, Tensor w_hh, "
      "Tensor? b_ih, Tensor? b_hh, bool need_gates, int variant=0, Tensor? peephole=None) -> "
      "(Tensor hy, Tensor cy, Tensor gates)");
  // grad_peephole is empty without peepholes. Only the gradients asked for
  // are computed: grad_input is empty unless need_input_grad, grad_hx unless
  // need_hx_grad, the weight, bias and peephole gradients unless
  // need_weight_grad.
  m.def(
      "lstm_cell_backward(Tensor grad_hy, Tensor grad_cy, Tensor input, Tensor hx, "
      "Tensor cx, Tensor w_ih, Tensor w_hh, Tensor cy, Tensor gates, bool has_bias, "
      "bool need_input_grad=True, bool need_hx_grad=True, bool need_weight_grad=True, "
      "int variant=0, Tensor? peephole=None) -> "
      "(Tensor grad_input, Tensor grad_hx, Tensor grad_cx, Tensor grad_w_ih, "
      "Tensor grad_w_hh, Tensor grad_bias, Tensor grad_peephole)");
  // One layer, one direction, all T steps. gates/cells are empty unless need_grad.
  m.def(
      "lstm_layer(Tensor input, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, "
      "Tensor? b_ih, Tensor? b_hh, Tensor? w_hr, Tensor? lengths, bool reverse, "
      "bool need_grad, int variant=0, Tensor? peephole=None) -> "
      "(Tensor output, Tensor h_n, Tensor c_n, Tensor gates, Tensor cells)");
  // grad_bias is (KH) (the gradient of b_ih and of b_hh alike), empty when
  // has_bias is false; grad_w_hr is empty when w_hr is None, grad_peephole
  // without peepholes. Only the gradients asked for are computed: grad_input
  // is empty unless need_input_grad, the weight, bias and peephole gradients
  // unless need_weight_grad.
  m.def(
      "lstm_layer_backward(Tensor grad_output, Tensor grad_hn, Tensor grad_cn, "
      "Tensor input, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, Tensor? w_hr, "
      "Tensor? lengths, Tensor output, Tensor gates, Tensor cells, bool has_bias, "
      "bool reverse, bool need_input_grad=True, bool need_weight_grad=True, int variant=0, "
      "Tensor? peephole=None) -> "
      "(Tensor grad_input, Tensor grad_h0, Tensor grad_c0, Tensor grad_w_ih, "
      "Tensor grad_w_hh, Tensor grad_bias, Tensor grad_w_hr, Tensor grad_peephole)");
}
