#pragma once
// The recurrent GEMM of the CPU layer loop on MKL's packed-weight GEMM (torch's
// mkl::_mkl_reorder_linear_weight / mkl::_mkl_linear): W_hh is packed once per
// sequence instead of being repacked by every step's GEMM, ~20% faster per step
// at B = 8..64 on AVX-512 machines. Builds of torch without MKL, other dtypes
// and steps with fewer rows than packed for (packed sequences) use the library
// GEMM on a contiguous W_hhᵀ.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>

namespace lstm_fused {

class PackedStepGemm {
 public:
  // w (N, K), any layout; batch: the rows of every full step.
  PackedStepGemm(const at::Tensor& w, int64_t batch) : w_(w.contiguous()), batch_(batch) {
    if (w.scalar_type() == at::kFloat && batch > 0 && ops().has_value()) {
      packed_ = ops()->reorder.call(w_, batch);
    }
  }

  // g (n, N) += h (n, K) · wᵀ, w (N, K)
  void accumulate(at::Tensor& g, const at::Tensor& h) {
    if (packed_.defined() && h.size(0) == batch_) {
      g.add_(packed_product(h));
    } else {
      g.addmm_(h, w_t());
    }
  }

  // out (n, N) = h (n, K) · wᵀ
  void product(at::Tensor& out, const at::Tensor& h) {
    if (packed_.defined() && h.size(0) == batch_) {
      out.copy_(packed_product(h));
    } else {
      at::mm_out(out, h, w_t());
    }
  }

 private:
  struct Ops {
    c10::TypedOperatorHandle<at::Tensor(const at::Tensor&, int64_t)> reorder;
    c10::TypedOperatorHandle<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                        const std::optional<at::Tensor>&, int64_t)>
        linear;
  };

  static const std::optional<Ops>& ops() {
    static const std::optional<Ops> found = []() -> std::optional<Ops> {
      auto& d = c10::Dispatcher::singleton();
      auto reorder = d.findSchema({"mkl::_mkl_reorder_linear_weight", ""});
      auto linear = d.findSchema({"mkl::_mkl_linear", ""});
      if (!reorder || !linear || !reorder->hasKernelForDispatchKey(c10::DispatchKey::CPU) ||
          !linear->hasKernelForDispatchKey(c10::DispatchKey::CPU)) {
        return std::nullopt;
      }
      return Ops{reorder->typed<at::Tensor(const at::Tensor&, int64_t)>(),
                 linear->typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                          const std::optional<at::Tensor>&, int64_t)>()};
    }();
    return found;
  }

  at::Tensor packed_product(const at::Tensor& h) const {
    return ops()->linear.call(h.contiguous(), packed_, w_, std::nullopt, batch_);
  }

  const at::Tensor& w_t() {
    if (!w_t_.defined()) w_t_ = w_.t().contiguous();
    return w_t_;
  }

  at::Tensor w_, w_t_, packed_;
  int64_t batch_;
};

}  // namespace lstm_fused
