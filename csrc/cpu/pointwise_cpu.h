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
#include "large_gemm_cpu.h"
#include "recurrence_cpu.h"
#include "vec_store_cpu.h"

namespace lstm_fused {

struct CpuPointwise {
  static constexpr bool kContiguousTransposedWeights = true;
  using ForwardStep = CpuForwardStep<CpuPointwise>;
  using BackwardGemm = CpuStepGemm;

  static at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& opts) {
    return pooled_empty(sizes, opts);
  }
  // The large GEMMs (input projection, gradients) on the faster library for
  // this CPU (large_gemm_cpu.h).
  static void mm_out(at::Tensor& out, const at::Tensor& a, const at::Tensor& b) {
    large_mm_out_cpu(out, a, b);
  }
  // The input projection out = x · w_ihᵀ before the loop; weight_kept: an
  // inference, whose weights the next call likely reuses (large_gemm_cpu.h).
  static void projection_out(at::Tensor& out, const at::Tensor& x, const at::Tensor& w_ih,
                             bool weight_kept) {
    projection_out_cpu(out, x, w_ih, weight_kept);
  }

  // Below this many elements per call, threading costs more than it saves.
  static constexpr int64_t kGrain = 4096;

#if defined(CPU_CAPABILITY_AVX512)
  // exp in float on AVX-512, about 1 ulp: e^x = 2^n · e^r with n = round(x·log2 e)
  // and r = x - n·ln 2 (ln 2 in two parts, so r is exact), e^r from Cephes'
  // degree-5 polynomial on |r| <= ln2/2, and 2^n applied with vscalefps,
  // which overflows to inf and underflows to 0 by itself. x is clamped to
  // ±104 (e^±104 is already out of float's range) so that r stays finite
  // at ±inf; the clamp keeps x's NaN (the second operand of min/max is the
  // one returned when either is NaN), and every later step propagates it.
  static __m512 exp512(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(104.f), _mm512_max_ps(_mm512_set1_ps(-104.f), x));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
    return _mm512_scalef_ps(p, n);
  }
  static constexpr bool kExpKeepsNan = true;
#else
  static constexpr bool kExpKeepsNan = false;
#endif

  // float: exp512 on AVX-512, else ATen's polynomial exp (exp_u20, several
  // times faster than the Sleef exp/tanh; within ~1e-7 of exact after the
  // activations, inside float32's error budget for the step, but it clamps
  // its argument, so NaNs are put back explicitly to propagate as in
  // torch.nn.LSTM).
  template <typename V>
  static V vexp(V x) {
    if constexpr (std::is_same_v<V, at::vec::Vectorized<float>>) {
#if defined(CPU_CAPABILITY_AVX512)
      return V(exp512(x));
#else
      return x.exp_u20();
#endif
    } else {
      return x.exp();
    }
  }

  template <typename V>
  static V keep_nan(V result, V x) {
    if constexpr (std::is_same_v<V, at::vec::Vectorized<float>> && kExpKeepsNan) {
      return result;
    } else {
      return V::blendv(result, x, x.isnan());
    }
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
        forward_units<Cell>(H, 0, H, gates + r * K * H, true, b_ih, b_hh, c_prev + r * H,
                            c_out + r * H, h_out + r * H, h_copy ? h_copy + r * H : nullptr,
                            c_copy ? c_copy + r * H : nullptr, peephole);
      }
    });
  }

  template <class Cell, typename scalar_t>
  static void backward(int64_t n, int64_t H, const scalar_t* gates, const scalar_t* c,
                       const scalar_t* c_prev, const scalar_t* dh_a, const scalar_t* dh_b,
                       scalar_t* dc, scalar_t* dgates, const scalar_t* peephole,
                       at::opmath_type<scalar_t>* dpeephole) {
    constexpr int K = Cell::kGates;
    const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(1, K * H));
    const int64_t PR = Cell::kPeepRows * H;
    at::parallel_for(0, n, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        backward_units<Cell>(H, 0, H, gates + r * K * H, c + r * H, c_prev + r * H,
                             dh_a + r * H, dh_b ? dh_b + r * H : nullptr, dc + r * H,
                             dgates + r * K * H, peephole,
                             dpeephole ? dpeephole + r * PR : nullptr);
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
      store_rounded(v, p);
    }
  }

  // cell_variants.h's equations on vectors.
  struct Math {
    template <typename V>
    static V sigmoid(const V& x) { return vsigmoid(x); }
    template <typename V>
    static V tanh(const V& x) { return vtanh(x); }
    template <typename V>
    static V one_minus(const V& x) { return V(1) - x; }
    template <typename V>
    static V ones(const V&) { return V(1); }
  };

  // The unit's peephole weights (i, f, o) as cell_equations takes them.
  template <class Cell, typename scalar_t>
  static void load_peephole(MathVec<scalar_t> (&p)[3], int64_t H, const scalar_t* peep,
                            int64_t count) {
    if constexpr (Cell::kPeephole) {
      if constexpr (Cell::kInputGate) p[0] = vload(peep, count);
      p[1] = vload(peep + Cell::kPeepF * H, count);
      p[2] = vload(peep + Cell::kPeepO * H, count);
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
    V p[3];
    load_peephole<Cell>(p, H, peep, count);
    const auto s = cell_equations<Cell, Math>(pre, vload(c_prev, count), p);
    if (g) {
      if constexpr (Cell::kInputGate) vstore(s.i, g, count);
      vstore(s.f, g + Cell::kF * H, count);
      vstore(s.g, g + Cell::kG * H, count);
      vstore(s.o, g + Cell::kO * H, count);
    }
    vstore(s.c, c_out, count);
    vstore(s.h, h_out, count);
    if (h_copy) vstore(s.h, h_copy, count);
    if (c_copy) vstore(s.c, c_copy, count);
  }

  // Its backward for `count` units: dL/d(pre-activations) to dg (block q at
  // dg + q·H) and dL/dc_{t-1} to dc, from the activated gates g, c_t,
  // c_{t-1}, dL/dh_t (dh_a + dh_b; dh_b may be null), dL/dc_t (dc on entry)
  // and the peephole weights (when Cell has them); dL/d(peephole weights) of
  // this step added to dpeep (Cell::kPeepRows rows of H, the math type; null:
  // not wanted).
  template <class Cell, typename scalar_t>
  static void cell_backward(int64_t H, const scalar_t* g, const scalar_t* c,
                            const scalar_t* c_prev, const scalar_t* dh_a, const scalar_t* dh_b,
                            scalar_t* dc, scalar_t* dg, const scalar_t* peep,
                            at::opmath_type<scalar_t>* dpeep,
                            int64_t count = MathVec<scalar_t>::size()) {
    using V = MathVec<scalar_t>;
    constexpr int K = Cell::kGates;
    V gate[K], p[3];
    for (int k = 0; k < K; ++k) gate[k] = vload(g + k * H, count);
    load_peephole<Cell>(p, H, peep, count);
    V dh = vload(dh_a, count);
    if (dh_b) dh = dh + vload(dh_b, count);
    const V cc = vload(c, count), cp = vload(c_prev, count);
    const auto r = cell_gradients<Cell, Math>(gate, cc, cp, dh, vload(dc, count), p);
    for (int k = 0; k < K; ++k) vstore(r.d[k], dg + k * H, count);
    vstore(r.dc_prev, dc, count);
    if constexpr (Cell::kPeephole) {
      if (dpeep) {
        auto add = [&](int row, const V& v) {
          auto* a = dpeep + row * H;
          vstore(V(vload(a, count) + v), a, count);
        };
        if constexpr (Cell::kInputGate) add(0, r.d[0] * cp);
        add(Cell::kPeepF, r.d[Cell::kF] * cp);
        add(Cell::kPeepO, r.d[Cell::kO] * cc);
      }
    }
  }

  // The cell update of units [u0, u1) of one row from its pre-activations
  // without bias in g (block q at g + q·H), overwritten by the activated
  // gates if keep_gates; every other pointer starts at the row's unit 0.
  template <class Cell, typename scalar_t>
  static void forward_units(int64_t H, int64_t u0, int64_t u1, scalar_t* g, bool keep_gates,
                            const scalar_t* b_ih, const scalar_t* b_hh, const scalar_t* c_prev,
                            scalar_t* c_out, scalar_t* h_out, scalar_t* h_copy,
                            scalar_t* c_copy, const scalar_t* peep) {
    using V = MathVec<scalar_t>;
    constexpr int K = Cell::kGates;
    for (int64_t u = u0; u < u1; u += V::size()) {
      const int64_t count = std::min<int64_t>(V::size(), u1 - u);
      V pre[K];
      for (int k = 0; k < K; ++k) {
        pre[k] = vload(g + k * H + u, count);
        if (b_ih) pre[k] = pre[k] + vload(b_ih + k * H + u, count);
        if (b_hh) pre[k] = pre[k] + vload(b_hh + k * H + u, count);
      }
      cell_update<Cell>(H, pre, keep_gates ? g + u : nullptr, c_prev + u, c_out + u, h_out + u,
                        h_copy ? h_copy + u : nullptr, c_copy ? c_copy + u : nullptr,
                        peep ? peep + u : nullptr, count);
    }
  }

  // The backward of units [u0, u1) of one row; every pointer starts at the
  // row's unit 0 (g and dg: the row's gate blocks, H apart).
  template <class Cell, typename scalar_t>
  static void backward_units(int64_t H, int64_t u0, int64_t u1, const scalar_t* g,
                             const scalar_t* c, const scalar_t* c_prev, const scalar_t* dh_a,
                             const scalar_t* dh_b, scalar_t* dc, scalar_t* dg,
                             const scalar_t* peep, at::opmath_type<scalar_t>* dpeep) {
    using V = MathVec<scalar_t>;
    for (int64_t u = u0; u < u1; u += V::size()) {
      cell_backward<Cell>(H, g + u, c + u, c_prev + u, dh_a + u, dh_b ? dh_b + u : nullptr,
                          dc + u, dg + u, peep ? peep + u : nullptr, dpeep ? dpeep + u : nullptr,
                          std::min<int64_t>(V::size(), u1 - u));
    }
  }
};

}  // namespace lstm_fused
