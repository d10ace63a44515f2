#include "reference.h"

#include <ATen/ATen.h>

namespace lstm_fused {
namespace {

// gates (B, KH) pre-activations -> {h, c}; the equations of cell_variants.h
std::vector<at::Tensor> cell_update(const at::Tensor& gates, const at::Tensor& c_prev,
                                    CellKind kind, const at::Tensor& peephole) {
  const int64_t K = kind.gates();
  const auto g = gates.chunk(K, 1);
  const auto p = kind.peephole ? peephole.unbind(0) : std::vector<at::Tensor>{};
  auto pf = g[K - 3];
  if (kind.peephole) pf = pf + p[p.size() - 2] * c_prev;
  const auto f = at::sigmoid(pf), gg = at::tanh(g[K - 2]);
  at::Tensor c;
  switch (kind.variant) {
    case GateVariant::Standard:
      c = f * c_prev + at::sigmoid(kind.peephole ? g[0] + p[0] * c_prev : g[0]) * gg;
      break;
    case GateVariant::Cifg: c = f * c_prev + (1 - f) * gg; break;
    default: c = f * c_prev + gg; break;
  }
  auto po = g[K - 1];
  if (kind.peephole) po = po + p.back() * c;
  return {at::sigmoid(po) * at::tanh(c), c};
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
