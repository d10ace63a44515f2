// CUDA kernels of the four ops, registered for the CUDA dispatch key.
//
//   lstm_cell           the fused step kernel (cell_cuda.cu), every cell
//                       variant, in float, half and bfloat16 with B <= 64; else, or
//                       under Path::Step, the driver (cuBLAS GEMMs + the
//                       pointwise kernel, every cell variant).
//   lstm_cell_backward  the driver (pointwise kernel + cuBLAS GEMMs).
//   lstm_layer          the persistent kernel (persistent_fwd.cu) under
//                       Path::Auto/Persistent when eligible: every cell variant,
//                       float/half/bfloat16, no projection, no lengths, T >= 1,
//                       1 <= B <= 256, and a
//                       plan exists (the W_hh slices fit in shared memory and the
//                       grid is co-resident); else the driver's per-step path.
//   lstm_layer_backward the persistent backward kernel (persistent_bwd.cu) under
//                       the same conditions, then dx, dW_ih, dW_hh and db as
//                       large cuBLAS GEMMs/reductions; else the driver.
// Both layer paths produce the same layouts (ops.cpp), so a forward on one path
// and a backward on the other compose. Everything runs on the current stream,
// under a device guard for the input's device.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <atomic>
#include <climits>
#include <optional>
#include <tuple>
#include <vector>

#include "../checks.h"
#include "../config.h"
#include "../driver.h"
#include "device_types.h"
#include "kernels.h"
#include "pointwise_cuda.h"

namespace lstm_fused {
namespace {

using at::Tensor;

// Launch counters, read by the tests through _cuda_kernel_counts to see which
// path ran: persistent forward, persistent backward, fused cell.
std::atomic<int64_t> g_launches[3];
enum Counter { kPersistentForward = 0, kPersistentBackward = 1, kFusedCell = 2 };
void count(Counter c) { g_launches[c].fetch_add(1, std::memory_order_relaxed); }

using LayerOut = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>;
using LayerGrads = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;

cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

template <typename S>
const cuda::dev_t<S>* cptr(const Tensor& t) {
  return cuda::dev(static_cast<const S*>(t.data_ptr<S>()));
}
template <typename S>
cuda::dev_t<S>* mptr(const Tensor& t) {
  return t.defined() ? cuda::dev(t.data_ptr<S>()) : nullptr;
}

bool tensor_core_dtype(at::ScalarType st) {
  return st == at::kFloat || st == at::kHalf || st == at::kBFloat16;
}

// f(S{}) with S the element type of a tensor-core dtype (float, c10::Half,
// c10::BFloat16); the callers have checked tensor_core_dtype.
template <class F>
auto with_tensor_core_type(at::ScalarType st, F&& f) {
  switch (st) {
    case at::kHalf:
      return f(c10::Half{});
    case at::kBFloat16:
      return f(c10::BFloat16{});
    default:
      TORCH_INTERNAL_ASSERT(st == at::kFloat, "lstm_fused: not a tensor-core dtype: ", st);
      return f(float{});
  }
}

cuda::MmaMode mode_for(at::ScalarType st) {
  switch (st) {
    case at::kBFloat16:
      return cuda::MmaMode::kBF16;
    case at::kHalf:
      return cuda::MmaMode::kF16;
    default:
      // fp32: TF32 tensor cores only where torch lets cuBLAS use them; else
      // the 3xTF32 split, accurate to about fp32.
      return at::globalContext().allowTF32CuBLAS() ? cuda::MmaMode::kTF32
                                                   : cuda::MmaMode::k3xTF32;
  }
}

// A launch the runtime refused (too large for co-residency, out of resources):
// fall back to the per-step path, once loudly.
void note_fallback(const char* op, cudaError_t err) {
  TORCH_WARN_ONCE("lstm_fused: the persistent ", op, " kernel could not be launched (",
                  cudaGetErrorString(err), "); using the per-step path");
}

// ------------------------------------------------------------------- cell
template <typename S>
void launch_cell(const Tensor& x, const Tensor& h, const Tensor& c, const Tensor& w_ih,
                 const Tensor& w_hh, const Tensor& b_ih, const Tensor& b_hh, const Tensor& hy,
                 const Tensor& cy, const Tensor& gates, const Tensor& peep, CellKind kind,
                 const CellDims& d) {
  const cudaError_t err = cuda::cell_fused_forward(
      current_stream(), kind, static_cast<int>(d.B), static_cast<int>(d.I),
      static_cast<int>(d.H), cptr<S>(x), cptr<S>(h), cptr<S>(c), cptr<S>(w_ih), cptr<S>(w_hh),
      b_ih.defined() ? cptr<S>(b_ih) : nullptr, b_hh.defined() ? cptr<S>(b_hh) : nullptr,
      mptr<S>(hy), mptr<S>(cy), gates.defined() ? mptr<S>(gates) : nullptr,
      peep.defined() ? cptr<S>(peep) : nullptr);
  C10_CUDA_CHECK(err);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  count(kFusedCell);
}

std::tuple<Tensor, Tensor, Tensor> cell_forward_cuda(const Tensor& input, const Tensor& hx,
                                                     const Tensor& cx, const Tensor& w_ih,
                                                     const Tensor& w_hh,
                                                     const std::optional<Tensor>& b_ih,
                                                     const std::optional<Tensor>& b_hh,
                                                     bool need_gates, int64_t variant,
                                                     const std::optional<Tensor>& peephole) {
  const c10::cuda::CUDAGuard guard(input.device());
  const auto kind = cell_kind(variant, peephole);
  const auto d = check_cell_args(input, hx, cx, w_ih, w_hh, b_ih, b_hh, kind, peephole);
  const auto st = input.scalar_type();
  const bool fused = kernel_path() != Path::Step && tensor_core_dtype(st) && d.B >= 1 &&
                     d.B <= cuda::cell_fused_max_batch() && d.H >= 1 &&
                     d.H <= INT_MAX / 4 && d.I <= INT_MAX / 2 - d.H;
  if (!fused) {
    return cell_forward<CudaPointwise>(input, hx, cx, w_ih, w_hh, b_ih, b_hh, need_gates, variant,
                                       peephole);
  }
  const auto opts = input.options();
  const auto x = input.contiguous();
  const auto h = hx.contiguous();
  const auto c = cx.contiguous();
  const auto wi = w_ih.contiguous();
  const auto wh = w_hh.contiguous();
  const auto bi = b_ih.has_value() ? b_ih->contiguous() : Tensor();
  const auto bh = b_hh.has_value() ? b_hh->contiguous() : Tensor();
  auto hy = buffer({d.B, d.H}, opts);
  auto cy = buffer({d.B, d.H}, opts);
  auto gates = need_gates ? buffer({d.B, d.G}, opts) : Tensor();
  const auto peep = peephole.has_value() ? peephole->contiguous() : Tensor();
  with_tensor_core_type(st, [&](auto tag) {
    launch_cell<decltype(tag)>(x, h, c, wi, wh, bi, bh, hy, cy, gates, peep, kind, d);
  });
  return {hy, cy, kept_if(need_gates, gates, opts)};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> cell_backward_cuda(
    const Tensor& grad_hy, const Tensor& grad_cy, const Tensor& input, const Tensor& hx,
    const Tensor& cx, const Tensor& w_ih, const Tensor& w_hh, const Tensor& cy,
    const Tensor& gates, bool has_bias, bool need_input_grad, bool need_hx_grad,
    bool need_weight_grad, int64_t variant, const std::optional<Tensor>& peephole) {
  const c10::cuda::CUDAGuard guard(input.device());
  return cell_backward<CudaPointwise>(grad_hy, grad_cy, input, hx, cx, w_ih, w_hh, cy, gates,
                                      has_bias, need_input_grad, need_hx_grad, need_weight_grad,
                                      variant, peephole);
}

// ------------------------------------------------------------------ layer
// The persistent kernels' preconditions that do not depend on the device.
bool persistent_candidate(const LayerDims& d, at::ScalarType st,
                          const std::optional<Tensor>& w_hr,
                          const std::optional<Tensor>& lengths) {
  return kernel_path() != Path::Step && tensor_core_dtype(st) && !w_hr.has_value() &&
         !lengths.has_value() && d.T >= 1 && d.T <= INT_MAX && d.B >= 1 && d.H >= 1 &&
         d.H <= (1 << 20);
}

template <typename S>
cudaError_t launch_forward(const cuda::PersistentPlan& plan, const LayerDims& d, bool reverse,
                           bool need_grad, const Tensor& w_hh, const Tensor& h0, const Tensor& c0,
                           const Tensor& gates, const Tensor& output, const Tensor& cells,
                           const Tensor& h_n, const Tensor& c_n, const Tensor& staging,
                           const Tensor& peep) {
  return cuda::persistent_forward(plan, current_stream(), static_cast<int>(d.T), reverse,
                                  need_grad, cptr<S>(w_hh), cptr<S>(h0), cptr<S>(c0),
                                  mptr<S>(gates), mptr<S>(output),
                                  need_grad ? mptr<S>(cells) : nullptr, mptr<S>(h_n),
                                  mptr<S>(c_n), mptr<S>(staging),
                                  peep.defined() ? cptr<S>(peep) : nullptr);
}

std::optional<LayerOut> persistent_layer_forward(
    const cuda::PersistentPlan& plan, const LayerDims& d, const Tensor& input, const Tensor& h0,
    const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh, const std::optional<Tensor>& b_ih,
    const std::optional<Tensor>& b_hh, const std::optional<Tensor>& peephole, bool reverse,
    bool need_grad) {
  const auto opts = input.options();
  // The input projection of every step in one GEMM, biases folded in (as the
  // driver does); the kernel overwrites it with the activated gates.
  auto gates = buffer({d.T, d.B, d.G}, opts);
  auto gflat = gates.view({d.T * d.B, d.G});
  const auto xflat = input.reshape({d.T * d.B, d.I});
  if (b_ih.has_value()) {
    at::addmm_out(gflat, (*b_ih + *b_hh).unsqueeze(0), xflat, w_ih.t());
  } else {
    at::mm_out(gflat, xflat, w_ih.t());
  }
  auto output = buffer({d.T, d.B, d.H}, opts);
  auto cells = need_grad ? buffer({d.T, d.B, d.H}, opts) : Tensor();
  auto h_n = buffer({d.B, d.H}, opts);
  auto c_n = buffer({d.B, d.H}, opts);
  auto staging = buffer({plan.staging_elems()}, opts);
  const auto wh = w_hh.contiguous();
  const auto h0c = h0.contiguous();
  const auto c0c = c0.contiguous();
  const auto peep = peephole.has_value() ? peephole->contiguous() : Tensor();
  const cudaError_t err = with_tensor_core_type(input.scalar_type(), [&](auto tag) {
    return launch_forward<decltype(tag)>(plan, d, reverse, need_grad, wh, h0c, c0c, gates,
                                         output, cells, h_n, c_n, staging, peep);
  });
  if (err != cudaSuccess) {
    note_fallback("forward", err);
    return std::nullopt;
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  count(kPersistentForward);
  return LayerOut{output, h_n, c_n, kept_if(need_grad, gates, opts),
                  kept_if(need_grad, cells, opts)};
}

LayerOut layer_forward_cuda(const Tensor& input, const Tensor& h0, const Tensor& c0,
                            const Tensor& w_ih, const Tensor& w_hh,
                            const std::optional<Tensor>& b_ih, const std::optional<Tensor>& b_hh,
                            const std::optional<Tensor>& w_hr,
                            const std::optional<Tensor>& lengths, bool reverse, bool need_grad,
                            int64_t variant, const std::optional<Tensor>& peephole) {
  const c10::cuda::CUDAGuard guard(input.device());
  const auto kind = cell_kind(variant, peephole);
  const auto d = check_layer_args(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, kind,
                                  peephole);
  const auto st = input.scalar_type();
  if (persistent_candidate(d, st, w_hr, lengths)) {
    const auto plan = cuda::plan_persistent(input.device().index(), mode_for(st),
                                            /*backward=*/false, static_cast<int>(d.B),
                                            static_cast<int>(d.H), kind);
    if (plan.ok) {
      if (auto r = persistent_layer_forward(plan, d, input, h0, c0, w_ih, w_hh, b_ih, b_hh,
                                            peephole, reverse, need_grad)) {
        return *r;
      }
    }
  }
  return layer_forward<CudaPointwise>(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths,
                                      reverse, need_grad, variant, peephole);
}

template <typename S>
cudaError_t launch_backward(const cuda::PersistentPlan& plan, const LayerDims& d, bool reverse,
                            const Tensor& w_hh, const Tensor& gates, const Tensor& cells,
                            const Tensor& c0, const Tensor& grad_output, const Tensor& grad_hn,
                            const Tensor& grad_cn, const Tensor& dgates, const Tensor& grad_h0,
                            const Tensor& grad_c0, const Tensor& staging, const Tensor& peep,
                            const Tensor& dpeep) {
  return cuda::persistent_backward(plan, current_stream(), static_cast<int>(d.T), reverse,
                                   cptr<S>(w_hh), cptr<S>(gates), cptr<S>(cells), cptr<S>(c0),
                                   cptr<S>(grad_output), cptr<S>(grad_hn), cptr<S>(grad_cn),
                                   mptr<S>(dgates), mptr<S>(grad_h0), mptr<S>(grad_c0),
                                   mptr<S>(staging), peep.defined() ? cptr<S>(peep) : nullptr,
                                   dpeep.defined() ? dpeep.data_ptr<float>() : nullptr);
}

std::optional<LayerGrads> persistent_layer_backward(
    const cuda::PersistentPlan& plan, const LayerDims& d, const Tensor& grad_output,
    const Tensor& grad_hn, const Tensor& grad_cn, const Tensor& input, const Tensor& h0,
    const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& output,
    const Tensor& gates, const Tensor& cells, bool has_bias, bool reverse, bool need_input_grad,
    bool need_weight_grad, const std::optional<Tensor>& peephole) {
  const auto opts = input.options();
  auto dgates = buffer({d.T, d.B, d.G}, opts);
  auto grad_h0 = buffer({d.B, d.H}, opts);
  auto grad_c0 = buffer({d.B, d.H}, opts);
  auto staging = buffer({plan.staging_elems()}, opts);
  const auto wh = w_hh.contiguous();
  const auto g = gates.contiguous();
  const auto c = cells.contiguous();
  const auto c0c = c0.contiguous();
  const auto go = grad_output.contiguous();
  const auto ghn = grad_hn.contiguous();
  const auto gcn = grad_cn.contiguous();
  const auto peep = peephole.has_value() ? peephole->contiguous() : Tensor();
  // fp32 for every tensor-core dtype, as the kernel accumulates
  const auto dpeep = peephole_accumulators(plan.cell, need_weight_grad, d.B, d.H, opts);
  const cudaError_t err = with_tensor_core_type(input.scalar_type(), [&](auto tag) {
    return launch_backward<decltype(tag)>(plan, d, reverse, wh, g, c, c0c, go, ghn, gcn, dgates,
                                          grad_h0, grad_c0, staging, peep, dpeep);
  });
  if (err != cudaSuccess) {
    note_fallback("backward", err);
    return std::nullopt;
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  count(kPersistentBackward);
  // The weight, input and bias gradients: large GEMMs over all steps (the
  // driver's tail; every step's h_{t-1} is output shifted by one, h0 first).
  const auto n_active = active_rows(std::nullopt, d.T, d.B);
  auto [grad_input, grad_w_ih, grad_w_hh, grad_bias] =
      gradient_gemms(dgates, input, output, h0, w_ih, n_active, has_bias, reverse,
                     need_input_grad, need_weight_grad);
  return LayerGrads{grad_input, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_bias,
                    at::empty({0}, opts), peephole_grad(dpeep, input.scalar_type(), opts)};
}

LayerGrads layer_backward_cuda(const Tensor& grad_output, const Tensor& grad_hn,
                               const Tensor& grad_cn, const Tensor& input, const Tensor& h0,
                               const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                               const std::optional<Tensor>& w_hr,
                               const std::optional<Tensor>& lengths, const Tensor& output,
                               const Tensor& gates, const Tensor& cells, bool has_bias,
                               bool reverse, bool need_input_grad, bool need_weight_grad,
                               int64_t variant, const std::optional<Tensor>& peephole) {
  const c10::cuda::CUDAGuard guard(input.device());
  const auto kind = cell_kind(variant, peephole);
  const auto d = check_layer_args(input, h0, c0, w_ih, w_hh, std::nullopt, std::nullopt, w_hr,
                                  lengths, kind, peephole);
  const auto st = input.scalar_type();
  if (persistent_candidate(d, st, w_hr, lengths)) {
    TORCH_CHECK(gates.sizes() == at::IntArrayRef({d.T, d.B, d.G}) &&
                    cells.sizes() == at::IntArrayRef({d.T, d.B, d.H}),
                "lstm_fused: gates and cells must come from lstm_layer(need_grad=True)");
    TORCH_CHECK(grad_output.sizes() == at::IntArrayRef({d.T, d.B, d.H}) &&
                    output.sizes() == at::IntArrayRef({d.T, d.B, d.H}) &&
                    grad_hn.sizes() == at::IntArrayRef({d.B, d.H}) &&
                    grad_cn.sizes() == at::IntArrayRef({d.B, d.H}),
                "lstm_fused: grad_output/output must be (T, B, H), grad_hn/grad_cn (B, H)");
    for (const Tensor* t : {&grad_output, &grad_hn, &grad_cn, &output, &gates, &cells}) {
      TORCH_CHECK(t->scalar_type() == st && t->device() == input.device(),
                  "lstm_fused: the gradients and saved tensors must match the input's dtype (", st,
                  ") and device (", input.device(), "), got ", t->scalar_type(), " on ",
                  t->device());
    }
    const auto plan = cuda::plan_persistent(input.device().index(), mode_for(st),
                                            /*backward=*/true, static_cast<int>(d.B),
                                            static_cast<int>(d.H), kind);
    if (plan.ok) {
      if (auto r = persistent_layer_backward(plan, d, grad_output, grad_hn, grad_cn, input, h0,
                                             c0, w_ih, w_hh, output, gates, cells, has_bias,
                                             reverse, need_input_grad, need_weight_grad,
                                             peephole)) {
        return *r;
      }
    }
  }
  return layer_backward<CudaPointwise>(grad_output, grad_hn, grad_cn, input, h0, c0, w_ih, w_hh,
                                       w_hr, lengths, output, gates, cells, has_bias, reverse,
                                       need_input_grad, need_weight_grad, variant, peephole);
}

// ------------------------------------------------------- introspection
std::vector<int64_t> kernel_counts() {
  return {g_launches[kPersistentForward].load(), g_launches[kPersistentBackward].load(),
          g_launches[kFusedCell].load()};
}

// [ok, HS, blocks, shared memory bytes, mode, error] of the persistent kernel's
// plan for (device, dtype, direction, B, H, cell) under the current TF32
// setting; error: the cudaError_t of a runtime call that refused during
// planning, or 0.
std::vector<int64_t> persistent_plan_info(int64_t device, at::ScalarType dtype, bool backward,
                                          int64_t B, int64_t H, int64_t variant, bool peephole) {
  TORCH_CHECK(CellKind::valid(variant), "lstm_fused: variant must be 0, 1 or 2, got ", variant);
  TORCH_CHECK(tensor_core_dtype(dtype), "lstm_fused: the persistent kernels take float32, "
              "bfloat16 or float16, not ", dtype);
  TORCH_CHECK(B >= 1 && B <= INT_MAX && H >= 1 && H <= INT_MAX, "lstm_fused: bad B or H");
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  const auto p = cuda::plan_persistent(static_cast<int>(device), mode_for(dtype), backward,
                                       static_cast<int>(B), static_cast<int>(H),
                                       CellKind{static_cast<GateVariant>(variant), peephole});
  return {p.ok ? 1 : 0, p.HS, p.blocks, static_cast<int64_t>(p.smem_bytes), p.mode, p.error};
}

}  // namespace

void CudaPointwise::projection_out(Tensor& out, const Tensor& x, const Tensor& w_ih, bool) {
  at::mm_out(out, x, w_ih.t());
}

// Debugging and test hooks of the CUDA build (not part of the ops' contract).
TORCH_LIBRARY_FRAGMENT(lstm_fused, m) {
  m.def("_cuda_kernel_counts() -> int[]", &kernel_counts);
  m.def("_cuda_persistent_plan(int device, ScalarType dtype, bool backward, int B, int H, "
        "int variant=0, bool peephole=False) -> int[]",
        &persistent_plan_info);
}

TORCH_LIBRARY_IMPL(lstm_fused, CUDA, m) {
  m.impl("lstm_cell", &cell_forward_cuda);
  m.impl("lstm_cell_backward", &cell_backward_cuda);
  m.impl("lstm_layer", &layer_forward_cuda);
  m.impl("lstm_layer_backward", &layer_backward_cuda);
}

}  // namespace lstm_fused
