// The op handles behind OnednnLinearStepGemm and the probe of which types it runs.
#include "onednn_linear_cpu.h"

#include "engine_cpu.h"

#include <exception>
#include <limits>
#include <mutex>

namespace lstm_fused {

const OnednnLinearStepGemm::Ops& OnednnLinearStepGemm::ops() {
  static const Ops o = [] {
    auto& d = c10::Dispatcher::singleton();
    return Ops{d.findSchemaOrThrow("mkldnn::_reorder_linear_weight", "")
                   .typed<at::Tensor(const at::Tensor&, std::optional<int64_t>)>(),
               d.findSchemaOrThrow("mkldnn::_linear_pointwise", "")
                   .typed<at::Tensor(const at::Tensor&, const at::Tensor&,
                                     const std::optional<at::Tensor>&, std::string_view,
                                     c10::List<std::optional<c10::Scalar>>,
                                     std::optional<std::string_view>)>(),
               d.findSchemaOrThrow("mkldnn::_linear_pointwise", "binary")
                   .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                     const std::optional<at::Tensor>&, std::string_view)>()};
  }();
  return o;
}

namespace {

// Three rows, K = 40, N = 48: a product and an accumulation, against float64.
bool probe(at::ScalarType dtype) {
  if (dtype != at::kFloat && !cpu_has_16bit_dot(dtype)) return false;
  try {
    const auto opts = at::TensorOptions().dtype(at::kFloat);
    const auto a = at::arange(3 * 40, opts).view({3, 40}).sin().to(dtype);
    const auto w = at::arange(48 * 40, opts).view({48, 40}).cos().to(dtype);
    const auto c0 = at::arange(3 * 48, opts).view({3, 48}).sin().to(dtype);
    const auto ref = at::mm(a.to(at::kDouble), w.to(at::kDouble).t());
    OnednnLinearStepGemm g(w, 3);
    auto p = at::full({3, 48}, std::numeric_limits<float>::quiet_NaN(), opts).to(dtype);
    g.product(p, a, 3);
    auto c = c0.clone();
    g.accumulate(c, a, 3);
    const double tol = dtype == at::kFloat ? 1e-5 : 5e-2;
    return at::allclose(p.to(at::kDouble), ref, tol, tol) &&
           at::allclose(c.to(at::kDouble), ref + c0.to(at::kDouble), tol, tol);
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace

bool OnednnLinearStepGemm::available(at::ScalarType dtype) {
  static std::once_flag once;
  static bool f32 = false, bf16 = false, f16 = false;
  std::call_once(once, [] {
    f32 = probe(at::kFloat);
    bf16 = probe(at::kBFloat16);
    f16 = probe(at::kHalf);
  });
  switch (dtype) {
    case at::kFloat: return f32;
    case at::kBFloat16: return bf16;
    case at::kHalf: return f16;
    default: return false;
  }
}

}  // namespace lstm_fused
