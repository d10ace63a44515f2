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
  // w (N, K), any layout; batch: the rows of the whole batch.
  PackedStepGemm(const at::Tensor& w, int64_t batch) : w_(w.contiguous()), batch_(batch) {
    if (w.scalar_type() == at::kFloat && batch > 0 && ops().has_value()) {
      packed_ = ops()->reorder.call(w_, batch);
    }
  }

  // g[:n] (N wide) += h[:n] (K wide) · wᵀ, w (N, K); g and h hold the whole batch.
  void accumulate(const at::Tensor& g, const at::Tensor& h, int64_t n) {
    if (use_packed(n)) {
      rows(g, n).add_(rows(packed_product(h), n));
    } else {
      rows(g, n).addmm_(rows(h, n), w_t());
    }
  }

  // out[:n] = h[:n] · wᵀ; out's other rows are left as they are.
  void product(const at::Tensor& out, const at::Tensor& h, int64_t n) {
    if (use_packed(n)) {
      rows(out, n).copy_(rows(packed_product(h), n));
    } else {
      auto o = rows(out, n);
      at::mm_out(o, rows(h, n), w_t());
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

  // The packed GEMM only takes the batch it was packed for. When fewer
  // sequences run (packed input), it still wins over the library GEMM on the
  // running rows alone while those are most of the batch, or while the batch is
  // small enough that streaming the weights costs more than the rows.
  bool use_packed(int64_t n) const {
    return packed_.defined() && (4 * n >= 3 * batch_ || batch_ <= 16);
  }

  static at::Tensor rows(const at::Tensor& t, int64_t n) { return t.narrow(0, 0, n); }

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
