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
using detail::to_acc;

constexpr int kPwThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kPwThreads)
    pointwise_forward_kernel(int64_t n, int64_t H, T* gates, const T* __restrict__ b_ih,
                             const T* __restrict__ b_hh, const T* c_prev, T* c_out, T* h_out,
                             T* h_copy, T* c_copy) {
  using A = acc_t<T>;
  const int64_t total = n * H;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    const int64_t r = idx / H;
    const int64_t u = idx - r * H;
    T* g = gates + r * 4 * H;
    A pre[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      pre[k] = to_acc(g[k * H + u]);
      if (b_ih != nullptr) pre[k] += to_acc(b_ih[k * H + u]);
      if (b_hh != nullptr) pre[k] += to_acc(b_hh[k * H + u]);
    }
    // c_prev may alias c_out: read before the write, same element, same thread.
    const auto s = detail::cell_forward(pre, to_acc(c_prev[idx]));
    g[u] = from_acc<T>(s.i);
    g[H + u] = from_acc<T>(s.f);
    g[2 * H + u] = from_acc<T>(s.g);
    g[3 * H + u] = from_acc<T>(s.o);
    c_out[idx] = from_acc<T>(s.c);
    h_out[idx] = from_acc<T>(s.h);
    if (h_copy != nullptr) h_copy[idx] = from_acc<T>(s.h);
    if (c_copy != nullptr) c_copy[idx] = from_acc<T>(s.c);
  }
}

template <typename T>
__global__ void __launch_bounds__(kPwThreads)
    pointwise_backward_kernel(int64_t n, int64_t H, const T* __restrict__ gates,
                              const T* __restrict__ c, const T* __restrict__ c_prev,
                              const T* __restrict__ dh_a, const T* __restrict__ dh_b, T* dc,
                              T* __restrict__ dgates) {
  using A = acc_t<T>;
  const int64_t total = n * H;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    const int64_t r = idx / H;
    const int64_t u = idx - r * H;
    const T* g = gates + r * 4 * H;
    T* dg = dgates + r * 4 * H;
    A dh = to_acc(dh_a[idx]);
    if (dh_b != nullptr) dh += to_acc(dh_b[idx]);
    const auto grad = detail::cell_backward(to_acc(g[u]), to_acc(g[H + u]), to_acc(g[2 * H + u]),
                                            to_acc(g[3 * H + u]), to_acc(c[idx]),
                                            to_acc(c_prev[idx]), dh, to_acc(dc[idx]));
#pragma unroll
    for (int k = 0; k < 4; ++k) dg[k * H + u] = from_acc<T>(grad.d[k]);
    dc[idx] = from_acc<T>(grad.dc_prev);
  }
}

}  // namespace kernels
}  // namespace cuda
}  // namespace lstm_fused
