#pragma once
// The library GEMM (torch.mm) as a per-step engine (aten), and the fallback
// of the prepared engines: c[:n] (+)= a[:n] · wᵀ on wᵀ, copied contiguous
// once when the call has rows enough to repay it (CPU GEMM libraries repack
// a transposed operand on every call).
#include <ATen/ATen.h>

#include "engine_cpu.h"

namespace lstm_fused {

class LibraryStepGemm {
 public:
  // w (N, K), any strides; batch·steps: the rows of the call.
  LibraryStepGemm(const at::Tensor& w, int64_t batch, int64_t steps)
      : w_t_(batch * steps >= kMinPreparedRows ? w.t().contiguous() : w.t()) {}
  void accumulate(const at::Tensor& c, const at::Tensor& a, int64_t n) const {
    c.narrow(0, 0, n).addmm_(a.narrow(0, 0, n), w_t_);
  }
  void product(const at::Tensor& c, const at::Tensor& a, int64_t n) const {
    auto cn = c.narrow(0, 0, n);
    at::mm_out(cn, a.narrow(0, 0, n), w_t_);
  }

 private:
  at::Tensor w_t_;
};

}  // namespace lstm_fused
