#pragma once
// The persistent backward kernel: one cooperative launch runs the recurrence of
// all T steps in reversed processing order (see persistent_common.cuh).
//
// Block b owns hidden units [u0, u0 + HS), u0 = b·HS (HS a multiple of 8):
// the HS columns of W_hh (transposed: row j of the slice is W_hh[:, u0 + j])
// stay in shared memory for all steps; dL/dh and dL/dc of its (batch row,
// unit) pairs, its units' peephole weights and the pairs' peephole-gradient
// sums stay in shared memory, fp32. Per step s (processing order
// T-1 .. 0, time t):
//   1. pointwise, per pair: dh = grad_output[t] + dh_rec; dgates from the saved
//      gates and cells; dc <- dct·f. dgates go to the output tensor and to the
//      staging buffer s % 2 (the GEMM operand, padded rows);
//   2. the inputs of the next pointwise step are loaded (independent of dh),
//      in flight across the barrier;
//   3. grid barrier: every block's dgates of step t are in the buffer;
//   4. dh_rec(t-1)[:, slice] = dgates_t · W_hh[:, slice] (warp GEMMs over the
//      whole G·H, their staging loads first), partial sums summed per pair
//      after one block barrier.
// Double buffering makes one grid barrier per step enough: buffer s % 2 is
// rewritten in step s - 2's pointwise, which follows the barrier of step s - 1,
// which every block reaches only after its GEMM of step s. The weight
// gradients (dW_ih, dW_hh, db) and dx are large GEMMs the caller runs on
// dgates afterwards; the peephole gradient is summed over the batch rows by
// the caller: no atomics anywhere, deterministic.
#include "persistent_common.cuh"

namespace lstm_fused {
namespace cuda {
namespace persistent {

namespace cg = cooperative_groups;

template <int MODE, int NTCM, class Cell>
__global__ void __launch_bounds__(kThreads, 1)
    persistent_backward_kernel(const BwdArgs<typename ModeTraits<MODE>::T> a) {
  using T = typename ModeTraits<MODE>::T;
  constexpr int KCH = ModeTraits<MODE>::KCH;
  constexpr int EPV = KCH / 4;
  const Shape& s = a.s;
  cg::grid_group grid = cg::this_grid();

  LSTM_FUSED_DYNAMIC_SMEM(uint4, smem_u4);
  uint4* Wsm = smem_u4;
  float* Pre = reinterpret_cast<float*>(reinterpret_cast<unsigned char*>(smem_u4) + s.w_bytes);

  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int wm = warp / s.WK;
  const int wk = warp % s.WK;
  const int H = s.H;
  const int B = s.B;
  const int HS = s.HS;
  const int Kpad = s.Kpad;
  const int u0 = blockIdx.x * HS;
  constexpr int G = Cell::kGates;
  constexpr int kPeepRows = Cell::kPeephole ? Cell::kPeepRows : 0;
  const int64_t GH = static_cast<int64_t>(G) * H;
  const int64_t npairs = static_cast<int64_t>(B) * HS;
  float* Dh = Pre + s.pre_floats;  // dL/dh_t from the recurrence, per pair
  float* Dc = Dh + npairs;         // dL/dc_t, per pair
  float* Dp = Dc + npairs;         // (kPeepRows, npairs): dL/dp summed over steps, per pair
  float* Ps = Dp + kPeepRows * npairs;  // (kPeepRows, HS)
  dev::load_peepholes<Cell>(Ps, a.peep, s, u0, tid);

  // ---- 1. W_hh[:, u0 : u0 + HS]ᵀ in fragment order (once per launch).
  const int nslots = s.NTC * s.NC * 32;
  // Unrolled so that several slots' loads are in flight (a one-time cost, but
  // W_hh comes from device memory: ~16 dependent round trips per thread otherwise).
#pragma unroll 4
  for (int slot = tid; slot < nslots; slot += kThreads) {
    const int l = slot & 31;
    const int cn = slot >> 5;
    const int c = cn % s.NC;
    const int nt = cn / s.NC;
    const int u = u0 + nt * 8 + (l >> 2);  // 8·NTC = HS columns
    const int k0 = c * KCH + (l & 3) * EPV;
    T v[EPV];
#pragma unroll
    for (int e = 0; e < EPV; ++e) {
      v[e] = (u < H && k0 + e < GH) ? a.w_hh[static_cast<int64_t>(k0 + e) * H + u]
                                    : detail::zero_of<T>();
    }
    Wsm[slot] = dev::pack16<T>(v);
  }

  // ---- 2. Padding columns [GH, Kpad) of both staging buffers (rows split over
  // the blocks); first read after the first grid barrier.
  T* const gb = a.staging;
  const int64_t bufsz = static_cast<int64_t>(B) * Kpad;
  for (int b = blockIdx.x; b < B; b += gridDim.x) {
    for (int64_t k = GH + tid; k < Kpad; k += kThreads) {
      gb[static_cast<int64_t>(b) * Kpad + k] = detail::zero_of<T>();
      gb[bufsz + static_cast<int64_t>(b) * Kpad + k] = detail::zero_of<T>();
    }
  }

  // ---- 3. Pair state: pairs p = tid + i·kThreads, unit fastest (B·HS <=
  // kPairs·kThreads, guaranteed by the planner); only this thread touches Dh[p], Dc[p].
#pragma unroll
  for (int i = 0; i < kPairs; ++i) {
    const int p = tid + i * kThreads;
    const int b = p / HS;
    const int u = u0 + (p - b * HS);
    if (b < B && u < H) {
      Dh[p] = detail::to_acc(a.grad_hn[static_cast<int64_t>(b) * H + u]);
      Dc[p] = detail::to_acc(a.grad_cn[static_cast<int64_t>(b) * H + u]);
#pragma unroll
      for (int r = 0; r < kPeepRows; ++r) Dp[r * npairs + p] = 0.f;
    }
  }

  // The pointwise inputs of one step, loaded ahead of use.
  float pg[kPairs][G], pc[kPairs], pcp[kPairs], pgo[kPairs];
  auto prefetch = [&](int step) {
    const int t = s.reverse ? s.steps - 1 - step : step;
    const int tp = s.reverse ? t + 1 : t - 1;  // the step processed before t in the forward
    const bool has_prev = step > 0;
    dev::PairWalk pw(tid, HS);
#pragma unroll
    for (int i = 0; i < kPairs; ++i, pw.next()) {
      const int b = pw.b;
      const int u = u0 + pw.j;
      if (b < B && u < H) {
        const int64_t row = static_cast<int64_t>(t) * B + b;
        const T* g = a.gates + row * GH + u;
#pragma unroll
        for (int k = 0; k < G; ++k) pg[i][k] = detail::to_acc(g[k * static_cast<int64_t>(H)]);
        pc[i] = detail::to_acc(a.cells[row * H + u]);
        pcp[i] = has_prev
                     ? detail::to_acc(a.cells[(static_cast<int64_t>(tp) * B + b) * H + u])
                     : detail::to_acc(a.c0[static_cast<int64_t>(b) * H + u]);
        pgo[i] = detail::to_acc(a.grad_output[row * H + u]);
      } else {
#pragma unroll
        for (int k = 0; k < G; ++k) pg[i][k] = 0.f;
        pc[i] = pcp[i] = pgo[i] = 0.f;
      }
    }
  };

  prefetch(s.steps - 1);
  // The first pointwise step reads peephole weights other threads loaded.
  if constexpr (Cell::kPeephole) __syncthreads();
  for (int step = s.steps - 1; step >= 0; --step) {
    const int t = s.reverse ? s.steps - 1 - step : step;
    T* gbw = gb + (step & 1) * bufsz;
    T* dgt = a.dgates + static_cast<int64_t>(t) * B * GH;

    dev::PairWalk pw(tid, HS);
#pragma unroll
    for (int i = 0; i < kPairs; ++i, pw.next()) {
      const int p = tid + i * kThreads;
      const int b = pw.b;
      const int u = u0 + pw.j;
      if (b < B && u < H) {
        const auto pp = detail::peephole_of<Cell>(Ps, HS, pw.j);
        const auto r = detail::cell_backward<Cell>(pg[i], pc[i], pcp[i], pgo[i] + Dh[p], Dc[p],
                                                   pp.i, pp.f, pp.o);
        Dc[p] = r.dc_prev;
        T* dst = dgt + static_cast<int64_t>(b) * GH + u;
        T* stg = gbw + static_cast<int64_t>(b) * Kpad + u;
#pragma unroll
        for (int k = 0; k < G; ++k) {
          const T v = detail::from_acc<T>(r.d[k]);
          dst[k * static_cast<int64_t>(H)] = v;
          stg[k * static_cast<int64_t>(H)] = v;
        }
        if constexpr (Cell::kPeephole) {
          if constexpr (Cell::kInputGate) Dp[p] += r.d[0] * pcp[i];
          Dp[Cell::kPeepF * npairs + p] += r.d[Cell::kF] * pcp[i];
          Dp[Cell::kPeepO * npairs + p] += r.d[Cell::kO] * pc[i];
        }
      }
    }

    // The next step's pointwise inputs (read-only tensors); this step's are consumed.
    if (step > 0) prefetch(step - 1);

    grid.sync();  // dgates_t of every block in staging buffer step % 2 (and the padding)

    {
      float acc[kMPW][NTCM][4];
      dev::warp_gemm<MODE, NTCM>(acc, gbw, B, Wsm, s, wm, wk, lane);
      // Pre is free: its last readers (previous step) passed the grid barrier.
      dev::store_partials(acc, Pre, s, wm, wk, lane);
    }
    __syncthreads();

    dev::PairWalk pw2(tid, HS);
#pragma unroll
    for (int i = 0; i < kPairs; ++i, pw2.next()) {
      const int p = tid + i * kThreads;
      const int b = pw2.b;
      const int j = pw2.j;
      const int u = u0 + j;
      if (b < B && u < H) {
        const float dh = dev::sum_partials(Pre, s, b, j);
        Dh[p] = dh;
        if (step == 0) {
          a.grad_h0[static_cast<int64_t>(b) * H + u] = detail::from_acc<T>(dh);
          a.grad_c0[static_cast<int64_t>(b) * H + u] = detail::from_acc<T>(Dc[p]);
        }
      }
    }
  }

  // ---- 4. Each pair's peephole gradient, added to its row's accumulator.
  if (kPeepRows > 0 && a.dpeep != nullptr) {
    for (int p = tid; p < npairs; p += kThreads) {
      const int b = p / HS;
      const int u = u0 + (p - b * HS);
      if (u >= H) continue;
      for (int r = 0; r < kPeepRows; ++r) {
        a.dpeep[(static_cast<int64_t>(b) * kPeepRows + r) * H + u] += Dp[r * npairs + p];
      }
    }
  }
}

// The kernel instances of one mode, by n-tile bound and cell; explicitly
// instantiated per mode in persistent_bwd_16bit.cu and persistent_bwd_32bit.cu
// (compiled in parallel).
template <int MODE>
const void* backward_kernel_of(int ntcm, CellKind cell) {
  return with_cell(cell, [&](auto c) -> const void* {
    using Cell = decltype(c);
    return ntcm <= kNTCSmall
               ? reinterpret_cast<const void*>(&persistent_backward_kernel<MODE, kNTCSmall, Cell>)
               : reinterpret_cast<const void*>(&persistent_backward_kernel<MODE, kNTC, Cell>);
  });
}

}  // namespace persistent
}  // namespace cuda
}  // namespace lstm_fused
