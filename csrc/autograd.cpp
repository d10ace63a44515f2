// Autograd for the forward ops, registered for the Autograd dispatch key in C++
// (a Python autograd registration costs ~25 µs per call, as much as a whole
// small LSTMCell step). Backward calls the fused backward ops; under
// create_graph=True it differentiates the ATen recomputation in reference.cpp
// instead, so that double backward works.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "checks.h"
#include "reference.h"

namespace lstm_fused {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

Tensor or_zeros(const Tensor& grad, const Tensor& like) {
  return grad.defined() ? grad : at::zeros_like(like);
}

Tensor opt(const std::optional<Tensor>& t) { return t.has_value() ? *t : Tensor(); }

std::optional<Tensor> as_opt(const Tensor& t) {
  return t.defined() ? std::optional<Tensor>(t) : std::nullopt;
}

// Whether any weight needs a gradient: in both ops the arguments from the
// fourth on (w_ih, w_hh, biases, w_hr, peepholes; the rest are never
// differentiable).
bool weights_need_grad(const std::vector<bool>& need) {
  return std::any_of(need.begin() + 3, need.end(), [](bool b) { return b; });
}

// A computed gradient if it was asked for, else none (the ops return empty
// tensors for what they were not asked).
Tensor if_asked(bool asked, const Tensor& t) { return asked ? t : Tensor(); }

// Which of `inputs` (undefined ones included, as positions) need a gradient:
// needs_input_grad counts only the tensor arguments that were given.
std::vector<bool> needed_grads(const variable_list& inputs, AutogradContext* ctx) {
  std::vector<bool> need(inputs.size(), false);
  size_t edge = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].defined()) need[i] = ctx->needs_input_grad(edge++);
  }
  return need;
}

// Gradients of `outputs` against `grads` for each of `inputs` that needs one,
// themselves differentiable (create_graph). Undefined where not needed.
variable_list differentiable_vjp(const variable_list& outputs, const variable_list& grads,
                                 const variable_list& inputs, AutogradContext* ctx) {
  variable_list wrt;
  std::vector<size_t> where;
  const auto need = needed_grads(inputs, ctx);
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (need[i] && inputs[i].requires_grad()) {
      wrt.push_back(inputs[i]);
      where.push_back(i);
    }
  }
  variable_list result(inputs.size());
  if (wrt.empty()) return result;
  const auto got = torch::autograd::grad(outputs, wrt, grads, /*retain_graph=*/true,
                                         /*create_graph=*/true, /*allow_unused=*/true);
  for (size_t k = 0; k < where.size(); ++k) {
    result[where[k]] = got[k].defined() ? got[k] : at::zeros_like(wrt[k]);
  }
  return result;
}

class LayerFunction : public torch::autograd::Function<LayerFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& input, const Tensor& h0,
                               const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                               const std::optional<Tensor>& b_ih,
                               const std::optional<Tensor>& b_hh,
                               const std::optional<Tensor>& w_hr,
                               const std::optional<Tensor>& lengths, bool reverse, bool need_grad,
                               int64_t variant, const std::optional<Tensor>& peephole) {
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("lstm_fused::lstm_layer", "")
                               .typed<std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>(
                                   const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                   const Tensor&, const std::optional<Tensor>&,
                                   const std::optional<Tensor>&, const std::optional<Tensor>&,
                                   const std::optional<Tensor>&, bool, bool, int64_t,
                                   const std::optional<Tensor>&)>();
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    // gates and cells never get a gradient: materialising zeros for them
    // would fill (T, B, 5H) elements per backward
    ctx->set_materialize_grads(false);
    auto [out, hn, cn, gates, cells] = op.call(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr,
                                               lengths, reverse, need_grad, variant, peephole);
    ctx->save_for_backward({input, h0, c0, w_ih, w_hh, opt(b_ih), opt(b_hh), opt(w_hr), out,
                            gates, cells, opt(peephole)});
    ctx->saved_data["lengths"] = lengths;
    ctx->saved_data["reverse"] = reverse;
    ctx->saved_data["need_grad"] = need_grad;
    ctx->saved_data["variant"] = variant;
    ctx->mark_non_differentiable({gates, cells});
    return {out, hn, cn, gates, cells};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(ctx->saved_data["need_grad"].toBool(),
                "lstm_fused: lstm_layer was called with need_grad=False; call it with "
                "need_grad=True to differentiate it");
    const auto s = ctx->get_saved_variables();
    const Tensor &input = s[0], &h0 = s[1], &c0 = s[2], &w_ih = s[3], &w_hh = s[4];
    const Tensor &b_ih = s[5], &b_hh = s[6], &w_hr = s[7], &out = s[8], &gates = s[9],
                 &cells = s[10], &peep = s[11];
    const auto lengths = ctx->saved_data["lengths"].toOptional<Tensor>();
    const bool reverse = ctx->saved_data["reverse"].toBool();
    const int64_t variant = ctx->saved_data["variant"].toInt();
    const CellKind kind = cell_kind(variant, as_opt(peep));
    // The forward's arguments, in order: lengths, when given, has an edge too.
    const variable_list args = {input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr,
                                opt(lengths), Tensor(), Tensor(), Tensor(), peep};
    const variable_list g = {or_zeros(grads[0], out), or_zeros(grads[1], h0),
                             or_zeros(grads[2], c0)};
    if (at::GradMode::is_enabled()) {
      return differentiable_vjp(
          layer_reference(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse, kind,
                          peep),
          g, args, ctx);
    }
    static const auto op =
        c10::Dispatcher::singleton()
            .findSchemaOrThrow("lstm_fused::lstm_layer_backward", "")
            .typed<std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>(
                const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                const Tensor&, const Tensor&, const Tensor&, const std::optional<Tensor>&,
                const std::optional<Tensor>&, const Tensor&, const Tensor&, const Tensor&, bool,
                bool, bool, bool, int64_t, const std::optional<Tensor>&)>();
    const bool has_bias = b_ih.defined();
    // Like cuDNN's output mask: no dx GEMM for an input that needs no
    // gradient (a first layer on raw features), no weight GEMMs for frozen
    // weights.
    const auto need = needed_grads(args, ctx);
    const bool need_input = need[0];
    const bool need_weights = weights_need_grad(need);
    auto [gi, gh0, gc0, gwi, gwh, gb, gwr, gp] =
        op.call(g[0], g[1], g[2], input, h0, c0, w_ih, w_hh, as_opt(w_hr), lengths, out, gates,
                cells, has_bias, reverse, need_input, need_weights, variant, as_opt(peep));
    return {if_asked(need_input, gi),
            gh0,
            gc0,
            if_asked(need_weights, gwi),
            if_asked(need_weights, gwh),
            if_asked(need_weights && has_bias, gb),
            if_asked(need_weights && has_bias, gb),
            if_asked(need_weights && w_hr.defined(), gwr),
            Tensor(),
            Tensor(),
            Tensor(),
            Tensor(),
            if_asked(need_weights && peep.defined(), gp)};
  }
};

class CellFunction : public torch::autograd::Function<CellFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& input, const Tensor& hx,
                               const Tensor& cx, const Tensor& w_ih, const Tensor& w_hh,
                               const std::optional<Tensor>& b_ih,
                               const std::optional<Tensor>& b_hh, bool need_gates,
                               int64_t variant, const std::optional<Tensor>& peephole) {
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("lstm_fused::lstm_cell", "")
                               .typed<std::tuple<Tensor, Tensor, Tensor>(
                                   const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                   const Tensor&, const std::optional<Tensor>&,
                                   const std::optional<Tensor>&, bool, int64_t,
                                   const std::optional<Tensor>&)>();
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    ctx->set_materialize_grads(false);
    auto [hy, cy, gates] =
        op.call(input, hx, cx, w_ih, w_hh, b_ih, b_hh, need_gates, variant, peephole);
    ctx->save_for_backward(
        {input, hx, cx, w_ih, w_hh, opt(b_ih), opt(b_hh), cy, gates, opt(peephole)});
    ctx->saved_data["need_gates"] = need_gates;
    ctx->saved_data["variant"] = variant;
    ctx->mark_non_differentiable({gates});
    return {hy, cy, gates};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(ctx->saved_data["need_gates"].toBool(),
                "lstm_fused: lstm_cell was called with need_gates=False; call it with "
                "need_gates=True to differentiate it");
    const auto s = ctx->get_saved_variables();
    const Tensor &input = s[0], &hx = s[1], &cx = s[2], &w_ih = s[3], &w_hh = s[4];
    const Tensor &b_ih = s[5], &b_hh = s[6], &cy = s[7], &gates = s[8], &peep = s[9];
    const int64_t variant = ctx->saved_data["variant"].toInt();
    const variable_list g = {or_zeros(grads[0], cy), or_zeros(grads[1], cy)};
    // the forward's arguments, undefined where not a tensor
    const variable_list args = {input, hx, cx, w_ih, w_hh, b_ih, b_hh, Tensor(), Tensor(), peep};
    if (at::GradMode::is_enabled()) {
      return differentiable_vjp(cell_reference(input, hx, cx, w_ih, w_hh, b_ih, b_hh,
                                               cell_kind(variant, as_opt(peep)), peep),
                                g, args, ctx);
    }
    static const auto op =
        c10::Dispatcher::singleton()
            .findSchemaOrThrow("lstm_fused::lstm_cell_backward", "")
            .typed<std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>(
                const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool, bool, bool,
                bool, int64_t, const std::optional<Tensor>&)>();
    const bool has_bias = b_ih.defined();
    // As for the layer: no GEMM for a gradient nobody asked for (an input on
    // raw features, a first step's zero state, frozen weights).
    const auto need = needed_grads(args, ctx);
    const bool need_weights = weights_need_grad(need);
    auto [gi, ghx, gcx, gwi, gwh, gb, gp] =
        op.call(g[0], g[1], input, hx, cx, w_ih, w_hh, cy, gates, has_bias, need[0], need[1],
                need_weights, variant, as_opt(peep));
    return {if_asked(need[0], gi),
            if_asked(need[1], ghx),
            gcx,
            if_asked(need_weights, gwi),
            if_asked(need_weights, gwh),
            if_asked(need_weights && has_bias, gb),
            if_asked(need_weights && has_bias, gb),
            Tensor(),
            Tensor(),
            if_asked(need_weights && peep.defined(), gp)};
  }
};

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> layer_autograd(
    const Tensor& input, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
    const Tensor& w_hh, const std::optional<Tensor>& b_ih, const std::optional<Tensor>& b_hh,
    const std::optional<Tensor>& w_hr, const std::optional<Tensor>& lengths, bool reverse,
    bool need_grad, int64_t variant, const std::optional<Tensor>& peephole) {
  auto r = LayerFunction::apply(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse,
                                need_grad, variant, peephole);
  return {r[0], r[1], r[2], r[3], r[4]};
}

std::tuple<Tensor, Tensor, Tensor> cell_autograd(const Tensor& input, const Tensor& hx,
                                                 const Tensor& cx, const Tensor& w_ih,
                                                 const Tensor& w_hh,
                                                 const std::optional<Tensor>& b_ih,
                                                 const std::optional<Tensor>& b_hh,
                                                 bool need_gates, int64_t variant,
                                                 const std::optional<Tensor>& peephole) {
  auto r = CellFunction::apply(input, hx, cx, w_ih, w_hh, b_ih, b_hh, need_gates, variant,
                               peephole);
  return {r[0], r[1], r[2]};
}

}  // namespace

TORCH_LIBRARY_IMPL(lstm_fused, Autograd, m) {
  m.impl("lstm_layer", &layer_autograd);
  m.impl("lstm_cell", &cell_autograd);
}

}  // namespace lstm_fused
