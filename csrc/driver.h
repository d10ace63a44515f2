#pragma once
// Device-generic drivers for the cell and the layer ops: the GEMMs go through
// ATen (MKL/oneDNN on CPU, cuBLAS on CUDA), the fused pointwise math through the
// backend's policy PW (see pointwise.h). Buffers are allocated once per call,
// never inside the time loop.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include <cstdlib>
#include <limits>
#include <memory>
#include <tuple>
#include <type_traits>

#include "cell_variants.h"
#include "checks.h"

namespace lstm_fused {

template <typename T>
T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

inline at::Tensor rows(const at::Tensor& t, int64_t n) { return t.narrow(0, 0, n); }

// LSTM_FUSED_POISON=1 (read once) fills every buffer a kernel is meant to
// overwrite with NaN first, so a test sees any element a kernel leaves unwritten.
inline bool poison_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("LSTM_FUSED_POISON");
    return v != nullptr && v[0] != '\0' && v[0] != '0';
  }();
  return on;
}

inline at::Tensor poisoned(at::Tensor t) {
  if (poison_enabled()) t.fill_(std::numeric_limits<double>::quiet_NaN());
  return t;
}

inline at::Tensor buffer(at::IntArrayRef sizes, const at::TensorOptions& opts) {
  return poisoned(at::empty(sizes, opts));
}

// A policy may provide `static at::Tensor empty(sizes, opts)` to allocate the
// drivers' large buffers its own way (the CPU policy reuses cached blocks).
template <class PW, class = void>
struct HasEmpty : std::false_type {};
template <class PW>
struct HasEmpty<PW, std::void_t<decltype(PW::empty(std::declval<at::IntArrayRef>(),
                                                   std::declval<at::TensorOptions>()))>>
    : std::true_type {};

template <class PW>
at::Tensor buffer(at::IntArrayRef sizes, const at::TensorOptions& opts) {
  if constexpr (HasEmpty<PW>::value) {
    return poisoned(PW::empty(sizes, opts));
  } else {
    return buffer(sizes, opts);
  }
}

// An output kept only on request (saved gates, cells): when not kept, a fresh
// empty tensor each time, as the outputs of an op must not alias each other.
inline at::Tensor kept_if(bool keep, const at::Tensor& t, const at::TensorOptions& opts) {
  return keep ? t : at::empty({0}, opts);
}

template <class PW>
at::Tensor zeros(at::IntArrayRef sizes, const at::TensorOptions& opts) {
  return buffer<PW>(sizes, opts).zero_();
}

// A policy that sets `static constexpr bool kContiguousTransposedWeights = true`
// gets the per-step weights transposed once per call: CPU GEMM libraries run
// the thin per-step x·Wᵀ 1.3-2.5x slower with a transposed operand than with
// a contiguous one, as they repack it on every call.
template <class PW, class = void>
struct WantsContiguousWeights : std::false_type {};
template <class PW>
struct WantsContiguousWeights<PW, std::void_t<decltype(PW::kContiguousTransposedWeights)>>
    : std::bool_constant<PW::kContiguousTransposedWeights> {};

// A policy may provide `static void mm_out(at::Tensor& out, const at::Tensor& a,
// const at::Tensor& b)` for the large GEMMs (the input projection and the
// gradients after the loop) to run them its own way.
template <class PW, class = void>
struct HasMmOut : std::false_type {};
template <class PW>
struct HasMmOut<PW, std::void_t<decltype(PW::mm_out(std::declval<at::Tensor&>(),
                                                    std::declval<const at::Tensor&>(),
                                                    std::declval<const at::Tensor&>()))>>
    : std::true_type {};

template <class PW>
void large_mm_out(at::Tensor& out, const at::Tensor& a, const at::Tensor& b) {
  if constexpr (HasMmOut<PW>::value) {
    PW::mm_out(out, a, b);
  } else {
    at::mm_out(out, a, b);
  }
}

template <class PW>
at::Tensor large_mm(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor out = at::empty({a.size(0), b.size(1)}, a.options());
  large_mm_out<PW>(out, a, b);
  return out;
}

template <class PW>
at::Tensor transposed(const at::Tensor& w) {
  if constexpr (WantsContiguousWeights<PW>::value) {
    return w.t().contiguous();
  } else {
    return w.t();
  }
}

// The per-step h·Wᵀ on the library GEMM, for policies without step engines.
template <class PW>
struct StepGemm {
  at::Tensor w_t;
  StepGemm(const at::Tensor& w, int64_t /*batch*/, int64_t /*steps*/) : w_t(transposed<PW>(w)) {}
  void accumulate(const at::Tensor& g, const at::Tensor& h, int64_t n) const {
    rows(g, n).addmm_(rows(h, n), w_t);
  }
  void product(const at::Tensor& out, const at::Tensor& h, int64_t n) const {
    auto o = rows(out, n);
    at::mm_out(o, rows(h, n), w_t);
  }
};

// A policy may provide engines chosen per layer call for the recurrence:
//   `ForwardStep::choose<Cell>(w_hh, T, B, proj, layouts_kept)` -> pointer to an object
//     with bool fused(); step<Cell, scalar_t>(n, h_prev, gates, bias, c,
//     h_out, h_copy, c_copy, keep_gates, peephole) (the recurrent product and
//     the pointwise pass of a step in one, when fused()); gemm() -> a
//     StepGemm-like object otherwise;
//     and, for a layer without lengths, sequence<Cell, scalar_t>(T, n, H,
//     reverse, h0, gates, bias, c, h, out, cells, keep_gates, peephole): all
//     steps at once; layouts_kept: an inference, whose weights are expected
//     unchanged on the next call;
//   `BackwardGemm::choose(w, B, T)` -> pointer to a StepGemm-like object,
//     with backward_sequence<PW, Cell, scalar_t>(...) -> bool: the whole
//     sweep of a layer without lengths or projection at once, where it can.
template <class PW, class = void>
struct HasStepEngines : std::false_type {};
template <class PW>
struct HasStepEngines<PW, std::void_t<typename PW::ForwardStep, typename PW::BackwardGemm>>
    : std::true_type {};

template <class PW>
auto backward_gemm(const at::Tensor& w, int64_t batch, int64_t steps) {
  if constexpr (HasStepEngines<PW>::value) {
    return PW::BackwardGemm::choose(w, batch, steps);
  } else {
    return std::make_unique<StepGemm<PW>>(w, batch, steps);
  }
}

template <class PW>
std::tuple<at::Tensor, at::Tensor, at::Tensor> cell_forward(
    const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx, const at::Tensor& w_ih,
    const at::Tensor& w_hh, const std::optional<at::Tensor>& b_ih,
    const std::optional<at::Tensor>& b_hh, bool need_gates, int64_t variant,
    const std::optional<at::Tensor>& peephole) {
  const auto kind = cell_kind(variant, peephole);
  const auto d = check_cell_args(input, hx, cx, w_ih, w_hh, b_ih, b_hh, kind, peephole);
  auto gates = at::mm(input, w_ih.t());
  gates.addmm_(hx, w_hh.t());
  at::Tensor cy = buffer<PW>({d.B, d.H}, input.options());
  at::Tensor hy = buffer<PW>({d.B, d.H}, input.options());
  const auto cxc = cx.contiguous();
  const auto bi = b_ih.has_value() ? b_ih->contiguous() : at::Tensor();
  const auto bh = b_hh.has_value() ? b_hh->contiguous() : at::Tensor();
  const auto pp = peephole.has_value() ? peephole->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, input.scalar_type(), "lstm_cell", [&] {
    with_cell(kind, [&](auto cell) {
      PW::template forward<decltype(cell), scalar_t>(
          d.B, d.H, gates.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(bi),
          ptr_or_null<scalar_t>(bh), cxc.data_ptr<scalar_t>(), cy.data_ptr<scalar_t>(),
          hy.data_ptr<scalar_t>(), nullptr, nullptr, ptr_or_null<scalar_t>(pp));
    });
  });
  return {hy, cy, kept_if(need_gates, gates, input.options())};
}

// The peephole weights' gradient is summed over steps and rows: each row
// adds its steps' terms to its own (rows, H) accumulator in the math type
// (in the pointwise backward, where no two threads share a row), summed over
// rows after the loop. Undefined when not wanted.
inline at::Tensor peephole_accumulators(CellKind kind, bool wanted, int64_t B, int64_t H,
                                        const at::TensorOptions& opts) {
  if (!kind.peephole || !wanted) return at::Tensor();
  return at::zeros({B, kind.peephole_rows(), H},
                   opts.dtype(at::toOpMathType(opts.dtype().toScalarType())));
}

inline at::Tensor peephole_grad(const at::Tensor& acc, at::ScalarType dtype,
                                const at::TensorOptions& opts) {
  return acc.defined() ? acc.sum(0).to(dtype) : at::empty({0}, opts);
}

template <class PW>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
cell_backward(const at::Tensor& grad_hy, const at::Tensor& grad_cy, const at::Tensor& input,
              const at::Tensor& hx, const at::Tensor& cx, const at::Tensor& w_ih,
              const at::Tensor& w_hh, const at::Tensor& cy, const at::Tensor& gates, bool has_bias,
              bool need_input_grad, bool need_hx_grad, bool need_weight_grad, int64_t variant,
              const std::optional<at::Tensor>& peephole) {
  const auto kind = cell_kind(variant, peephole);
  const auto d = check_cell_args(input, hx, cx, w_ih, w_hh, std::nullopt, std::nullopt, kind,
                                 peephole);
  TORCH_CHECK(gates.sizes() == at::IntArrayRef({d.B, d.G}),
              "lstm_fused: gates must be (B, ", d.G, ") from lstm_cell(need_gates=True)");
  at::Tensor dgates = buffer<PW>({d.B, d.G}, input.options());
  auto dc = grad_cy.contiguous().clone();
  const auto ghy = grad_hy.contiguous();
  const auto cxc = cx.contiguous();
  const auto cyc = cy.contiguous();
  const auto g = gates.contiguous();
  const auto pp = peephole.has_value() ? peephole->contiguous() : at::Tensor();
  const auto dpeep = peephole_accumulators(kind, need_weight_grad, d.B, d.H, input.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, input.scalar_type(), "lstm_cell_backward", [&] {
    with_cell(kind, [&](auto cell) {
      PW::template backward<decltype(cell), scalar_t>(
          d.B, d.H, g.data_ptr<scalar_t>(), cyc.data_ptr<scalar_t>(), cxc.data_ptr<scalar_t>(),
          ghy.data_ptr<scalar_t>(), nullptr, dc.data_ptr<scalar_t>(),
          dgates.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(pp),
          ptr_or_null<at::opmath_type<scalar_t>>(dpeep));
    });
  });
  const auto opts = input.options();
  auto if_asked = [&](bool asked, auto&& compute) {
    return asked ? at::Tensor(compute()) : at::empty({0}, opts);
  };
  return {if_asked(need_input_grad, [&] { return at::mm(dgates, w_ih); }),
          if_asked(need_hx_grad, [&] { return at::mm(dgates, w_hh); }),
          dc,
          if_asked(need_weight_grad, [&] { return at::mm(dgates.t(), input); }),
          if_asked(need_weight_grad, [&] { return at::mm(dgates.t(), hx); }),
          if_asked(need_weight_grad && has_bias, [&] { return dgates.sum(0); }),
          peephole_grad(dpeep, input.scalar_type(), opts)};
}

template <class PW>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> layer_forward(
    const at::Tensor& input, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& w_ih,
    const at::Tensor& w_hh, const std::optional<at::Tensor>& b_ih,
    const std::optional<at::Tensor>& b_hh, const std::optional<at::Tensor>& w_hr,
    const std::optional<at::Tensor>& lengths, bool reverse, bool need_grad, int64_t variant,
    const std::optional<at::Tensor>& peephole) {
  const auto kind = cell_kind(variant, peephole);
  const auto d = check_layer_args(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, kind,
                                  peephole);
  const auto n_active = active_rows(lengths, d.T, d.B);
  const auto opts = input.options();
  const bool packed = lengths.has_value();

  // gates (T, B, G): x_t·W_ihᵀ, then the activated gates when need_grad; not
  // allocated for an inference whose fused steps compute the projection
  // (CPU, input_projection_cpu.h). project(): the input projection of every
  // step in one GEMM; the biases are added by the pointwise pass, which reads
  // the gates anyway.
  at::Tensor gates;
  auto gates_buffer = [&] {
    if (!gates.defined()) gates = buffer<PW>({d.T, d.B, d.G}, opts);
  };
  auto project = [&] {
    gates_buffer();
    auto gflat = gates.view({d.T * d.B, d.G});
    // Tall enough that GEMM libraries amortise packing the transposed weight.
    PW::projection_out(gflat, input.reshape({d.T * d.B, d.I}), w_ih, /*weight_kept=*/!need_grad);
  };
  const auto bias = b_ih.has_value() ? (*b_ih + *b_hh).contiguous() : at::Tensor();
  const auto peep = peephole.has_value() ? peephole->contiguous() : at::Tensor();
  at::Tensor output = packed ? zeros<PW>({d.T, d.B, d.P}, opts) : buffer<PW>({d.T, d.B, d.P}, opts);
  // Zeroed when packed so that padded rows stay finite for the backward GEMMs.
  at::Tensor cells = !need_grad ? at::Tensor()
                     : packed   ? zeros<PW>({d.T, d.B, d.H}, opts)
                                : buffer<PW>({d.T, d.B, d.H}, opts);
  auto h = h0.contiguous().clone();
  auto c = c0.contiguous().clone();
  at::Tensor hcell = d.proj() ? buffer<PW>({d.B, d.H}, opts) : at::Tensor();
  // The recurrence with the product h_{t-1}·W_hhᵀ on `gemm`, then the
  // pointwise pass (and the projection) per step.
  auto unfused = [&](auto& gemm, auto cell) {
    using Cell = decltype(cell);
    project();
    const at::Tensor w_hr_t = d.proj() ? transposed<PW>(*w_hr) : at::Tensor();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, input.scalar_type(), "lstm_layer", [&] {
      for (int64_t s = 0; s < d.T; ++s) {
        const int64_t t = reverse ? d.T - 1 - s : s;
        const int64_t n = n_active[t];
        if (n == 0) continue;
        auto g = rows(gates[t], n);
        gemm.accumulate(gates[t], h, n);
        auto out_t = output[t];
        PW::template forward<Cell, scalar_t>(
            n, d.H, g.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(bias), nullptr,
            c.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(),
            d.proj() ? hcell.data_ptr<scalar_t>() : h.data_ptr<scalar_t>(),
            d.proj() ? nullptr : out_t.data_ptr<scalar_t>(),
            need_grad ? cells[t].data_ptr<scalar_t>() : nullptr, ptr_or_null<scalar_t>(peep));
        if (d.proj()) {
          auto o = rows(out_t, n);
          at::mm_out(o, rows(hcell, n), w_hr_t);
          rows(h, n).copy_(o);
        }
      }
    });
  };
  with_cell(kind, [&](auto cell) {
    using Cell = decltype(cell);
    if constexpr (HasStepEngines<PW>::value) {
      auto step = PW::ForwardStep::template choose<Cell>(w_hh, d.T, d.B, d.proj(), !need_grad);
      if (!step->fused()) {
        unfused(step->gemm(), cell);
      } else {
        // h_{t-1} is read from the previous step's output rows, which the step
        // does not write, or from h0 for rows that start at this step (all at
        // the first step; the shorter sequences of a reversed packed batch
        // later on). Without lengths every row runs every step: the whole
        // recurrence in one parallel region.
        const auto h0c = h0.contiguous();
        at::Tensor starting;  // previous output rows, then h0 rows, when some rows start
        const bool in_step = step->template input_in_steps<Cell>(w_ih, d.T, d.B, packed);
        const at::Tensor x = in_step ? input.contiguous() : at::Tensor();
        if (!in_step) {
          project();
        } else if (need_grad) {
          gates_buffer();
        }
        AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, input.scalar_type(), "lstm_layer_fused", [&] {
          scalar_t* out = output.data_ptr<scalar_t>();
          scalar_t* gt = ptr_or_null<scalar_t>(gates);
          scalar_t* ct = need_grad ? cells.data_ptr<scalar_t>() : nullptr;
          if (!packed) {
            step->template sequence<Cell, scalar_t>(
                d.T, d.B, d.H, reverse, h0c.data_ptr<scalar_t>(), gt, ptr_or_null<scalar_t>(bias),
                c.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), out, ct, need_grad,
                ptr_or_null<scalar_t>(peep), in_step ? x.data_ptr<scalar_t>() : nullptr, d.I);
            return;
          }
          const int64_t BH = d.B * d.H, BG = d.B * d.G;
          for (int64_t s = 0; s < d.T; ++s) {
            const int64_t t = reverse ? d.T - 1 - s : s;
            const int64_t n = n_active[t];
            if (n == 0) continue;
            const int64_t tp = reverse ? t + 1 : t - 1;
            const int64_t m = s == 0 ? 0 : std::min(n, n_active[tp]);
            const scalar_t* h_prev = m == 0 ? h0c.data_ptr<scalar_t>() : out + tp * BH;
            if (m > 0 && m < n) {
              if (!starting.defined()) starting = at::empty({d.B, d.H}, opts);
              starting.narrow(0, 0, m).copy_(output[tp].narrow(0, 0, m));
              starting.narrow(0, m, n - m).copy_(h0c.narrow(0, m, n - m));
              h_prev = starting.data_ptr<scalar_t>();
            }
            step->template step<Cell, scalar_t>(
                n, h_prev, gt + t * BG, ptr_or_null<scalar_t>(bias), c.data_ptr<scalar_t>(),
                h.data_ptr<scalar_t>(), out + t * BH, ct ? ct + t * BH : nullptr, need_grad,
                ptr_or_null<scalar_t>(peep));
          }
        });
      }
    } else {
      StepGemm<PW> gemm(w_hh, d.B, d.T);
      unfused(gemm, cell);
    }
  });
  return {output, h, c, kept_if(need_grad, gates, opts), kept_if(need_grad, cells, opts)};
}

// h_{t-1} as seen by each step (T, B, P): the matrix that multiplies dgates
// into dW_hh. Rows that are not running at a step are zero or h0 (finite).
template <class PW = void>
at::Tensor previous_h(const at::Tensor& output, const at::Tensor& h0,
                      const std::vector<int64_t>& n_active, bool reverse) {
  const int64_t T = output.size(0);
  at::Tensor hprev = buffer<PW>(output.sizes(), output.options());
  if (T == 0) return hprev;
  if (!reverse) {
    hprev[0].copy_(h0);
    hprev.narrow(0, 1, T - 1).copy_(output.narrow(0, 0, T - 1));
  } else {
    hprev[T - 1].copy_(h0);
    hprev.narrow(0, 0, T - 1).copy_(output.narrow(0, 1, T - 1));
    // Sequences that start at step t (reverse direction) start from h0.
    for (int64_t t = 0; t + 1 < T; ++t) {
      const int64_t m = n_active[t + 1], n = n_active[t];
      if (n > m) hprev[t].narrow(0, m, n - m).copy_(h0.narrow(0, m, n - m));
    }
  }
  return hprev;
}

// After the reversed loop: dx, dW_ih, dW_hh and db from all steps' dgates
// (T, B, KH) as a few large GEMMs, those asked for (the others empty).
// Device-generic; no atomics.
template <class PW = void>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> gradient_gemms(
    const at::Tensor& dgates, const at::Tensor& input, const at::Tensor& output,
    const at::Tensor& h0, const at::Tensor& w_ih, const std::vector<int64_t>& n_active,
    bool has_bias, bool reverse, bool need_input_grad = true, bool need_weight_grad = true) {
  const int64_t T = dgates.size(0), B = dgates.size(1), G = dgates.size(2);
  const int64_t I = input.size(2), P = output.size(2);
  const auto opts = input.options();
  const auto dflat = dgates.view({T * B, G});
  at::Tensor grad_input = at::empty({0}, opts);
  if (need_input_grad) {
    grad_input = buffer<PW>({T, B, I}, opts);
    auto grad_input_flat = grad_input.view({T * B, I});
    large_mm_out<PW>(grad_input_flat, dflat, w_ih);
  }
  if (!need_weight_grad) return {grad_input, at::empty({0}, opts), at::empty({0}, opts), at::empty({0}, opts)};
  const at::Tensor hprev = previous_h<PW>(output, h0, n_active, reverse);
  return {grad_input, large_mm<PW>(dflat.t(), input.reshape({T * B, I})),
          large_mm<PW>(dflat.t(), hprev.view({T * B, P})),
          has_bias ? dflat.sum(0) : at::empty({0}, opts)};
}

template <class PW>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
           at::Tensor>
layer_backward(const at::Tensor& grad_output, const at::Tensor& grad_hn, const at::Tensor& grad_cn,
               const at::Tensor& input, const at::Tensor& h0, const at::Tensor& c0,
               const at::Tensor& w_ih, const at::Tensor& w_hh,
               const std::optional<at::Tensor>& w_hr, const std::optional<at::Tensor>& lengths,
               const at::Tensor& output, const at::Tensor& gates, const at::Tensor& cells,
               bool has_bias, bool reverse, bool need_input_grad, bool need_weight_grad,
               int64_t variant, const std::optional<at::Tensor>& peephole) {
  const auto kind = cell_kind(variant, peephole);
  const auto d = check_layer_args(input, h0, c0, w_ih, w_hh, std::nullopt, std::nullopt, w_hr,
                                  lengths, kind, peephole);
  TORCH_CHECK(gates.sizes() == at::IntArrayRef({d.T, d.B, d.G}) &&
                  cells.sizes() == at::IntArrayRef({d.T, d.B, d.H}),
              "lstm_fused: gates and cells must come from lstm_layer(need_grad=True)");
  const auto n_active = active_rows(lengths, d.T, d.B);
  const auto opts = input.options();
  const bool packed = lengths.has_value();

  at::Tensor dgates = packed ? zeros<PW>({d.T, d.B, d.G}, opts)
                             : buffer<PW>({d.T, d.B, d.G}, opts);
  const auto peep = peephole.has_value() ? peephole->contiguous() : at::Tensor();
  const auto dpeep = peephole_accumulators(kind, need_weight_grad, d.B, d.H, opts);
  auto dh = grad_hn.contiguous().clone();
  auto dc = grad_cn.contiguous().clone();
  const auto go = grad_output.contiguous();
  const auto g_all = gates.contiguous();
  const auto c_all = cells.contiguous();
  const auto c0c = c0.contiguous();
  // With a projection, dL/dh_t (width P) is kept for dW_hr and mapped to the
  // cell's output width H before the pointwise step.
  at::Tensor dhp_all = !d.proj() ? at::Tensor()
                       : packed     ? zeros<PW>({d.T, d.B, d.P}, opts)
                                    : buffer<PW>({d.T, d.B, d.P}, opts);
  at::Tensor dhcell = d.proj() ? buffer<PW>({d.B, d.H}, opts) : at::Tensor();

  // dL/dh_{t-1} = dgates_t · W_hh = dgates_t · (W_hhᵀ)ᵀ
  auto back_gemm = backward_gemm<PW>(w_hh.t(), d.B, d.T);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, input.scalar_type(), "lstm_layer_backward", [&] {
    with_cell(kind, [&](auto cell) {
      using Cell = decltype(cell);
      const scalar_t* pp = ptr_or_null<scalar_t>(peep);
      using acc_t = at::opmath_type<scalar_t>;
      acc_t* dpp = ptr_or_null<acc_t>(dpeep);
      const int64_t PR = Cell::kPeepRows * d.H;
      if constexpr (HasStepEngines<PW>::value) {
        if (!packed && !d.proj() &&
            back_gemm->template backward_sequence<PW, Cell, scalar_t>(
                d.T, d.B, d.H, reverse, g_all.data_ptr<scalar_t>(), c_all.data_ptr<scalar_t>(),
                c0c.data_ptr<scalar_t>(), go.data_ptr<scalar_t>(), dh.data_ptr<scalar_t>(),
                dc.data_ptr<scalar_t>(), dgates.data_ptr<scalar_t>(), pp, dpp)) {
          return;
        }
      }
      for (int64_t s = d.T - 1; s >= 0; --s) {
        const int64_t t = reverse ? d.T - 1 - s : s;
        const int64_t n = n_active[t];
        if (n == 0) continue;
        const int64_t tp = reverse ? t + 1 : t - 1;  // the step processed before t
        const bool has_prev = tp >= 0 && tp < d.T;
        const int64_t m = has_prev ? std::min(n, n_active[tp]) : 0;
        const scalar_t *dh_a, *dh_b;
        if (d.proj()) {
          auto dhp = rows(dhp_all[t], n);
          at::add_out(dhp, rows(go[t], n), rows(dh, n));
          auto dhc = rows(dhcell, n);
          at::mm_out(dhc, dhp, *w_hr);
          dh_a = dhcell.data_ptr<scalar_t>();
          dh_b = nullptr;
        } else {
          dh_a = go[t].data_ptr<scalar_t>();
          dh_b = dh.data_ptr<scalar_t>();
        }
        const int64_t H = d.H, G = d.G;
        const scalar_t* g_t = g_all[t].data_ptr<scalar_t>();
        const scalar_t* c_t = c_all[t].data_ptr<scalar_t>();
        scalar_t* dg_t = dgates[t].data_ptr<scalar_t>();
        scalar_t* dcp = dc.data_ptr<scalar_t>();
        // Rows [0, m) continue from the previous step; rows [m, n) start from c0.
        if (m > 0) {
          PW::template backward<Cell, scalar_t>(m, H, g_t, c_t, c_all[tp].data_ptr<scalar_t>(),
                                                dh_a, dh_b, dcp, dg_t, pp, dpp);
        }
        if (n > m) {
          PW::template backward<Cell, scalar_t>(n - m, H, g_t + m * G, c_t + m * H,
                                                c0c.data_ptr<scalar_t>() + m * H, dh_a + m * H,
                                                dh_b ? dh_b + m * d.P : nullptr, dcp + m * H,
                                                dg_t + m * G, pp, dpp ? dpp + m * PR : nullptr);
        }
        back_gemm->product(dh, dgates[t], n);
      }
    });
  });

  auto [grad_input, grad_w_ih, grad_w_hh, grad_bias] = gradient_gemms<PW>(
      dgates, input, output, h0, w_ih, n_active, has_bias, reverse, need_input_grad,
      need_weight_grad);
  at::Tensor grad_w_hr = at::empty({0}, opts);
  if (d.proj() && need_weight_grad) {
    const auto hcell_all = g_all.narrow(2, (kind.gates() - 1) * d.H, d.H) * at::tanh(c_all);
    grad_w_hr = large_mm<PW>(dhp_all.view({d.T * d.B, d.P}).t(), hcell_all.view({d.T * d.B, d.H}));
  }
  return {grad_input, dh, dc, grad_w_ih, grad_w_hh, grad_bias, grad_w_hr,
          peephole_grad(dpeep, input.scalar_type(), opts)};
}

}  // namespace lstm_fused
