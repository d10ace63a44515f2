#pragma once
// One fused recurrent step for the smallest layers (AVX-512): h_{t-1}·W_hhᵀ
// and the cell update in one pass, each thread keeping its slice of W_hh in
// its own cache from step to step. With one or two batch rows the library's
// GEMM runs as a matrix-vector product whose threading, plus the separate
// pointwise pass, costs as much as the arithmetic.
//
// float: hidden units in groups of 16 (one 512-bit vector per gate); with K
// gate blocks (4, or 3 for the variants without an input gate) the group's
// weights are stored k-major, [k][gate][16 units]
//   wp[((g·H + k)·K + q)·16 + l] = W_hh[q·H + 16g + l, k]
// so a step streams each group's 16·K·H floats once, contiguously, and the
// gates of 16 units end in registers together for the cell update.
//
// bfloat16, on AVX512_BF16 dot products (two products of a pair of k summed
// into a float lane, exact products, float accumulation): the same order with
// k in pairs, [k/2][gate][16 units][2]
//   wp[((g·H/2 + k/2)·K + q)·32 + 2l + k%2] = W_hh[q·H + 16g + l, k]
// For CPUs without AMX, where ATen's brgemm hands 16-bit blocks to MKL
// (brgemm_cpu.h) and oneDNN's packed matmul pays a library call and a
// separate pass per step (onednn_linear_cpu.h): on AMD Zen 4 the dot product
// runs at twice float's FMA rate; on the Xeons of bench/NOTES.md at half of it.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "fused_step_cpu.h"
#include "transpose_cpu.h"
#include "weight_layouts_cpu.h"

#if defined(CPU_CAPABILITY_AVX512)
#include <immintrin.h>
#endif

#if defined(CPU_CAPABILITY_AVX512) && defined(__AVX512BF16__)
#define LSTM_FUSED_SMALL_BATCH_BF16 1
#else
#define LSTM_FUSED_SMALL_BATCH_BF16 0
#endif

namespace lstm_fused {

// Whether this build and CPU run the kernel in `dtype` (shapes aside): float
// with AVX-512 code, bfloat16 where AVX512_BF16 is compiled in and present.
inline bool small_batch_runs(at::ScalarType dtype) {
#if defined(CPU_CAPABILITY_AVX512)
  return dtype == at::kFloat ||
         (dtype == at::kBFloat16 && LSTM_FUSED_SMALL_BATCH_BF16 && cpu_has_avx512_bf16());
#else
  (void)dtype;
  return false;
#endif
}

template <class Activations, typename scalar_t>
class SmallBatchStep {
  static_assert(std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, at::BFloat16>);

 public:
  static constexpr int64_t kUnits = 16;
  static constexpr int64_t kMaxBatch = std::is_same_v<scalar_t, float> ? 8 : 64;
  // float, measured against the packed library GEMM plus the pointwise pass,
  // T = 100, 2 threads: B = 1 wins by 1.6x at H = 128 and 1.25x at H = 256,
  // ties at 384; B = 2 wins at H = 128 and loses from H = 256 on. bfloat16 has
  // no pair bound and takes up to 64 rows: on a Xeon without AMX it ran
  // (100, 64, 512) as fast as oneDNN's packed matmul (bench/NOTES.md v16);
  // the timed choice weighs it against the other engines.
  static constexpr int64_t kMaxPairs = 256;
  // Re-laying W_hh out costs about as much as 10-15 library steps at B = 1:
  // from T = 16 on the fused steps repay it (B = 1, H = 256). A layout kept
  // from call to call (an inference's: weight_layouts_cpu.h) is repaid at
  // any T.
  static constexpr int64_t kMinSteps = 16;

  // Whether a layer runs on this kernel: scalar_t where small_batch_runs,
  // no projection, H a multiple of 16, at most kMaxBatch rows (float: at most
  // kMaxPairs (row, unit) pairs) and at least kMinSteps steps unless
  // layouts_kept (the call is an inference).
  static bool usable(int64_t T, int64_t B, int64_t H, bool proj, at::ScalarType dtype,
                     bool layouts_kept = false) {
    constexpr bool is_float = std::is_same_v<scalar_t, float>;
    return dtype == c10::CppTypeToScalarType<scalar_t>::value && small_batch_runs(dtype) &&
           !proj && B >= 1 && B <= kMaxBatch && H > 0 && H % kUnits == 0 &&
           (!is_float || B * H <= kMaxPairs) && (T >= kMinSteps || layouts_kept);
  }

  // w_hh (KH, H) of scalar_t, any strides, K gate blocks. The layout is kept
  // while w_hh holds the same bytes (weight_layouts_cpu.h).
  explicit SmallBatchStep(const at::Tensor& w_hh)
      : H_(w_hh.size(1)), K_(w_hh.size(0) / H_), groups_(H_ / kUnits),
        wp_(kept_layout(w_hh,
                        {kLayoutKind, K_, 0,
                         static_cast<int64_t>(c10::CppTypeToScalarType<scalar_t>::value)},
                        [&] { return lay_out(w_hh); })) {}

  // The fused step engine interface of fused_step_cpu.h; a part is a group
  // of kUnits hidden units.
  int64_t parts() const { return groups_; }
  int64_t grain(int64_t) const { return 1; }
  void end_parts() const {}

  // Grain 1 with OpenMP's even split: thread i gets the same groups every
  // step, so its weights stay in its cache.
  template <class Cell>
  void step(int64_t n, const FusedStepArgs<scalar_t>& a) const {
    check<Cell>();
    at::parallel_for(0, groups_, 1, [&](int64_t g0, int64_t g1) { run_parts<Cell>(n, a, g0, g1); });
  }

  // Every part of a step reads h_{t-1}.
  template <class Cell>
  void prepare_parts(int64_t, const FusedStepArgs<scalar_t>&, int64_t, int64_t) const {}

  template <class Cell>
  void run_parts(int64_t n, const FusedStepArgs<scalar_t>& a, int64_t g0, int64_t g1) const {
#if defined(CPU_CAPABILITY_AVX512)
    for (int64_t g = g0; g < g1; ++g) {
      for (int64_t r = 0; r < n; r += 4) {
        switch (std::min<int64_t>(4, n - r)) {
          case 1: rows<Cell, 1>(a, g, r); break;
          case 2: rows<Cell, 2>(a, g, r); break;
          case 3: rows<Cell, 3>(a, g, r); break;
          default: rows<Cell, 4>(a, g, r); break;
        }
      }
    }
#else
    (void)n, (void)a, (void)g0, (void)g1;
#endif
  }

  template <class Cell>
  void check() const {
#if defined(CPU_CAPABILITY_AVX512)
    TORCH_CHECK(Cell::kGates == K_, "lstm_fused: small-batch step built for another cell");
#else
    TORCH_CHECK(false, "lstm_fused: the small-batch step needs AVX-512 code");
#endif
  }

 private:
  using Args = FusedStepArgs<scalar_t>;

#if defined(CPU_CAPABILITY_AVX512)
  // R batch rows from r0 for unit group g. With one or two rows there are too
  // few accumulators to hide the FMA latency, so even and odd k (k pairs for
  // bfloat16) go to separate sets, summed before the cell update (a fixed
  // order: deterministic).
  template <class Cell, int R>
  void rows(const Args& a, int64_t g, int64_t r0) const {
    constexpr int S = R <= 2 ? 2 : 1, K = Cell::kGates;
    // elements of h (and weight rows) per multiply: 1, or a bfloat16 pair
    constexpr int E = std::is_same_v<scalar_t, float> ? 1 : 2;
    const int64_t H = H_, G = K * H_, u = g * kUnits;
    const scalar_t* wg = wp_.data_ptr<scalar_t>() + g * H * K * kUnits;
    using V = at::vec::Vectorized<float>;
    __m512 acc[S][R][K];
    for (int r = 0; r < R; ++r) {
      for (int q = 0; q < K; ++q) {
        V v = Activations::vload(a.gates + (r0 + r) * G + q * H + u);
        if (a.bias) v = v + Activations::vload(a.bias + q * H + u);
        acc[0][r][q] = v;
        if constexpr (S == 2) acc[1][r][q] = _mm512_setzero_ps();
      }
    }
    const scalar_t* hp = a.h_prev + r0 * H;
    // H is a multiple of kUnits (usable()), so S·E divides it: no k is left over.
    for (int64_t k = 0; k < H; k += S * E) {
      for (int s = 0; s < S; ++s) {
        const int64_t ks = k + s * E;
        const scalar_t* wk = wg + ks * K * kUnits;
        if constexpr (E == 1) {
          __m512 w[K];
          for (int q = 0; q < K; ++q) w[q] = _mm512_loadu_ps(wk + q * kUnits);
          for (int r = 0; r < R; ++r) {
            const __m512 hb = _mm512_set1_ps(hp[r * H + ks]);
            for (int q = 0; q < K; ++q) acc[s][r][q] = _mm512_fmadd_ps(w[q], hb, acc[s][r][q]);
          }
        } else {
#if LSTM_FUSED_SMALL_BATCH_BF16
          __m512bh w[K];
          for (int q = 0; q < K; ++q) w[q] = (__m512bh)_mm512_loadu_si512(wk + q * 2 * kUnits);
          for (int r = 0; r < R; ++r) {
            int32_t pair;
            std::memcpy(&pair, hp + r * H + ks, sizeof(pair));
            const __m512bh hb = (__m512bh)_mm512_set1_epi32(pair);
            for (int q = 0; q < K; ++q) acc[s][r][q] = _mm512_dpbf16_ps(acc[s][r][q], hb, w[q]);
          }
#endif
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      V pre[K];
      for (int q = 0; q < K; ++q) {
        __m512 v = acc[0][r][q];
        if constexpr (S == 2) v = _mm512_add_ps(v, acc[1][r][q]);
        pre[q] = V(v);
      }
      const int64_t off = (r0 + r) * H + u;
      Activations::template cell_update<Cell>(
          H, pre, a.keep_gates ? a.gates + (r0 + r) * G + u : nullptr, a.c + off, a.c + off,
          a.h_out + off, a.h_copy ? a.h_copy + off : nullptr,
          a.c_copy ? a.c_copy + off : nullptr, a.peep ? a.peep + u : nullptr);
    }
  }
#endif

  // Tells this layout apart from BrgemmBlocks' in weight_layouts_cpu.h (their
  // first kind entry is a block width, 16 or more).
  static constexpr int64_t kLayoutKind = -1;

  at::Tensor lay_out(const at::Tensor& w_hh) const {
    const auto w = w_hh.contiguous();
    at::Tensor wp = std::is_same_v<scalar_t, float>
                        ? at::empty({groups_, H_, K_, kUnits}, w.options())
                        : at::empty({groups_, H_ / 2, K_, kUnits, 2}, w.options());
#if defined(CPU_CAPABILITY_AVX512)
    // Both layouts move 32-bit elements (a float, or a bfloat16 pair): per
    // group and gate, a 16 x C block of W_hh transposed (transpose_cpu.h).
    const int64_t C = H_ * int64_t(sizeof(scalar_t)) / 4;
    const auto* src = reinterpret_cast<const float*>(w.const_data_ptr<scalar_t>());
    auto* dst = reinterpret_cast<float*>(wp.mutable_data_ptr<scalar_t>());
    at::parallel_for(0, groups_, 1, [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; ++g)
        for (int64_t q = 0; q < K_; ++q)
          transpose_into(src + (q * H_ + g * kUnits) * C, C,
                         dst + g * C * K_ * kUnits + q * kUnits, K_ * kUnits, kUnits, C);
    });
#endif
    return wp;
  }

  int64_t H_, K_, groups_;
  at::Tensor wp_;
};

}  // namespace lstm_fused
