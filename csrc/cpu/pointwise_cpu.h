#pragma once
// CPU implementation of the pointwise policy (see ../pointwise.h): rows are
// split across threads with at::parallel_for, hidden units are vectorised with
// at::vec::Vectorized in the tensor's own precision (float, double) or in float
// for bfloat16/float16.
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/OpMathType.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "../cell_variants.h"
#include "host_pool.h"
#include "recurrence_cpu.h"

namespace lstm_fused {

struct CpuPointwise {
  static constexpr bool kContiguousTransposedWeights = true;
  using ForwardStep = CpuForwardStep<CpuPointwise>;
  using BackwardGemm = CpuStepGemm;

  static at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& opts) {
    return pooled_empty(sizes, opts);
  }
  // The large GEMMs (input projection, gradients). In 16-bit types, natively
  // or in float, by measurement (large_16bit_mm_out): with AMX the native
  // GEMM is several times faster; on a Xeon with AVX512_BF16 and no AMX it
  // ran 25-40% slower than converting to float.
  static void mm_out(at::Tensor& out, const at::Tensor& a, const at::Tensor& b) {
    const auto t = out.scalar_type();
    if (t == at::kBFloat16 || t == at::kHalf) {
      large_16bit_mm_out(out, a, b, cpu_has_16bit_dot(t));
    } else {
      at::mm_out(out, a, b);
    }
  }

  // Below this many elements per call, threading costs more than it saves.
  static constexpr int64_t kGrain = 4096;

  // float uses ATen's polynomial exp (exp_u20, ~2 ulp), several times faster
  // than the Sleef exp/tanh; the activations stay within ~1e-7 of exact, far
  // inside float32's error budget for the step. It clamps its argument, so
  // NaNs are put back explicitly to propagate as in torch.nn.LSTM.
  template <typename V>
  static V vexp(V x) {
    if constexpr (std::is_same_v<V, at::vec::Vectorized<float>>) {
      return x.exp_u20();
    } else {
      return x.exp();
    }
  }

  template <typename V>
  static V keep_nan(V result, V x) {
    return V::blendv(result, x, x.isnan());
  }

  template <typename V>
  static V vsigmoid(V x) {
    const V one(1);
    return keep_nan(one / (one + vexp(x.neg())), x);
  }

  template <typename V>
  static V vtanh(V x) {
    if constexpr (std::is_same_v<V, at::vec::Vectorized<float>>) {
      const V one(1), two(2);
      return keep_nan(one - two / (one + vexp(x * two)), x);
    } else {
      return x.tanh();
    }
  }

  template <class Cell, typename scalar_t>
  static void forward(int64_t n, int64_t H, scalar_t* gates, const scalar_t* b_ih,
                      const scalar_t* b_hh, const scalar_t* c_prev, scalar_t* c_out,
                      scalar_t* h_out, scalar_t* h_copy, scalar_t* c_copy,
                      const scalar_t* peephole) {
    constexpr int K = Cell::kGates;
    const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(1, K * H));
    at::parallel_for(0, n, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        forward_row<Cell>(H, gates + r * K * H, b_ih, b_hh, c_prev + r * H, c_out + r * H,
                          h_out + r * H, h_copy ? h_copy + r * H : nullptr,
                          c_copy ? c_copy + r * H : nullptr, peephole);
      }
    });
  }

  template <class Cell, typename scalar_t>
  static void backward(int64_t n, int64_t H, const scalar_t* gates, const scalar_t* c,
                       const scalar_t* c_prev, const scalar_t* dh_a, const scalar_t* dh_b,
                       scalar_t* dc, scalar_t* dgates, const scalar_t* peephole) {
    constexpr int K = Cell::kGates;
    const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(1, K * H));
    at::parallel_for(0, n, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        backward_row<Cell>(H, gates + r * K * H, c + r * H, c_prev + r * H, dh_a + r * H,
                           dh_b ? dh_b + r * H : nullptr, dc + r * H, dgates + r * K * H,
                           peephole);
      }
    });
  }

  // Vectors of the math type (float for the 16-bit types), loaded from and
  // stored to the tensor's own type. A count below the vector width loads
  // that many elements (the rest zero) or stores that many: the tail of a row
  // runs the same code as the full vectors.
  template <typename scalar_t>
  using MathVec = at::vec::Vectorized<at::opmath_type<scalar_t>>;

  template <typename scalar_t>
  static MathVec<scalar_t> vload(const scalar_t* p, int64_t count = MathVec<scalar_t>::size()) {
    constexpr int64_t W = MathVec<scalar_t>::size();
    if (count < W) {
      scalar_t tail[W] = {};
      std::copy(p, p + count, tail);
      return vload(tail);
    }
    if constexpr (std::is_same_v<scalar_t, at::opmath_type<scalar_t>>) {
      return MathVec<scalar_t>::loadu(p);
    } else {
      MathVec<scalar_t> v;
      at::vec::load_to_float<scalar_t>(p, v);
      return v;
    }
  }

  template <typename scalar_t>
  static void vstore(const MathVec<scalar_t>& v, scalar_t* p,
                     int64_t count = MathVec<scalar_t>::size()) {
    constexpr int64_t W = MathVec<scalar_t>::size();
    if (count < W) {
      scalar_t tail[W];
      vstore(v, tail);
      std::copy(tail, tail + count, p);
    } else if constexpr (std::is_same_v<scalar_t, at::opmath_type<scalar_t>>) {
      v.store(p);
    } else {
      at::vec::convert_from_float<scalar_t>(v, v).store(p, W);
    }
  }

  // The cell update of `count` units (a vector or less) from their
  // pre-activations (Cell::kGates blocks, cell_variants.h): the activated
  // gates to g (block q at g + q·H; none when g is null), c_t and h_t to
  // their destinations (the copies may be null). peep: the peephole weights
  // (Cell::kPeepRows rows of H) when Cell has them. Every pointer starts at
  // the first unit.
  template <class Cell, typename scalar_t>
  static void cell_update(int64_t H, const MathVec<scalar_t> (&pre)[Cell::kGates], scalar_t* g,
                          const scalar_t* c_prev, scalar_t* c_out, scalar_t* h_out,
                          scalar_t* h_copy, scalar_t* c_copy, const scalar_t* peep,
                          int64_t count = MathVec<scalar_t>::size()) {
    using V = MathVec<scalar_t>;
    const V cp = vload(c_prev, count);
    V pf = pre[Cell::kF], po = pre[Cell::kO];
    if constexpr (Cell::kPeephole) pf = pf + vload(peep + Cell::kPeepF * H, count) * cp;
    const V f = vsigmoid(pf), gg = vtanh(pre[Cell::kG]);
    V i, cn;
    if constexpr (Cell::kVariant == GateVariant::Standard) {
      V pi = pre[0];
      if constexpr (Cell::kPeephole) pi = pi + vload(peep, count) * cp;
      i = vsigmoid(pi);
      cn = f * cp + i * gg;
    } else if constexpr (Cell::kVariant == GateVariant::Cifg) {
      cn = f * cp + (V(1) - f) * gg;
    } else {
      cn = f * cp + gg;
    }
    if constexpr (Cell::kPeephole) po = po + vload(peep + Cell::kPeepO * H, count) * cn;
    const V o = vsigmoid(po);
    const V hn = o * vtanh(cn);
    if (g) {
      if constexpr (Cell::kInputGate) vstore(i, g, count);
      vstore(f, g + Cell::kF * H, count);
      vstore(gg, g + Cell::kG * H, count);
      vstore(o, g + Cell::kO * H, count);
    }
    vstore(cn, c_out, count);
    vstore(hn, h_out, count);
    if (h_copy) vstore(hn, h_copy, count);
    if (c_copy) vstore(cn, c_copy, count);
  }

  // Its backward for `count` units: dL/d(pre-activations) to dg (block q at
  // dg + q·H) and dL/dc_{t-1} to dc, from the activated gates g, c_t,
  // c_{t-1}, dL/dh_t (dh_a + dh_b; dh_b may be null), dL/dc_t (dc on entry)
  // and the peephole weights (when Cell has them).
  template <class Cell, typename scalar_t>
  static void cell_backward(int64_t H, const scalar_t* g, const scalar_t* c,
                            const scalar_t* c_prev, const scalar_t* dh_a, const scalar_t* dh_b,
                            scalar_t* dc, scalar_t* dg, const scalar_t* peep,
                            int64_t count = MathVec<scalar_t>::size()) {
    using V = MathVec<scalar_t>;
    const V one(1);
    const V f = vload(g + Cell::kF * H, count), gg = vload(g + Cell::kG * H, count),
            o = vload(g + Cell::kO * H, count);
    V dh = vload(dh_a, count);
    if (dh_b) dh = dh + vload(dh_b, count);
    const V tc = vtanh(vload(c, count));
    const V d_o = dh * tc * o * (one - o);
    V dct = vload(dc, count) + dh * o * (one - tc * tc);
    if constexpr (Cell::kPeephole) dct = dct + d_o * vload(peep + Cell::kPeepO * H, count);
    const V cp = vload(c_prev, count);
    V dcp = dct * f;
    if constexpr (Cell::kVariant == GateVariant::Standard) {
      const V i = vload(g, count);
      const V d_i = dct * gg * i * (one - i);
      vstore(d_i, dg, count);
      vstore(V(dct * i * (one - gg * gg)), dg + Cell::kG * H, count);
      if constexpr (Cell::kPeephole) dcp = dcp + d_i * vload(peep, count);
    } else if constexpr (Cell::kVariant == GateVariant::Cifg) {
      vstore(V(dct * (one - f) * (one - gg * gg)), dg + Cell::kG * H, count);
    } else {
      vstore(V(dct * (one - gg * gg)), dg + Cell::kG * H, count);
    }
    // cifg: i = 1 − f, so f also reaches c_t through i·g
    const V df = Cell::kVariant == GateVariant::Cifg ? V(cp - gg) : cp;
    const V d_f = dct * df * f * (one - f);
    vstore(d_f, dg + Cell::kF * H, count);
    vstore(d_o, dg + Cell::kO * H, count);
    if constexpr (Cell::kPeephole) dcp = dcp + d_f * vload(peep + Cell::kPeepF * H, count);
    vstore(dcp, dc, count);
  }

 private:
  template <class Cell, typename scalar_t>
  static void forward_row(int64_t H, scalar_t* g, const scalar_t* b_ih, const scalar_t* b_hh,
                          const scalar_t* c_prev, scalar_t* c_out, scalar_t* h_out,
                          scalar_t* h_copy, scalar_t* c_copy, const scalar_t* peep) {
    using V = MathVec<scalar_t>;
    constexpr int K = Cell::kGates;
    for (int64_t u = 0; u < H; u += V::size()) {
      const int64_t count = std::min<int64_t>(V::size(), H - u);
      V pre[K];
      for (int k = 0; k < K; ++k) {
        pre[k] = vload(g + k * H + u, count);
        if (b_ih) pre[k] = pre[k] + vload(b_ih + k * H + u, count);
        if (b_hh) pre[k] = pre[k] + vload(b_hh + k * H + u, count);
      }
      cell_update<Cell>(H, pre, g + u, c_prev + u, c_out + u, h_out + u,
                        h_copy ? h_copy + u : nullptr, c_copy ? c_copy + u : nullptr,
                        peep ? peep + u : nullptr, count);
    }
  }

  template <class Cell, typename scalar_t>
  static void backward_row(int64_t H, const scalar_t* g, const scalar_t* c,
                           const scalar_t* c_prev, const scalar_t* dh_a, const scalar_t* dh_b,
                           scalar_t* dc, scalar_t* dg, const scalar_t* peep) {
    using V = MathVec<scalar_t>;
    for (int64_t u = 0; u < H; u += V::size()) {
      cell_backward<Cell>(H, g + u, c + u, c_prev + u, dh_a + u, dh_b ? dh_b + u : nullptr,
                          dc + u, dg + u, peep ? peep + u : nullptr,
                          std::min<int64_t>(V::size(), H - u));
    }
  }
};

}  // namespace lstm_fused
