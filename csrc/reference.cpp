#include "reference.h"

#include <ATen/ATen.h>

namespace lstm_fused {
namespace {

// cell_variants.h's equations on tensors.
struct TensorMath {
  static at::Tensor sigmoid(const at::Tensor& x) { return at::sigmoid(x); }
  static at::Tensor tanh(const at::Tensor& x) { return at::tanh(x); }
  static at::Tensor one_minus(const at::Tensor& x) { return 1 - x; }
  static at::Tensor ones(const at::Tensor& x) { return at::ones_like(x); }
};

// gates (B, KH) pre-activations -> {h, c}
std::vector<at::Tensor> cell_update(const at::Tensor& gates, const at::Tensor& c_prev,
                                    CellKind kind, const at::Tensor& peephole) {
  return with_cell(kind, [&](auto cell) {
    using Cell = decltype(cell);
    at::Tensor pre[Cell::kGates], p[3];
    const auto blocks = gates.chunk(Cell::kGates, 1);
    for (int k = 0; k < Cell::kGates; ++k) pre[k] = blocks[k];
    if constexpr (Cell::kPeephole) {
      if constexpr (Cell::kInputGate) p[0] = peephole[0];
      p[1] = peephole[Cell::kPeepF];
      p[2] = peephole[Cell::kPeepO];
    }
    const auto s = cell_equations<Cell, TensorMath>(pre, c_prev, p);
    return std::vector<at::Tensor>{s.h, s.c};
  });
}

}  // namespace

std::vector<at::Tensor> cell_reference(const at::Tensor& input, const at::Tensor& hx,
                                       const at::Tensor& cx, const at::Tensor& w_ih,
                                       const at::Tensor& w_hh, const at::Tensor& b_ih,
                                       const at::Tensor& b_hh, CellKind kind,
                                       const at::Tensor& peephole) {
  auto gates = at::matmul(input, w_ih.t()) + at::matmul(hx, w_hh.t());
  if (b_ih.defined()) gates = gates + b_ih + b_hh;
  return cell_update(gates, cx, kind, peephole);
}

std::vector<at::Tensor> layer_reference(const at::Tensor& input, const at::Tensor& h0,
                                        const at::Tensor& c0, const at::Tensor& w_ih,
                                        const at::Tensor& w_hh, const at::Tensor& b_ih,
                                        const at::Tensor& b_hh, const at::Tensor& w_hr,
                                        const std::optional<at::Tensor>& lengths, bool reverse,
                                        CellKind kind, const at::Tensor& peephole) {
  const int64_t T = input.size(0);
  auto xp = at::matmul(input, w_ih.t());
  if (b_ih.defined()) xp = xp + (b_ih + b_hh);
  const auto len = lengths.has_value() ? lengths->to(input.device()) : at::Tensor();
  at::Tensor h = h0, c = c0;
  std::vector<at::Tensor> outs(T);
  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = reverse ? T - 1 - s : s;
    auto hc = cell_update(xp[t] + at::matmul(h, w_hh.t()), c, kind, peephole);
    auto h_new = w_hr.defined() ? at::matmul(hc[0], w_hr.t()) : hc[0];
    if (!len.defined()) {
      h = h_new;
      c = hc[1];
      outs[t] = h_new;
    } else {
      const auto running = (len > t).unsqueeze(1);
      h = at::where(running, h_new, h);
      c = at::where(running, hc[1], c);
      outs[t] = at::where(running, h_new, at::zeros_like(h_new));
    }
  }
  return {at::stack(outs), h, c};
}

}  // namespace lstm_fused
