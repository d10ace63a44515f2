#pragma once
// The persistent forward kernel: one cooperative launch runs all T steps of one
// layer/direction (see persistent_common.cuh for the tiling).
//
// Block b owns hidden units [u0, u0 + HS), u0 = b·HS, with all G gates:
// the G·HS rows of W_hh (gate-major: column j of the slice is row
// (j / HS)·H + u0 + j % HS) stay in shared memory for all steps, and so do c
// of its (batch row, unit) pairs and its units' peephole weights, in fp32.
// h_t goes through the global staging buffer, double-buffered: step s reads buffer s % 2 and
// writes buffer (s + 1) % 2, so one grid barrier per step orders everything:
//   - the writes of h_s (epilogue of step s) precede the barrier that precedes
//     the reads of step s + 1;
//   - buffer s % 2 is rewritten only in the epilogue of step s + 1, after the
//     barrier that follows every block's reads of it in step s.
// Per step: the warp GEMMs over h_{t-1} (their staging loads first after the
// grid barrier), partial sums to shared memory, one block barrier, then each
// thread's pairs: activations, c and h update, stores; then the next step's
// x-projection loads (independent of h), issued before the grid barrier so
// that they are in flight across it.
#include "persistent_common.cuh"

namespace lstm_fused {
namespace cuda {
namespace persistent {

namespace cg = cooperative_groups;

template <int MODE, int NTCM, class Cell>
__global__ void __launch_bounds__(kThreads, 1)
    persistent_forward_kernel(const FwdArgs<typename ModeTraits<MODE>::T> a) {
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
  const int64_t GH = static_cast<int64_t>(G) * H;

  // ---- 1. The block's W_hh rows, in fragment order (once per launch).
  const int nslots = s.NTC * s.NC * 32;
  // Unrolled so that several slots' loads are in flight (a one-time cost, but
  // W_hh comes from device memory: ~16 dependent round trips per thread otherwise).
#pragma unroll 4
  for (int slot = tid; slot < nslots; slot += kThreads) {
    const int l = slot & 31;
    const int cn = slot >> 5;
    const int c = cn % s.NC;
    const int nt = cn / s.NC;
    const int col = nt * 8 + (l >> 2);  // < 8·NTC: G·HS and the n-tile's padding
    const int gate = col / HS;
    const int u = u0 + (col - gate * HS);
    const int k0 = c * KCH + (l & 3) * EPV;
    T v[EPV];
    if (gate < G && u < H) {
      const T* src = a.w_hh + (static_cast<int64_t>(gate) * H + u) * H;
#pragma unroll
      for (int e = 0; e < EPV; ++e) v[e] = (k0 + e < H) ? src[k0 + e] : detail::zero_of<T>();
    } else {
#pragma unroll
      for (int e = 0; e < EPV; ++e) v[e] = detail::zero_of<T>();
    }
    Wsm[slot] = dev::pack16<T>(v);
  }

  // ---- 2. Staging buffer 0 = h0 (own units); padding columns [H, Kpad) of both
  // buffers zeroed (rows split over the blocks). Read only after the barrier below.
  T* const hb = a.staging;
  const int64_t bufsz = static_cast<int64_t>(B) * Kpad;
  for (int idx = tid; idx < B * HS; idx += kThreads) {
    const int b = idx / HS;
    const int u = u0 + (idx - b * HS);
    if (u < H) hb[static_cast<int64_t>(b) * Kpad + u] = a.h0[static_cast<int64_t>(b) * H + u];
  }
  for (int b = blockIdx.x; b < B; b += gridDim.x) {
    for (int k = H + tid; k < Kpad; k += kThreads) {
      hb[static_cast<int64_t>(b) * Kpad + k] = detail::zero_of<T>();
      hb[bufsz + static_cast<int64_t>(b) * Kpad + k] = detail::zero_of<T>();
    }
  }

  // ---- 3. c of this thread's (batch row, unit) pairs p = tid + i·kThreads (unit
  // fastest), kept in shared memory (registers go to the GEMM). Only this thread
  // ever touches Cs[p]. The planner guarantees B·HS <= kPairs·kThreads.
  float* Cs = Pre + s.pre_floats;
  float* Ps = Cs + static_cast<int64_t>(B) * HS;  // (Cell::kPeepRows, HS)
  dev::load_peepholes<Cell>(Ps, a.peep, s, u0, tid);
#pragma unroll
  for (int i = 0; i < kPairs; ++i) {
    const int p = tid + i * kThreads;
    const int b = p / HS;
    const int u = u0 + (p - b * HS);
    if (b < B && u < H) Cs[p] = detail::to_acc(a.c0[static_cast<int64_t>(b) * H + u]);
  }

  // x-projection (biases folded in) of a step's pairs: independent of h.
  float xr[kPairs][G];
  auto load_xproj = [&](int step) {
    const int t = s.reverse ? s.steps - 1 - step : step;
    const T* gt = a.gates + static_cast<int64_t>(t) * B * GH + u0;
    dev::PairWalk pw(tid, HS);
#pragma unroll
    for (int i = 0; i < kPairs; ++i, pw.next()) {
#pragma unroll
      for (int k = 0; k < G; ++k) xr[i][k] = 0.f;
      if (pw.b < B && u0 + pw.j < H) {
        const T* src = gt + static_cast<int64_t>(pw.b) * GH + pw.j;
#pragma unroll
        for (int k = 0; k < G; ++k) xr[i][k] = detail::to_acc(src[k * H]);
      }
    }
  };
  load_xproj(0);

  grid.sync();  // W and peepholes in shared memory, staging buffer 0 and the padding everywhere

  for (int step = 0; step < s.steps; ++step) {
    const int t = s.reverse ? s.steps - 1 - step : step;
    const T* hcur = hb + (step & 1) * bufsz;
    T* hnxt = hb + ((step & 1) ^ 1) * bufsz;
    T* gt = a.gates + static_cast<int64_t>(t) * B * GH;
    const int64_t ot = static_cast<int64_t>(t) * B * H;

    {
      float acc[kMPW][NTCM][4];
      dev::warp_gemm<MODE, NTCM>(acc, hcur, B, Wsm, s, wm, wk, lane);
      // Pre is free: its last readers (previous epilogue) passed the grid barrier.
      dev::store_partials(acc, Pre, s, wm, wk, lane);
    }
    __syncthreads();

    dev::PairWalk pw(tid, HS);
#pragma unroll
    for (int i = 0; i < kPairs; ++i, pw.next()) {
      const int p = tid + i * kThreads;
      const int b = pw.b;
      const int j = pw.j;
      const int u = u0 + j;
      if (b < B && u < H) {
        float pre[G];
#pragma unroll
        for (int k = 0; k < G; ++k) {
          pre[k] = xr[i][k] + dev::sum_partials(Pre, s, b, k * HS + j);
        }
        const auto pp = detail::peephole_of<Cell>(Ps, HS, j);
        const auto st = detail::cell_forward<Cell>(pre, Cs[p], pp.i, pp.f, pp.o);
        const float cn = st.c;
        Cs[p] = cn;
        const T hv = detail::from_acc<T>(st.h);
        hnxt[static_cast<int64_t>(b) * Kpad + u] = hv;
        a.output[ot + static_cast<int64_t>(b) * H + u] = hv;
        if (step + 1 == s.steps) {
          a.h_n[static_cast<int64_t>(b) * H + u] = hv;
          a.c_n[static_cast<int64_t>(b) * H + u] = detail::from_acc<T>(cn);
        }
        if (a.need_grad) {
          // read above by this thread only
          detail::store_gates<Cell>(gt + static_cast<int64_t>(b) * GH + u, H, st);
          a.cells[ot + static_cast<int64_t>(b) * H + u] = detail::from_acc<T>(cn);
        }
      }
    }
    if (step + 1 < s.steps) {
      // Gates of step + 1 are written by this thread only, in its next epilogue.
      load_xproj(step + 1);
      grid.sync();
    }
  }

}

// The kernel instances of one mode, by n-tile bound and cell; explicitly
// instantiated per mode in persistent_fwd_16bit.cu and persistent_fwd_32bit.cu
// (compiled in parallel).
template <int MODE>
const void* forward_kernel_of(int ntcm, CellKind cell) {
  return with_cell(cell, [&](auto c) -> const void* {
    using Cell = decltype(c);
    return ntcm <= kNTCSmall
               ? reinterpret_cast<const void*>(&persistent_forward_kernel<MODE, kNTCSmall, Cell>)
               : reinterpret_cast<const void*>(&persistent_forward_kernel<MODE, kNTC, Cell>);
  });
}

}  // namespace persistent
}  // namespace cuda
}  // namespace lstm_fused
