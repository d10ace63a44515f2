#pragma once
// The cell variants: a registry of compile-time descriptions, and the one
// switch from the ops' runtime arguments to them. Framework-free (host and
// device code include it). What each backend's cell math does with a
// description: pointwise_cpu.h (CpuPointwise::cell_update / cell_backward)
// and cuda/device_common.cuh (cell_forward / cell_backward).
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

// A cell chosen at run time.
struct CellKind {
  GateVariant variant = GateVariant::Standard;
  bool peephole = false;

  int64_t gates() const { return variant == GateVariant::Standard ? 4 : 3; }
  int64_t peephole_rows() const { return variant == GateVariant::Standard ? 3 : 2; }
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

}  // namespace lstm_fused
