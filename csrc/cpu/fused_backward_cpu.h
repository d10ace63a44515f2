#pragma once
// The backward sweep of an unpacked layer without projection in one parallel
// region, where its product dL/dh_{t-1} = dgates_t · W_hh runs on brgemm's
// column blocks. Each worker owns the hidden units of its blocks for the whole
// sweep: per step it applies the cell's backward to its units in every row,
// waits once for the step's dgates of all units, then computes dL/dh_{t-1}
// of its units, which only it reads at the next step. One barrier per step
// where the step-by-step sweep forks and joins twice (the pointwise pass, the
// product).
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <cstdint>

#include "brgemm_cpu.h"
#include "engine_cpu.h"
#include "fused_step_cpu.h"

namespace lstm_fused {

// Steps s = T-1..0 over time t = s (t = T-1-s when reverse); n rows run at
// every step; the caller checked one_region_allowed(). Act: the CPU
// pointwise policy (backward_units).
//   gates    (T, n, KH)  activated gates of the forward
//   cells    (T, n, H)   c_t of the forward
//   c0       (n, H)      c_{-1}
//   grad_out (T, n, H)   dL/d(output)
//   dh       (n, H)      in: dL/dh_n; out: dL/dh0
//   dc       (n, H)      in: dL/dc_n; out: dL/dc0
//   dgates   (T, n, KH)  out: dL/d(pre-activations)
//   peep     (rows, H)   Cell's peephole weights; null without
//   dpeep    (n, rows·H) per-row peephole gradient accumulators; may be null
template <class Act, class Cell, typename scalar_t>
void fused_backward_sequence(const BrgemmStepGemm<scalar_t>& gemm, int64_t T, int64_t n,
                             int64_t H, bool reverse, const scalar_t* gates,
                             const scalar_t* cells, const scalar_t* c0,
                             const scalar_t* grad_out, scalar_t* dh, scalar_t* dc,
                             scalar_t* dgates, const scalar_t* peep,
                             at::opmath_type<scalar_t>* dpeep) {
  if (T == 0 || n == 0) return;
  constexpr int K = Cell::kGates;
  const int64_t G = K * H, PR = Cell::kPeepRows * H, nH = n * H;
  const int64_t width = gemm.width();
  count_cpu_sequence(/*backward=*/true);
  run_in_one_region(gemm.blocks(), gemm.grain(n), [&](int64_t j0, int64_t j1, auto&& sync) {
    const int64_t u0 = j0 * width, u1 = j1 * width;
    for (int64_t s = T - 1; s >= 0; --s) {
      const int64_t t = reverse ? T - 1 - s : s, tp = reverse ? t + 1 : t - 1;
      const scalar_t* g_t = gates + t * n * G;
      const scalar_t* c_t = cells + t * nH;
      const scalar_t* c_prev = tp >= 0 && tp < T ? cells + tp * nH : c0;
      const scalar_t* go_t = grad_out + t * nH;
      scalar_t* dg_t = dgates + t * n * G;
      for (int64_t r = 0; r < n; ++r) {
        Act::template backward_units<Cell>(H, u0, u1, g_t + r * G, c_t + r * H, c_prev + r * H,
                                           go_t + r * H, dh + r * H, dc + r * H, dg_t + r * G,
                                           peep, dpeep ? dpeep + r * PR : nullptr);
      }
      sync();
      for (int64_t j = j0; j < j1; ++j) gemm.run_block(j, n, dg_t, G, dh, H, false);
    }
    gemm.release();
  });
}

}  // namespace lstm_fused
