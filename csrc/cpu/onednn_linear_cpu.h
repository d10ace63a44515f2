#pragma once
// The recurrent GEMM on oneDNN's packed matmul, through the ops torch
// registers for it (mkldnn::_reorder_linear_weight once per call, then
// mkldnn::_linear_pointwise per step): the engine onednn_linear.
//
// Why beside brgemm (brgemm_cpu.h): ATen runs its brgemm micro-kernel on
// 16-bit types only where the CPU has AMX; elsewhere (AVX512_BF16 without
// AMX, as on AMD Zen 4) it passes them to its library GEMM, which is MKL's.
// The packed matmul generates 16-bit dot-product kernels for every CPU that
// has them, and float kernels for the CPU it runs on.
//
// Precision as the other engines: products accumulate in float. c += a·wᵀ
// in a 16-bit type adds c inside the same kernel (a binary post-op) and
// rounds once to the layer's type; in float the product is added after the
// kernel, as the binary post-op cost more than a separate add (AMD EPYC, 2
// threads, per step: (8 x 512)·(512 x 2048) 201 against 139 µs, (16 x 1024)·
// (1024 x 4096) 1067 against 883; bench/NOTES.md v21).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>
#include <string_view>

namespace lstm_fused {

class OnednnLinearStepGemm {
 public:
  // w (N, K), any strides, float, bfloat16 or float16; batch: the rows of
  // the whole batch, the hint the weight is laid out for.
  OnednnLinearStepGemm(const at::Tensor& w, int64_t batch)
      : packed_(ops().reorder.call(w.contiguous(), batch)) {}

  // c[:n] += a[:n] · wᵀ; c and a (rows, ·) with dense rows.
  void accumulate(const at::Tensor& c, const at::Tensor& a, int64_t n) const {
    if (n == 0) return;
    auto cn = c.narrow(0, 0, n);
    if (c.scalar_type() == at::kFloat) {
      cn.add_(matmul(a, n));
      return;
    }
    cn.copy_(ops().binary.call(a.narrow(0, 0, n).contiguous(), cn.contiguous(), packed_,
                               std::nullopt, "add"));
  }

  // c[:n] = a[:n] · wᵀ; c's other rows are left as they are.
  void product(const at::Tensor& c, const at::Tensor& a, int64_t n) const {
    if (n == 0) return;
    c.narrow(0, 0, n).copy_(matmul(a, n));
  }

  // Whether this torch build registers the ops and they run `dtype` on this
  // CPU (16-bit types only where it has dot products for them); probed once
  // per type on a small product checked against float64.
  static bool available(at::ScalarType dtype);

 private:
  struct Ops {
    c10::TypedOperatorHandle<at::Tensor(const at::Tensor&, std::optional<int64_t>)> reorder;
    c10::TypedOperatorHandle<at::Tensor(const at::Tensor&, const at::Tensor&,
                                        const std::optional<at::Tensor>&, std::string_view,
                                        c10::List<std::optional<c10::Scalar>>,
                                        std::optional<std::string_view>)>
        unary;
    c10::TypedOperatorHandle<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                        const std::optional<at::Tensor>&, std::string_view)>
        binary;
  };
  // Looked up once; throws where the build has no oneDNN ops (available()
  // is false there, so no engine is built).
  static const Ops& ops();

  // a[:n] · wᵀ, a new tensor of a's type.
  at::Tensor matmul(const at::Tensor& a, int64_t n) const {
    return ops().unary.call(a.narrow(0, 0, n).contiguous(), packed_, std::nullopt, "none",
                            c10::List<std::optional<c10::Scalar>>(), std::nullopt);
  }

  at::Tensor packed_;
};

}  // namespace lstm_fused
