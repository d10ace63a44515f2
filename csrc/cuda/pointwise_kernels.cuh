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
    const A i = detail::sigmoid_acc(pre[0]);
    const A f = detail::sigmoid_acc(pre[1]);
    const A gg = detail::tanh_acc(pre[2]);
    const A o = detail::sigmoid_acc(pre[3]);
    // c_prev may alias c_out: read before the write, same element, same thread.
    const A cn = f * to_acc(c_prev[idx]) + i * gg;
    const A hn = o * detail::tanh_acc(cn);
    g[u] = from_acc<T>(i);
    g[H + u] = from_acc<T>(f);
    g[2 * H + u] = from_acc<T>(gg);
    g[3 * H + u] = from_acc<T>(o);
    c_out[idx] = from_acc<T>(cn);
    h_out[idx] = from_acc<T>(hn);
    if (h_copy != nullptr) h_copy[idx] = from_acc<T>(hn);
    if (c_copy != nullptr) c_copy[idx] = from_acc<T>(cn);
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
    const A i = to_acc(g[u]);
    const A f = to_acc(g[H + u]);
    const A gg = to_acc(g[2 * H + u]);
    const A o = to_acc(g[3 * H + u]);
    A dh = to_acc(dh_a[idx]);
    if (dh_b != nullptr) dh += to_acc(dh_b[idx]);
    const A one = A(1);
    const A tc = detail::tanh_acc(to_acc(c[idx]));
    const A dct = to_acc(dc[idx]) + dh * o * (one - tc * tc);
    dg[u] = from_acc<T>(dct * gg * i * (one - i));
    dg[H + u] = from_acc<T>(dct * to_acc(c_prev[idx]) * f * (one - f));
    dg[2 * H + u] = from_acc<T>(dct * i * (one - gg * gg));
    dg[3 * H + u] = from_acc<T>(dh * tc * o * (one - o));
    dc[idx] = from_acc<T>(dct * f);
  }
}

}  // namespace kernels
}  // namespace cuda
}  // namespace lstm_fused
