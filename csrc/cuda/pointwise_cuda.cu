// Pointwise forward/backward of one LSTM step on CUDA: the per-step path's
// fused elementwise kernels (the CudaPointwise policy in pointwise_policy.cpp
// wraps them). CUDA headers only: torch's headers need C++20, which the nvcc
// flags in setup.py do not select.
// One thread per (row, hidden unit), grid-stride; math in float for
// float/half/bfloat16 and in double for double.
#include <algorithm>

#include "kernels.h"
#include "pointwise_kernels.cuh"

namespace lstm_fused {
namespace cuda {

namespace {

using kernels::kPwThreads;

inline unsigned pw_blocks(int64_t total) {
  const int64_t blocks = (total + kPwThreads - 1) / kPwThreads;
  return static_cast<unsigned>(std::min<int64_t>(blocks, 65535));
}

}  // namespace

template <class Cell, typename T>
cudaError_t pointwise_forward(cudaStream_t stream, int64_t n, int64_t H, T* gates, const T* b_ih,
                              const T* b_hh, const T* c_prev, T* c_out, T* h_out, T* h_copy,
                              T* c_copy, const T* peep) {
  if (n <= 0 || H <= 0) return cudaSuccess;
  kernels::pointwise_forward_kernel<Cell, T><<<pw_blocks(n * H), kPwThreads, 0, stream>>>(
      n, H, gates, b_ih, b_hh, c_prev, c_out, h_out, h_copy, c_copy, peep);
  return cudaGetLastError();
}

template <class Cell, typename T>
cudaError_t pointwise_backward(cudaStream_t stream, int64_t n, int64_t H, const T* gates,
                               const T* c, const T* c_prev, const T* dh_a, const T* dh_b, T* dc,
                               T* dgates, const T* peep, MathOf<T>* dpeep) {
  if (n <= 0 || H <= 0) return cudaSuccess;
  kernels::pointwise_backward_kernel<Cell, T><<<pw_blocks(n * H), kPwThreads, 0, stream>>>(
      n, H, gates, c, c_prev, dh_a, dh_b, dc, dgates, peep, dpeep);
  return cudaGetLastError();
}

#define LSTM_FUSED_INSTANTIATE_PW_CELL(C, T)                                                     \
  template cudaError_t pointwise_forward<C, T>(cudaStream_t, int64_t, int64_t, T*, const T*,     \
                                               const T*, const T*, T*, T*, T*, T*, const T*);    \
  template cudaError_t pointwise_backward<C, T>(cudaStream_t, int64_t, int64_t, const T*,        \
                                                const T*, const T*, const T*, const T*, T*, T*,  \
                                                const T*, MathOf<T>*);
#define LSTM_FUSED_INSTANTIATE_PW(T) LSTM_FUSED_FOR_EACH_CELL(LSTM_FUSED_INSTANTIATE_PW_CELL, T)
LSTM_FUSED_INSTANTIATE_PW(float)
LSTM_FUSED_INSTANTIATE_PW(double)
LSTM_FUSED_INSTANTIATE_PW(__half)
LSTM_FUSED_INSTANTIATE_PW(__nv_bfloat16)
#undef LSTM_FUSED_INSTANTIATE_PW
#undef LSTM_FUSED_INSTANTIATE_PW_CELL

}  // namespace cuda

}  // namespace lstm_fused
