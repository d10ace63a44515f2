#pragma once
// CUDA implementation of the pointwise policy (see ../pointwise.h), used by the
// device-generic drivers in ../driver.h. Defined in pointwise_cuda.cu and
// explicitly instantiated there for float, double, c10::Half and c10::BFloat16.
// Runs on c10::cuda::getCurrentCUDAStream(); the caller holds a CUDAGuard for
// the tensors' device. Throws c10::Error when a launch fails. Instantiated
// for every cell variant (../cell_variants.h).
#include <cstdint>
#include <type_traits>

namespace at {
class Tensor;
}

namespace lstm_fused {

struct CudaPointwise {
  // The input projection out = x · w_ihᵀ before the loop (cuBLAS; ops_cuda.cpp).
  static void projection_out(at::Tensor& out, const at::Tensor& x, const at::Tensor& w_ih,
                             bool weight_kept);

  template <class Cell, typename scalar_t>
  static void forward(int64_t n, int64_t H, scalar_t* gates, const scalar_t* b_ih,
                      const scalar_t* b_hh, const scalar_t* c_prev, scalar_t* c_out,
                      scalar_t* h_out, scalar_t* h_copy, scalar_t* c_copy,
                      const scalar_t* peephole);

  // The math type of scalar_t: float, or double for double.
  template <typename scalar_t>
  using Math = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

  template <class Cell, typename scalar_t>
  static void backward(int64_t n, int64_t H, const scalar_t* gates, const scalar_t* c,
                       const scalar_t* c_prev, const scalar_t* dh_a, const scalar_t* dh_b,
                       scalar_t* dc, scalar_t* dgates, const scalar_t* peephole,
                       Math<scalar_t>* dpeephole);
};

}  // namespace lstm_fused
