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

namespace {

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

template <int MODE>
cudaError_t launch_forward(const PersistentPlan& plan, cudaStream_t stream, int steps,
                           bool reverse, bool need_grad, const typename ModeTraits<MODE>::T* w_hh,
                           const typename ModeTraits<MODE>::T* h0,
                           const typename ModeTraits<MODE>::T* c0,
                           typename ModeTraits<MODE>::T* gates,
                           typename ModeTraits<MODE>::T* output,
                           typename ModeTraits<MODE>::T* cells, typename ModeTraits<MODE>::T* h_n,
                           typename ModeTraits<MODE>::T* c_n,
                           typename ModeTraits<MODE>::T* staging,
                           const typename ModeTraits<MODE>::T* peep) {
  FwdArgs<typename ModeTraits<MODE>::T> args;
  args.s = shape_of(plan, steps, reverse);
  args.need_grad = need_grad ? 1 : 0;
  args.w_hh = w_hh;
  args.h0 = h0;
  args.c0 = c0;
  args.gates = gates;
  args.output = output;
  args.cells = cells;
  args.h_n = h_n;
  args.c_n = c_n;
  args.staging = staging;
  args.peep = peep;
  void* kargs[] = {&args};
  const void* kernel =
      forward_kernel(static_cast<MmaMode>(MODE), ntc_bound(plan.NTC), plan.cell);
  const cudaError_t err = cudaLaunchCooperativeKernel(kernel, dim3(plan.blocks), dim3(kThreads),
                                                      kargs, plan.smem_bytes, stream);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // a refused launch must not poison later calls
    return err;
  }
  return cudaGetLastError();
}

bool plan_usable(const PersistentPlan& plan, int steps, bool need_grad, const void* cells,
                 const void* peep) {
  return plan.ok && !plan.backward && steps > 0 && (!need_grad || cells != nullptr) &&
         (!plan.cell.peephole || peep != nullptr);
}

}  // namespace

const void* forward_kernel(MmaMode mode, int ntcm, CellKind cell) {
  return with_cell(cell, [&](auto c) -> const void* {
    using Cell = decltype(c);
#define LSTM_FUSED_KERNEL_FOR(M)                                                            \
  case M:                                                                                   \
    return ntcm <= kNTCSmall                                                                \
               ? reinterpret_cast<const void*>(                                             \
                     &persistent_forward_kernel<static_cast<int>(M), kNTCSmall, Cell>)      \
               : reinterpret_cast<const void*>(                                             \
                     &persistent_forward_kernel<static_cast<int>(M), kNTC, Cell>);
    switch (mode) {
      LSTM_FUSED_KERNEL_FOR(MmaMode::kBF16)
      LSTM_FUSED_KERNEL_FOR(MmaMode::kF16)
      LSTM_FUSED_KERNEL_FOR(MmaMode::kTF32)
      LSTM_FUSED_KERNEL_FOR(MmaMode::k3xTF32)
    }
#undef LSTM_FUSED_KERNEL_FOR
    return nullptr;
  });
}

}  // namespace persistent

cudaError_t persistent_forward(const PersistentPlan& plan, cudaStream_t stream, int steps,
                               bool reverse, bool need_grad, const float* w_hh, const float* h0,
                               const float* c0, float* gates, float* output, float* cells,
                               float* h_n, float* c_n, float* staging,
                               const float* peep) {
  if (!persistent::plan_usable(plan, steps, need_grad, cells, peep)) return cudaErrorInvalidValue;
  if (plan.mode == static_cast<int>(MmaMode::kTF32)) {
    return persistent::launch_forward<static_cast<int>(MmaMode::kTF32)>(
        plan, stream, steps, reverse, need_grad, w_hh, h0, c0, gates, output, cells, h_n, c_n,
        staging, peep);
  }
  if (plan.mode == static_cast<int>(MmaMode::k3xTF32)) {
    return persistent::launch_forward<static_cast<int>(MmaMode::k3xTF32)>(
        plan, stream, steps, reverse, need_grad, w_hh, h0, c0, gates, output, cells, h_n, c_n,
        staging, peep);
  }
  return cudaErrorInvalidValue;
}

cudaError_t persistent_forward(const PersistentPlan& plan, cudaStream_t stream, int steps,
                               bool reverse, bool need_grad, const __half* w_hh, const __half* h0,
                               const __half* c0, __half* gates, __half* output, __half* cells,
                               __half* h_n, __half* c_n, __half* staging,
                               const __half* peep) {
  if (!persistent::plan_usable(plan, steps, need_grad, cells, peep) ||
      plan.mode != static_cast<int>(MmaMode::kF16)) {
    return cudaErrorInvalidValue;
  }
  return persistent::launch_forward<static_cast<int>(MmaMode::kF16)>(
      plan, stream, steps, reverse, need_grad, w_hh, h0, c0, gates, output, cells, h_n, c_n,
      staging, peep);
}

cudaError_t persistent_forward(
    const PersistentPlan& plan, cudaStream_t stream, int steps, bool reverse, bool need_grad,
    const __nv_bfloat16* w_hh, const __nv_bfloat16* h0, const __nv_bfloat16* c0,
    __nv_bfloat16* gates, __nv_bfloat16* output, __nv_bfloat16* cells, __nv_bfloat16* h_n,
    __nv_bfloat16* c_n, __nv_bfloat16* staging, const __nv_bfloat16* peep) {
  if (!persistent::plan_usable(plan, steps, need_grad, cells, peep) ||
      plan.mode != static_cast<int>(MmaMode::kBF16)) {
    return cudaErrorInvalidValue;
  }
  return persistent::launch_forward<static_cast<int>(MmaMode::kBF16)>(
      plan, stream, steps, reverse, need_grad, w_hh, h0, c0, gates, output, cells, h_n, c_n,
      staging, peep);
}

}  // namespace cuda
}  // namespace lstm_fused
