#pragma once
// Shared pieces of the persistent sequence kernels (persistent_fwd.cu,
// persistent_bwd.cu, persistent_plan.cu). CUDA headers only.
//
// The recurrent product of one step, for the block's slice, is
//   C (B x NCOL) = A (B x K) · Wsᵀ          (fp32 accumulation)
// forward:  A = h_{t-1} (K = H),      Ws = the block's G·HS rows of W_hh
//           (column j of C = gate j / HS of unit u0 + j % HS; G·HS rounded
//           up to whole n-tiles, the extra columns zero);
// backward: A = dgates_t (K = G·H),   Ws = the block's HS columns of W_hh,
//           transposed (column j of C = dL/dh_{t-1} of unit u0 + j).
// G is the cell's number of gate blocks (4, or 3 without an input gate,
// ../cell_variants.h). The kernels are compiled per cell: a cell chosen
// inside the kernel made the forward spill registers.
// A lives in a global staging buffer (B rows, row stride Kpad, zero padding
// past K) that every block reads each step from L2; Ws lives in shared memory
// for the whole sequence, pre-arranged in the tensor-core fragment order.
//
// Tensor-core tiling: m16n8k16 (bf16/fp16) or m16n8k8 (tf32), M = batch rows,
// N = columns of the slice, K walked in chunks of KCH = 32 (16-bit) or 16
// (tf32) elements: one chunk is two MMAs. Within a chunk, lane (g = lane / 4,
// q = lane % 4) reads the 16 contiguous bytes [q·KCH/4, (q+1)·KCH/4) of its
// rows. That is a permutation of k inside the chunk, applied identically to
// A and B, so the sum is unchanged:
//   16-bit: MMA s (s = 0, 1) takes, for logical k pairs {2q, 2q+1} and
//           {2q+8, 2q+9}, the physical elements 8q+4s+{0,1} and 8q+4s+{2,3};
//   tf32:   MMA s takes, for logical k q and q+4, physical 4q+2s and 4q+2s+1.
// In both cases, with v/w the 16-byte A vectors of rows g/g+8 and b the
// 16-byte B vector of column g, the registers are
//   MMA 0: A = {v.x, w.x, v.y, w.y}, B = {b.x, b.y}
//   MMA 1: A = {v.z, w.z, v.w, w.w}, B = {b.z, b.w}.
// Ws is stored as uint4 Wsm[nt][c][lane] (n-tile, chunk, lane): one
// conflict-free 16-byte shared load per lane, chunk and n-tile.
#include <cooperative_groups.h>

#include "device_common.cuh"
#include "kernels.h"

namespace lstm_fused {
namespace cuda {
namespace persistent {

constexpr int kThreads = 256;  // 8 warps per block, one block per SM
constexpr int kWarps = kThreads / 32;
constexpr int kMPW = 2;        // m-tiles (16 batch rows) per warp, at most
constexpr int kNTC = 8;        // n-tiles (8 columns) per block, at most
// Kernels are instantiated for NTCM (a compile-time bound on NTC, which sizes
// the accumulator array) = kNTCSmall or kNTC: most shapes need few n-tiles, and
// registers are what limits the A loads kept in flight.
constexpr int kNTCSmall = 4;
// Chunks whose A loads are issued together (registers: 2·kMPW·group uint4).
constexpr int group_for(int ntcm) { return ntcm > kNTCSmall ? 2 : 4; }
constexpr int kPairs = 8;      // (batch row, unit) pairs per thread, at most
constexpr int kMaxBatch = 16 * kMPW * kWarps;  // 256

template <int MODE>
struct ModeTraits;
template <>
struct ModeTraits<static_cast<int>(MmaMode::kBF16)> {
  using T = __nv_bfloat16;
  static constexpr int KCH = 32;
};
template <>
struct ModeTraits<static_cast<int>(MmaMode::kF16)> {
  using T = __half;
  static constexpr int KCH = 32;
};
template <>
struct ModeTraits<static_cast<int>(MmaMode::kTF32)> {
  using T = float;
  static constexpr int KCH = 16;
};
template <>
struct ModeTraits<static_cast<int>(MmaMode::k3xTF32)> {
  using T = float;
  static constexpr int KCH = 16;
};

inline __host__ __device__ constexpr int chunk_width(int mode) {
  return mode <= static_cast<int>(MmaMode::kF16) ? 32 : 16;
}

// The launch shape, as the kernels see it (copied from a PersistentPlan).
struct Shape {
  int steps, B, H, HS, NC, Kpad, NTC, MT, WM, WK, PS;
  int w_bytes;     // byte offset of the partial-sum buffer in dynamic shared memory
  int pre_floats;  // floats of the partial-sum buffer; the cell-state buffer follows it
  int reverse;
};

template <typename T>
struct FwdArgs {
  Shape s;
  int need_grad;
  const T* w_hh;   // (GH, H)
  const T* h0;     // (B, H)
  const T* c0;     // (B, H)
  T* gates;        // (T, B, GH) in: x-projection; out: activated gates (need_grad)
  T* output;       // (T, B, H)
  T* cells;        // (T, B, H), need_grad only
  T* h_n;          // (B, H)
  T* c_n;          // (B, H)
  T* staging;      // (2, B, Kpad)
  const T* peep;   // (Cell::kPeepRows, H) with peepholes, else null
};

template <typename T>
struct BwdArgs {
  Shape s;
  const T* w_hh;         // (GH, H)
  const T* gates;        // (T, B, GH)
  const T* cells;        // (T, B, H)
  const T* c0;           // (B, H)
  const T* grad_output;  // (T, B, H)
  const T* grad_hn;      // (B, H)
  const T* grad_cn;      // (B, H)
  T* dgates;             // (T, B, GH)
  T* grad_h0;            // (B, H)
  T* grad_c0;            // (B, H)
  T* staging;            // (2, B, Kpad)
  const T* peep;         // (Cell::kPeepRows, H) with peepholes, else null
  float* dpeep;          // (B, Cell::kPeepRows, H), added to; or null
};

inline Shape shape_of(const PersistentPlan& p, int steps, bool reverse) {
  Shape s;
  s.steps = steps;
  s.B = p.B;
  s.H = p.H;
  s.HS = p.HS;
  s.NC = p.NC;
  s.Kpad = p.Kpad;
  s.NTC = p.NTC;
  s.MT = p.MT;
  s.WM = p.WM;
  s.WK = p.WK;
  s.PS = p.PS;
  s.w_bytes = static_cast<int>(p.w_bytes);
  s.pre_floats = static_cast<int>(p.pre_floats);
  s.reverse = reverse ? 1 : 0;
  return s;
}

// Kernel entry points (for the planner's occupancy queries and the launches),
// by mode, n-tile bound (kNTCSmall or kNTC) and cell.
const void* forward_kernel(MmaMode mode, int ntcm, CellKind cell);
const void* backward_kernel(MmaMode mode, int ntcm, CellKind cell);
// The same for one mode (persistent_fwd.cuh / persistent_bwd.cuh; instantiated
// in persistent_{fwd,bwd}_{16,32}bit.cu).
template <int MODE>
const void* forward_kernel_of(int ntcm, CellKind cell);
template <int MODE>
const void* backward_kernel_of(int ntcm, CellKind cell);
inline int ntc_bound(int ntc) { return ntc <= kNTCSmall ? kNTCSmall : kNTC; }

// A plan that is not ok: no persistent launch for this (mode, direction, B, H).
inline PersistentPlan no_plan(MmaMode mode, bool backward, int B, int H, CellKind cell) {
  PersistentPlan p;
  p.mode = static_cast<int>(mode);
  p.backward = backward;
  p.B = B;
  p.H = H;
  p.cell = cell;
  return p;
}

// The launch shape for (mode, direction, B, H, cell) on a device with `sms`
// multiprocessors and `smem_limit` bytes of dynamic shared memory per block;
// per_sm(ntcm, smem) says how many blocks of the kernel instance for n-tile
// bound ntcm fit on one SM with smem bytes (< 0: the kernel is unusable).
// Pure host logic (the CPU simulation plans with it too).
template <class PerSm>
PersistentPlan plan_shape(MmaMode mode, bool backward, int B, int H, CellKind cell, int sms,
                          size_t smem_limit, PerSm&& per_sm) {
  PersistentPlan p = no_plan(mode, backward, B, H, cell);
  // Index arithmetic inside the kernels (B·Kpad, slot counts) stays in int.
  if (B < 1 || B > kMaxBatch || H < 1 || H > (1 << 20) || sms < 1) return p;

  const int kch = chunk_width(p.mode);
  const int G = static_cast<int>(cell.gates());
  const int peep_rows = cell.peephole ? static_cast<int>(cell.peephole_rows()) : 0;
  const int K = backward ? G * H : H;
  const int NC = (K + kch - 1) / kch;
  const int MT = (B + 15) / 16;
  int WM = 1;
  while (WM * kMPW < MT) WM *= 2;  // each warp covers at most kMPW m-tiles
  if (WM > kWarps) return p;
  const int WK = kWarps / WM;

  // Hidden units per block: a multiple of 2 forward (G·HS columns, rounded up
  // to n-tiles of 8), of 8 backward (HS columns); at most kNTC n-tiles. The
  // smallest HS whose grid is co-resident wins (most blocks, least shared
  // memory each).
  const int step = backward ? 8 : 2;
  for (int HS = step;; HS += step) {
    const int blocks = (H + HS - 1) / HS;
    const int ncol = backward ? HS : (G * HS + 7) / 8 * 8;
    const int ntc = ncol / 8;
    if (ntc > kNTC) break;
    if (static_cast<int64_t>(B) * HS > static_cast<int64_t>(kPairs) * kThreads) break;
    const int ps = (ncol + 31) / 32 * 32 + 8;  // float2 stores of a half-warp: 32 banks
    const size_t w_bytes = static_cast<size_t>(ntc) * NC * 32 * sizeof(uint4);
    const size_t pre_floats = static_cast<size_t>(WK) * 16 * MT * ps;
    const size_t pairs = static_cast<size_t>(B) * HS;
    const size_t state_floats = (backward ? 2 + peep_rows : 1) * pairs +
                                static_cast<size_t>(peep_rows) * HS;
    const size_t smem = w_bytes + (pre_floats + state_floats) * sizeof(float);
    if (smem > smem_limit) break;                  // grows with HS
    if (blocks > 64 * static_cast<int64_t>(sms)) continue;  // cannot be co-resident
    const int fit = per_sm(ntc_bound(ntc), smem);
    if (fit < 0) return p;
    if (static_cast<int64_t>(fit) * sms < blocks) continue;

    p.HS = HS;
    p.blocks = blocks;
    p.NC = NC;
    p.Kpad = NC * kch;
    p.NTC = ntc;
    p.MT = MT;
    p.WM = WM;
    p.WK = WK;
    p.PS = ps;
    p.w_bytes = w_bytes;
    p.pre_floats = pre_floats;
    p.state_floats = state_floats;
    p.smem_bytes = smem;
    p.ok = true;
    return p;
  }
  return p;
}

namespace dev {

// The block's peephole weights p[r][j] = peep[r][u0 + j] (j < HS, zero past
// H), fp32 in shared memory, read by the epilogue through peephole_of.
template <class Cell, typename T>
__device__ __forceinline__ void load_peepholes(float* Ps, const T* peep, const Shape& s, int u0,
                                               int tid) {
  if constexpr (Cell::kPeephole) {
    for (int idx = tid; idx < Cell::kPeepRows * s.HS; idx += kThreads) {
      const int r = idx / s.HS;
      const int u = u0 + (idx - r * s.HS);
      Ps[idx] = u < s.H ? detail::to_acc(peep[static_cast<int64_t>(r) * s.H + u]) : 0.f;
    }
  }
}

// Packs 16 bytes of T (8 halves or 4 floats) into one uint4, in memory order.
template <typename T>
__device__ __forceinline__ uint4 pack16(const T* v) {
  if constexpr (sizeof(T) == 2) {
    return make_uint4(detail::pack2(detail::bits16(v[0]), detail::bits16(v[1])),
                      detail::pack2(detail::bits16(v[2]), detail::bits16(v[3])),
                      detail::pack2(detail::bits16(v[4]), detail::bits16(v[5])),
                      detail::pack2(detail::bits16(v[6]), detail::bits16(v[7])));
  } else {
    static_assert(sizeof(T) == 4, "float storage");
    return make_uint4(__float_as_uint(v[0]), __float_as_uint(v[1]), __float_as_uint(v[2]),
                      __float_as_uint(v[3]));
  }
}

// One k-step (one MMA, or three for 3xTF32) of one 16x8 tile, fp32 accumulation.
template <int MODE>
__device__ __forceinline__ void mma_step(float (&acc)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                         uint32_t a3, uint32_t b0, uint32_t b1) {
  if constexpr (MODE == static_cast<int>(MmaMode::kBF16) ||
                MODE == static_cast<int>(MmaMode::kF16)) {
    detail::mma_16816<MODE == static_cast<int>(MmaMode::kBF16)>(acc, a0, a1, a2, a3, b0, b1);
  } else if constexpr (MODE == static_cast<int>(MmaMode::kTF32)) {
    using detail::to_tf32;
    detail::mma_1688_tf32(acc, to_tf32(a0), to_tf32(a1), to_tf32(a2), to_tf32(a3), to_tf32(b0),
                          to_tf32(b1));
  } else {
    static_assert(MODE == static_cast<int>(MmaMode::k3xTF32), "mode");
    // a·b ≈ a_hi·b_hi + a_hi·b_lo + a_lo·b_hi (the small terms first).
    const uint32_t a[4] = {a0, a1, a2, a3};
    uint32_t ah[4], al[4], bh[2], bl[2];
#pragma unroll
    for (int r = 0; r < 4; ++r) detail::split_tf32(a[r], ah[r], al[r]);
    detail::split_tf32(b0, bh[0], bl[0]);
    detail::split_tf32(b1, bh[1], bl[1]);
    detail::mma_1688_tf32(acc, al[0], al[1], al[2], al[3], bh[0], bh[1]);
    detail::mma_1688_tf32(acc, ah[0], ah[1], ah[2], ah[3], bl[0], bl[1]);
    detail::mma_1688_tf32(acc, ah[0], ah[1], ah[2], ah[3], bh[0], bh[1]);
  }
}

// One chunk (two k-steps) of one 16x8 tile: acc0 += A(16 x KCH/2)·B(KCH/2 x 8)
// of the first k-step, acc1 += that of the second (acc0 and acc1 may be the
// same array; two arrays halve the chain of dependent MMAs).
// v, w: A rows g and g+8 (16 bytes each); b: B column g (16 bytes).
template <int MODE>
__device__ __forceinline__ void mma_chunk(float (&acc0)[4], float (&acc1)[4], const uint4& v,
                                          const uint4& w, const uint4& b) {
  mma_step<MODE>(acc0, v.x, w.x, v.y, w.y, b.x, b.y);
  mma_step<MODE>(acc1, v.z, w.z, v.w, w.w, b.z, b.w);
}

// This warp's share of C = A · Wsᵀ for the block: m-tiles mt = wm + i·WM
// (i < kMPW, mt < MT), chunks c = wk + j·WK (c < NC), all NTC n-tiles.
// A: staging rows [0, M) with row stride Kpad (elements); rows >= M read as 0.
// Loads of kGroup chunks are issued before their MMAs, bypassing L1 (the
// buffer is rewritten by other SMs between grid barriers). With a single
// n-tile (NTC = 1: the backward at HS = 8, e.g. H = 512 on 132 SMs) the
// second k-step of each chunk accumulates into the unused n-tile 1, summed
// at the end: two chains of dependent MMAs instead of one.
template <int MODE, int NTCM, typename T>
__device__ __forceinline__ void warp_gemm(float (&acc)[kMPW][NTCM][4], const T* A, int M,
                                          const uint4* Wsm, const Shape& s, int wm, int wk,
                                          int lane) {
  constexpr int KCH = ModeTraits<MODE>::KCH;
  constexpr int EPV = KCH / 4;  // elements per lane per row per chunk (16 bytes)
  constexpr int kGroup = group_for(NTCM);
  static_assert(EPV * sizeof(T) == 16, "16-byte lane vectors");
  const int g = lane >> 2;
  const int q = lane & 3;
#pragma unroll
  for (int i = 0; i < kMPW; ++i)
#pragma unroll
    for (int n = 0; n < NTCM; ++n)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[i][n][r] = 0.f;

  const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
  for (int cbase = wk; cbase < s.NC; cbase += s.WK * kGroup) {
    uint4 va[kGroup][kMPW][2];
#pragma unroll
    for (int j = 0; j < kGroup; ++j) {
      const int c = cbase + j * s.WK;
#pragma unroll
      for (int i = 0; i < kMPW; ++i) {
        const int mt = wm + i * s.WM;
        const bool ok = c < s.NC && mt < s.MT;
        const int r0 = mt * 16 + g;
        const int r1 = r0 + 8;
        const T* p0 = A + static_cast<int64_t>(r0) * s.Kpad + c * KCH + q * EPV;
        const T* p1 = p0 + 8 * static_cast<int64_t>(s.Kpad);
        va[j][i][0] = (ok && r0 < M) ? __ldcg(reinterpret_cast<const uint4*>(p0)) : zero;
        va[j][i][1] = (ok && r1 < M) ? __ldcg(reinterpret_cast<const uint4*>(p1)) : zero;
      }
    }
#pragma unroll
    for (int j = 0; j < kGroup; ++j) {
      const int c = cbase + j * s.WK;
      if (c >= s.NC) break;  // uniform across the warp
      if (NTCM > 1 && s.NTC == 1) {
        const uint4 b = Wsm[c * 32 + lane];
#pragma unroll
        for (int i = 0; i < kMPW; ++i) {
          if (wm + i * s.WM >= s.MT) break;
          mma_chunk<MODE>(acc[i][0], acc[i][NTCM > 1 ? 1 : 0], va[j][i][0], va[j][i][1], b);
        }
        continue;
      }
#pragma unroll
      for (int n = 0; n < NTCM; ++n) {
        if (n >= s.NTC) break;
        const uint4 b = Wsm[(n * s.NC + c) * 32 + lane];
#pragma unroll
        for (int i = 0; i < kMPW; ++i) {
          if (wm + i * s.WM >= s.MT) break;
          mma_chunk<MODE>(acc[i][n], acc[i][n], va[j][i][0], va[j][i][1], b);
        }
      }
    }
  }
  if (NTCM > 1 && s.NTC == 1) {
#pragma unroll
    for (int i = 0; i < kMPW; ++i)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[i][0][r] += acc[i][NTCM > 1 ? 1 : 0][r];
  }
}

// Writes the warp's accumulators to the partial-sum buffer
// Pre[wk][row][col] (row < 16·MT, col < 8·NTC, row stride PS floats).
template <int NTCM>
__device__ __forceinline__ void store_partials(const float (&acc)[kMPW][NTCM][4], float* Pre,
                                               const Shape& s, int wm, int wk, int lane) {
  const int g = lane >> 2;
  const int q = lane & 3;
  const int mrows = 16 * s.MT;
#pragma unroll
  for (int i = 0; i < kMPW; ++i) {
    const int mt = wm + i * s.WM;
    if (mt >= s.MT) break;
#pragma unroll
    for (int n = 0; n < NTCM; ++n) {
      if (n >= s.NTC) break;
      const int row = mt * 16 + g;
      const int col = n * 8 + 2 * q;
      float* p0 = Pre + (static_cast<int64_t>(wk) * mrows + row) * s.PS + col;
      *reinterpret_cast<float2*>(p0) = make_float2(acc[i][n][0], acc[i][n][1]);
      *reinterpret_cast<float2*>(p0 + 8 * s.PS) = make_float2(acc[i][n][2], acc[i][n][3]);
    }
  }
}

// This thread's (batch row b, unit offset j) pairs p = tid + i·kThreads, unit
// fastest (p = b·HS + j), stepped from the first one without a division per
// pair: the divisions by the runtime HS cost ~20 instructions each, and they
// sat between the grid barrier and the first load a step waits on.
struct PairWalk {
  int b, j;    // the current pair
  int db, dj;  // kThreads = db·HS + dj
  int hs;
  __device__ __forceinline__ PairWalk(int tid, int HS)
      : b(tid / HS), j(tid - (tid / HS) * HS), db(kThreads / HS),
        dj(kThreads - (kThreads / HS) * HS), hs(HS) {}
  __device__ __forceinline__ void next() {
    b += db;
    j += dj;
    if (j >= hs) {
      j -= hs;
      ++b;
    }
  }
};

// Sum over the WK k-slices of Pre[.][row][col], in a fixed order. Unrolled
// to the compile-time bound kWarps with the loads predicated, so that all of
// them issue before the first add: a loop to the runtime WK compiled to an
// unrolled-by-4 loop with remainder branches, its loads in a dependent chain.
__device__ __forceinline__ float sum_partials(const float* Pre, const Shape& s, int row, int col) {
  const int mrows = 16 * s.MT;
  float v[kWarps];
#pragma unroll
  for (int w = 0; w < kWarps; ++w) v[w] = w < s.WK ? Pre[(w * mrows + row) * s.PS + col] : 0.f;
  float acc = 0.f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    if (w < s.WK) acc += v[w];
  }
  return acc;
}

}  // namespace dev
}  // namespace persistent
}  // namespace cuda
}  // namespace lstm_fused
