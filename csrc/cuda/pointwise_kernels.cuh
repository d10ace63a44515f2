#pragma once
// Kernels of the per-step pointwise part (launched by pointwise_cuda.cu; also
// compiled by the CPU simulation, sim/). One thread per (row, hidden unit),
// grid-stride; math in float for float/half/bfloat16 and in double for double.
#include "device_common.cuh"

namespace lstm_fused {
namespace cuda {
namespace kernels {

using detail::acc_t;
using detail::from_acc;
using detail::peephole_of;
using detail::to_acc;

constexpr int kPwThreads = 256;

// One cell variant (../cell_variants.h) per instantiation: gates hold
// Cell::kGates blocks of H per row; peep (Cell::kPeepRows, H) when Cell has
// peepholes, else null.
template <class Cell, typename T>
__global__ void __launch_bounds__(kPwThreads)
    pointwise_forward_kernel(int64_t n, int64_t H, T* gates, const T* __restrict__ b_ih,
                             const T* __restrict__ b_hh, const T* c_prev, T* c_out, T* h_out,
                             T* h_copy, T* c_copy, const T* __restrict__ peep) {
  using A = acc_t<T>;
  constexpr int K = Cell::kGates;
  const int64_t total = n * H;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    const int64_t r = idx / H;
    const int64_t u = idx - r * H;
    T* g = gates + r * K * H;
    A pre[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      pre[k] = to_acc(g[k * H + u]);
      if (b_ih != nullptr) pre[k] += to_acc(b_ih[k * H + u]);
      if (b_hh != nullptr) pre[k] += to_acc(b_hh[k * H + u]);
    }
    const auto p = peephole_of<Cell>(peep, H, u);
    // c_prev may alias c_out: read before the write, same element, same thread.
    const auto s = detail::cell_forward<Cell>(pre, to_acc(c_prev[idx]), p.i, p.f, p.o);
    detail::store_gates<Cell>(g + u, H, s);
    c_out[idx] = from_acc<T>(s.c);
    h_out[idx] = from_acc<T>(s.h);
    if (h_copy != nullptr) h_copy[idx] = from_acc<T>(s.h);
    if (c_copy != nullptr) c_copy[idx] = from_acc<T>(s.c);
  }
}

template <class Cell, typename T>
__global__ void __launch_bounds__(kPwThreads)
    pointwise_backward_kernel(int64_t n, int64_t H, const T* __restrict__ gates,
                              const T* __restrict__ c, const T* __restrict__ c_prev,
                              const T* __restrict__ dh_a, const T* __restrict__ dh_b, T* dc,
                              T* __restrict__ dgates, const T* __restrict__ peep,
                              acc_t<T>* __restrict__ dpeep) {
  using A = acc_t<T>;
  constexpr int K = Cell::kGates;
  const int64_t total = n * H;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    const int64_t r = idx / H;
    const int64_t u = idx - r * H;
    const T* g = gates + r * K * H;
    T* dg = dgates + r * K * H;
    A dh = to_acc(dh_a[idx]);
    if (dh_b != nullptr) dh += to_acc(dh_b[idx]);
    A gate[K];
#pragma unroll
    for (int k = 0; k < K; ++k) gate[k] = to_acc(g[k * H + u]);
    const auto p = peephole_of<Cell>(peep, H, u);
    const A cc = to_acc(c[idx]), cp = to_acc(c_prev[idx]);
    const auto grad = detail::cell_backward<Cell>(gate, cc, cp, dh, to_acc(dc[idx]), p.i, p.f, p.o);
#pragma unroll
    for (int k = 0; k < K; ++k) dg[k * H + u] = from_acc<T>(grad.d[k]);
    dc[idx] = from_acc<T>(grad.dc_prev);
    if constexpr (Cell::kPeephole) {
      // this thread owns (r, u): its accumulators need no atomics
      if (dpeep != nullptr) {
        A* a = dpeep + r * Cell::kPeepRows * H + u;
        if constexpr (Cell::kInputGate) a[0] += grad.d[0] * cp;
        a[Cell::kPeepF * H] += grad.d[Cell::kF] * cp;
        a[Cell::kPeepO * H] += grad.d[Cell::kO] * cc;
      }
    }
  }
}

}  // namespace kernels
}  // namespace cuda
}  // namespace lstm_fused
