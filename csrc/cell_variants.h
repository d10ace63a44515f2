#pragma once
// The cell variants: a registry of compile-time descriptions, the one switch
// from the ops' runtime arguments to them, and the cell's forward and
// backward equations, written once for every backend. Framework-free (host
// and device code include it): the CPU kernels run the equations on vectors
// (cpu/pointwise_cpu.h), the CUDA kernels on scalars (cuda/device_common.cuh),
// the double-backward recomputation on tensors (reference.cpp).
//
//   standard       i, f, g, o                c = f·c' + i·g     (torch.nn.LSTM)
//   cifg           f, g, o;  i = 1 − f       c = f·c' + (1 − f)·g
//   no_input_gate  f, g, o;  i = 1           c = f·c' + g
// with peepholes (Gers & Schmidhuber 2000), p of (rows, H), rows (i, f, o)
// or (f, o) without an input gate: i and f add p·c_{t-1} before their
// sigmoid, o adds p·c_t.
//
// Gate blocks are stored in that order (kGates of H each) in the weights'
// rows, the biases and the kernels' gate buffers.
#include <cstdint>
#include <utility>

namespace lstm_fused {

// The ops' `variant` argument; lstm_fused/variants.py holds the same numbers.
enum class GateVariant : int64_t { Standard = 0, Cifg = 1, NoInputGate = 2 };

template <GateVariant V, bool Peephole>
struct CellSpec {
  static constexpr GateVariant kVariant = V;
  static constexpr bool kPeephole = Peephole;
  static constexpr bool kInputGate = V == GateVariant::Standard;
  static constexpr int kGates = kInputGate ? 4 : 3;
  // gate blocks: i (standard only) at 0, then f, g, o
  static constexpr int kF = kGates - 3, kG = kGates - 2, kO = kGates - 1;
  // peephole rows: i (standard only), f, o
  static constexpr int kPeepRows = kInputGate ? 3 : 2;
  static constexpr int kPeepF = kPeepRows - 2, kPeepO = kPeepRows - 1;
};

using StandardCell = CellSpec<GateVariant::Standard, false>;
using StandardPeepholeCell = CellSpec<GateVariant::Standard, true>;
using CifgCell = CellSpec<GateVariant::Cifg, false>;
using CifgPeepholeCell = CellSpec<GateVariant::Cifg, true>;
using NoInputGateCell = CellSpec<GateVariant::NoInputGate, false>;
using NoInputGatePeepholeCell = CellSpec<GateVariant::NoInputGate, true>;

// A cell chosen at run time.
struct CellKind {
  GateVariant variant = GateVariant::Standard;
  bool peephole = false;

  // Its CellSpec's kGates and kPeepRows (defined after with_cell).
  int64_t gates() const;
  int64_t peephole_rows() const;
  bool standard() const { return variant == GateVariant::Standard && !peephole; }
  static bool valid(int64_t v) { return v >= 0 && v <= 2; }
};

// f(CellSpec<...>{}) for the kind's compile-time description.
template <class F>
decltype(auto) with_cell(CellKind k, F&& f) {
  auto peep = [&](auto v) -> decltype(auto) {
    constexpr GateVariant V = decltype(v)::value;
    if (k.peephole) return f(CellSpec<V, true>{});
    return f(CellSpec<V, false>{});
  };
  switch (k.variant) {
    case GateVariant::Cifg:
      return peep(std::integral_constant<GateVariant, GateVariant::Cifg>{});
    case GateVariant::NoInputGate:
      return peep(std::integral_constant<GateVariant, GateVariant::NoInputGate>{});
    default:
      return peep(std::integral_constant<GateVariant, GateVariant::Standard>{});
  }
}

inline int64_t CellKind::gates() const {
  return with_cell(*this, [](auto cell) -> int64_t { return decltype(cell)::kGates; });
}
inline int64_t CellKind::peephole_rows() const {
  return with_cell(*this, [](auto cell) -> int64_t { return decltype(cell)::kPeepRows; });
}

// The equations, once for every backend, on any arithmetic type V (a CPU
// vector, a CUDA scalar, an ATen tensor) with + − ×, given the math M:
// M::sigmoid(V), M::tanh(V), M::one_minus(V) (1 − x) and M::ones(V) (1 of
// x's shape).
#if defined(__CUDACC__) || defined(LSTM_FUSED_SIM)
#define LSTM_FUSED_HD __host__ __device__
#else
#define LSTM_FUSED_HD
#endif

// The activated gates (i the input gate the cell used: 1 − f for cifg, 1
// without an input gate), c_t and h_t.
template <class V>
struct CellValues {
  V i, f, g, o, c, h;
};

// The forward from the pre-activations (Cell::kGates of them, Cell's order)
// and c_{t-1}. p: the unit's peephole weights (i, f, o) when Cell has them
// (p[0] unused without an input gate); not read otherwise.
template <class Cell, class M, class V>
LSTM_FUSED_HD inline CellValues<V> cell_equations(const V (&pre)[Cell::kGates], const V& c_prev,
                                                  const V* p) {
  CellValues<V> s;
  V pf = pre[Cell::kF];
  if constexpr (Cell::kPeephole) pf = pf + p[1] * c_prev;
  s.f = M::sigmoid(pf);
  s.g = M::tanh(pre[Cell::kG]);
  if constexpr (Cell::kVariant == GateVariant::Standard) {
    V pi = pre[0];
    if constexpr (Cell::kPeephole) pi = pi + p[0] * c_prev;
    s.i = M::sigmoid(pi);
    s.c = s.f * c_prev + s.i * s.g;
  } else if constexpr (Cell::kVariant == GateVariant::Cifg) {
    s.i = M::one_minus(s.f);
    s.c = s.f * c_prev + s.i * s.g;
  } else {
    s.i = M::ones(s.f);
    s.c = s.f * c_prev + s.g;
  }
  V po = pre[Cell::kO];
  if constexpr (Cell::kPeephole) po = po + p[2] * s.c;
  s.o = M::sigmoid(po);
  s.h = s.o * M::tanh(s.c);
  return s;
}

// dL/d(pre-activations) (Cell::kGates, Cell's order) and dL/dc_{t-1}.
template <class V, int K>
struct CellGradients {
  V d[K];
  V dc_prev;
};

// The backward from the stored activated gates (Cell::kGates of them), c_t,
// c_{t-1}, dL/dh_t, dL/dc_t and the peephole weights p (as cell_equations).
template <class Cell, class M, class V>
LSTM_FUSED_HD inline CellGradients<V, Cell::kGates> cell_gradients(
    const V (&gate)[Cell::kGates], const V& c, const V& c_prev, const V& dh, const V& dc,
    const V* p) {
  CellGradients<V, Cell::kGates> r;
  const V f = gate[Cell::kF], g = gate[Cell::kG], o = gate[Cell::kO];
  const V tc = M::tanh(c);
  const V d_o = dh * tc * o * M::one_minus(o);
  V dct = dc + dh * o * M::one_minus(tc * tc);
  if constexpr (Cell::kPeephole) dct = dct + d_o * p[2];
  const V dg_act = M::one_minus(g * g);
  V df = c_prev;
  r.dc_prev = dct * f;
  if constexpr (Cell::kVariant == GateVariant::Standard) {
    const V i = gate[0];
    r.d[0] = dct * g * i * M::one_minus(i);
    r.d[Cell::kG] = dct * i * dg_act;
    if constexpr (Cell::kPeephole) r.dc_prev = r.dc_prev + r.d[0] * p[0];
  } else if constexpr (Cell::kVariant == GateVariant::Cifg) {
    r.d[Cell::kG] = dct * M::one_minus(f) * dg_act;
    df = c_prev - g;  // i = 1 − f: f also reaches c_t through i·g
  } else {
    r.d[Cell::kG] = dct * dg_act;
  }
  r.d[Cell::kF] = dct * df * f * M::one_minus(f);
  r.d[Cell::kO] = d_o;
  if constexpr (Cell::kPeephole) r.dc_prev = r.dc_prev + r.d[Cell::kF] * p[1];
  return r;
}

// Every cell, for explicit instantiation: X(Cell, arg) per cell.
#define LSTM_FUSED_FOR_EACH_CELL(X, arg)      \
  X(::lstm_fused::StandardCell, arg)            \
  X(::lstm_fused::StandardPeepholeCell, arg)    \
  X(::lstm_fused::CifgCell, arg)                \
  X(::lstm_fused::CifgPeepholeCell, arg)        \
  X(::lstm_fused::NoInputGateCell, arg)         \
  X(::lstm_fused::NoInputGatePeepholeCell, arg)

}  // namespace lstm_fused
