// The CudaPointwise policy (pointwise_cuda.h): the drivers' per-step pointwise
// calls, forwarded to the kernels of pointwise_cuda.cu on the current stream.
#include "pointwise_cuda.h"

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include "device_types.h"
#include "kernels.h"

namespace lstm_fused {

template <class Cell, typename scalar_t>
void CudaPointwise::forward(int64_t n, int64_t H, scalar_t* gates, const scalar_t* b_ih,
                            const scalar_t* b_hh, const scalar_t* c_prev, scalar_t* c_out,
                            scalar_t* h_out, scalar_t* h_copy, scalar_t* c_copy,
                            const scalar_t* peephole) {
  using cuda::dev;
  const cudaError_t err = cuda::pointwise_forward<Cell>(
      c10::cuda::getCurrentCUDAStream().stream(), n, H, dev(gates), dev(b_ih), dev(b_hh),
      dev(c_prev), dev(c_out), dev(h_out), dev(h_copy), dev(c_copy), dev(peephole));
  C10_CUDA_CHECK(err);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <class Cell, typename scalar_t>
void CudaPointwise::backward(int64_t n, int64_t H, const scalar_t* gates, const scalar_t* c,
                             const scalar_t* c_prev, const scalar_t* dh_a, const scalar_t* dh_b,
                             scalar_t* dc, scalar_t* dgates, const scalar_t* peephole,
                             Math<scalar_t>* dpeephole) {
  using cuda::dev;
  const cudaError_t err = cuda::pointwise_backward<Cell>(
      c10::cuda::getCurrentCUDAStream().stream(), n, H, dev(gates), dev(c), dev(c_prev),
      dev(dh_a), dev(dh_b), dev(dc), dev(dgates), dev(peephole), dpeephole);
  C10_CUDA_CHECK(err);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

#define LSTM_FUSED_INSTANTIATE_POLICY_CELL(C, S)                                                \
  template void CudaPointwise::forward<C, S>(int64_t, int64_t, S*, const S*, const S*, const S*, \
                                             S*, S*, S*, S*, const S*);                          \
  template void CudaPointwise::backward<C, S>(int64_t, int64_t, const S*, const S*, const S*,    \
                                              const S*, const S*, S*, S*, const S*,              \
                                              CudaPointwise::Math<S>*);
#define LSTM_FUSED_INSTANTIATE_POLICY(S) LSTM_FUSED_FOR_EACH_CELL(LSTM_FUSED_INSTANTIATE_POLICY_CELL, S)
LSTM_FUSED_INSTANTIATE_POLICY(float)
LSTM_FUSED_INSTANTIATE_POLICY(double)
LSTM_FUSED_INSTANTIATE_POLICY(c10::Half)
LSTM_FUSED_INSTANTIATE_POLICY(c10::BFloat16)
#undef LSTM_FUSED_INSTANTIATE_POLICY
#undef LSTM_FUSED_INSTANTIATE_POLICY_CELL

}  // namespace lstm_fused
