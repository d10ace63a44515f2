#pragma once
// Kernel of the fused LSTM cell step (launched by cell_cuda.cu; also compiled by
// the CPU simulation, sim/): one launch computes [x, h]·[W_ih; W_hh]ᵀ + b for a
// tile of 8 hidden units with all G gates of them (up to 32 weight rows; a
// cell with 3 gate blocks leaves the last 8 rows zero), then the activations
// and the cell update of the cell variant (../cell_variants.h) in the
// epilogue. fp32 FMAs (exact fp32, no TF32) for float, half and bfloat16
// storage. CUDA headers only.
//
// Block: 256 threads = 8 warps, a tile of 8 units x up to 64 batch rows.
// K = I + H is walked in chunks of 64: the chunk of the 32 weight rows and of
// the batch tile's [x, h] rows is staged (fp32) in shared memory, the next
// chunk's global loads are in flight in registers while this one is consumed.
// Lane l of every warp owns weight row l (gate l / 8, unit l % 8); the warps
// split the batch rows (NBW warps) and the chunk's k range (KS = 8 / NBW warps),
// so a batch of 1 still keeps all 8 warps busy. The KS partial sums are added
// in a fixed order in the epilogue: deterministic.
#include "device_common.cuh"

namespace lstm_fused {
namespace cuda {
namespace kernels {

using detail::from_acc;
using detail::to_acc;

constexpr int kCellThreads = 256;
constexpr int kCellWarps = kCellThreads / 32;
constexpr int kCellUnits = 8;                                // hidden units per block
constexpr int kRows = 4 * kCellUnits;                        // weight rows per block (= lanes)
constexpr int kCellBT = 64;                                  // batch rows per block
constexpr int kKC = 64;                                      // k per chunk
constexpr int kWPerThread = kRows * kKC / kCellThreads;      // 8
constexpr int kXPerThread = kCellBT * kKC / kCellThreads;    // 16
constexpr int kRowsPerWarp = 8;  // max batch rows one warp accumulates
static_assert(kRows == 32, "one weight row per lane");
static_assert(kRows * kKC % kCellThreads == 0 && kCellBT * kKC % kCellThreads == 0,
              "even staging split");
static_assert(kCellBT <= kCellWarps * kRowsPerWarp, "batch tile covered by the warps");

template <class Cell, typename T>
__global__ void __launch_bounds__(kCellThreads, 2)
    cell_fused_kernel(int B, int I, int H, const T* __restrict__ x, const T* __restrict__ h,
                      const T* __restrict__ c, const T* __restrict__ w_ih,
                      const T* __restrict__ w_hh, const T* __restrict__ b_ih,
                      const T* __restrict__ b_hh, T* __restrict__ h_out, T* __restrict__ c_out,
                      T* __restrict__ gates, const T* __restrict__ peep) {
  constexpr int G = Cell::kGates;
  __shared__ float Ws[kRows][kKC + 1];  // +1: lanes read one column of 32 rows, conflict-free
  __shared__ float Xs[kCellBT][kKC];    // read as a warp-wide broadcast
  __shared__ float Red[kCellWarps][kRowsPerWarp][kRows];

  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int u0 = blockIdx.x * kCellUnits;
  const int b0 = blockIdx.y * kCellBT;
  // >= 1: the grid covers exactly ceil(B / kCellBT) tiles.
  const int Bb = (B - b0 < kCellBT) ? (B - b0) : kCellBT;
  const int K = I + H;

  // Warps along the batch (NBW, a power of two >= min(Bb, 8)) and along k (KS).
  int NBW = 1;
  while (NBW < Bb && NBW < kCellWarps) NBW <<= 1;
  const int KS = kCellWarps / NBW;
  const int kgrp = warp % KS;
  const int bgrp = warp / KS;
  const int rpw = (Bb + NBW - 1) / NBW;  // batch rows of this warp: bgrp + j * NBW, j < rpw (<= 8)
  const int ksub = kKC / KS;

  float wreg[kWPerThread];
  float xreg[kXPerThread];

  // Staging: thread tid always handles column cc = tid % 64 of the chunk, for
  // the rows r = tid / 64 + 4 e (e < 8 for W, e < 16 for [x, h]). Weight row r
  // is gate r / 8 = e / 2 of unit r % 8 = tid / 64 + 4 (e % 2).
  constexpr int kRowStep = kCellThreads / kKC;  // 4
  const int cc = tid % kKC;
  const int r0 = tid / kKC;
  auto load_chunk = [&](int k0) {
    const int kk = k0 + cc;
    // Column kk of [W_ih | W_hh] and of [x | h]: a base pointer and a row stride.
    const T* wb = nullptr;
    const T* xb = nullptr;
    int64_t wstride = 0, xstride = 0;
    if (kk < I) {
      wb = w_ih + kk;
      wstride = I;
      xb = x + kk;
      xstride = I;
    } else if (kk < K) {
      wb = w_hh + (kk - I);
      wstride = H;
      xb = h + (kk - I);
      xstride = H;
    }
#pragma unroll
    for (int e = 0; e < kWPerThread; ++e) {
      const int u = u0 + r0 + kRowStep * (e % 2);
      const int64_t row = static_cast<int64_t>(e / 2) * H + u;
      wreg[e] = (wb != nullptr && u < H && e / 2 < G) ? to_acc(wb[row * wstride]) : 0.f;
    }
#pragma unroll
    for (int e = 0; e < kXPerThread; ++e) {
      const int bb = r0 + kRowStep * e;
      xreg[e] = (xb != nullptr && bb < Bb) ? to_acc(xb[(b0 + bb) * xstride]) : 0.f;
    }
  };
  auto store_chunk = [&]() {
#pragma unroll
    for (int e = 0; e < kWPerThread; ++e) {
      // Weight row of (gate e / 2, unit r0 + 4 (e % 2)): gate * 8 + unit.
      Ws[(e / 2) * kCellUnits + r0 + kRowStep * (e % 2)][cc] = wreg[e];
    }
#pragma unroll
    for (int e = 0; e < kXPerThread; ++e) {
      Xs[r0 + kRowStep * e][cc] = xreg[e];  // rows >= Bb hold zeros
    }
  };
  static_assert(kRowStep * 2 == kCellUnits && kWPerThread == 8 && kRows / kCellUnits == 4,
                "staging map: two units, four gates per thread");

  float acc[kRowsPerWarp];
#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j) acc[j] = 0.f;

  load_chunk(0);
  store_chunk();
  __syncthreads();
  for (int k0 = 0; k0 < K; k0 += kKC) {
    const bool more = k0 + kKC < K;
    if (more) load_chunk(k0 + kKC);  // in flight while this chunk is consumed
    const int kb = kgrp * ksub;
#pragma unroll 4
    for (int k = kb; k < kb + ksub; ++k) {
      const float w = Ws[lane][k];
#pragma unroll
      for (int j = 0; j < kRowsPerWarp; ++j) {
        // bgrp + j * NBW <= 8 * NBW - 1 <= 63: inside Xs; rows past Bb are zero.
        if (j < rpw) acc[j] = fmaf(w, Xs[bgrp + j * NBW][k], acc[j]);
      }
    }
    __syncthreads();
    if (more) {
      store_chunk();
      __syncthreads();
    }
  }

#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j) Red[warp][j][lane] = acc[j];
  __syncthreads();

  // Epilogue: one (batch row, unit) pair per thread and iteration.
  for (int p = tid; p < kCellBT * kCellUnits; p += kCellThreads) {
    const int bb = p / kCellUnits, jj = p % kCellUnits;
    const int u = u0 + jj;
    if (bb >= Bb || u >= H) continue;
    const int wbase = (bb % NBW) * KS;  // warps holding row bb: wbase + s, s < KS
    const int j = bb / NBW;
    float pre[G];
#pragma unroll
    for (int k = 0; k < G; ++k) {
      float s = 0.f;
      for (int sidx = 0; sidx < KS; ++sidx) s += Red[wbase + sidx][j][k * kCellUnits + jj];
      if (b_ih != nullptr) s += to_acc(b_ih[k * H + u]);
      if (b_hh != nullptr) s += to_acc(b_hh[k * H + u]);
      pre[k] = s;
    }
    const int64_t b = b0 + bb;
    const auto pp = detail::peephole_of<Cell>(peep, H, u);
    const auto st = detail::cell_forward<Cell>(pre, to_acc(c[b * H + u]), pp.i, pp.f, pp.o);
    c_out[b * H + u] = from_acc<T>(st.c);
    h_out[b * H + u] = from_acc<T>(st.h);
    if (gates != nullptr) detail::store_gates<Cell>(gates + b * G * H + u, H, st);
  }
}

}  // namespace kernels
}  // namespace cuda
}  // namespace lstm_fused
