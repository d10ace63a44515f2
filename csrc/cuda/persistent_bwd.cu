// Launchers of the persistent backward kernel (persistent_bwd.cuh).
#include "persistent_common.cuh"

namespace lstm_fused {
namespace cuda {
namespace persistent {

namespace {

template <int MODE>
cudaError_t launch_backward(const PersistentPlan& plan, cudaStream_t stream, int steps,
                            bool reverse, const typename ModeTraits<MODE>::T* w_hh,
                            const typename ModeTraits<MODE>::T* gates,
                            const typename ModeTraits<MODE>::T* cells,
                            const typename ModeTraits<MODE>::T* c0,
                            const typename ModeTraits<MODE>::T* grad_output,
                            const typename ModeTraits<MODE>::T* grad_hn,
                            const typename ModeTraits<MODE>::T* grad_cn,
                            typename ModeTraits<MODE>::T* dgates,
                            typename ModeTraits<MODE>::T* grad_h0,
                            typename ModeTraits<MODE>::T* grad_c0,
                            typename ModeTraits<MODE>::T* staging,
                            const typename ModeTraits<MODE>::T* peep, float* dpeep) {
  BwdArgs<typename ModeTraits<MODE>::T> args;
  args.s = shape_of(plan, steps, reverse);
  args.w_hh = w_hh;
  args.gates = gates;
  args.cells = cells;
  args.c0 = c0;
  args.grad_output = grad_output;
  args.grad_hn = grad_hn;
  args.grad_cn = grad_cn;
  args.dgates = dgates;
  args.grad_h0 = grad_h0;
  args.grad_c0 = grad_c0;
  args.staging = staging;
  args.peep = peep;
  args.dpeep = dpeep;
  void* kargs[] = {&args};
  const void* kernel =
      backward_kernel(static_cast<MmaMode>(MODE), ntc_bound(plan.NTC), plan.cell);
  const cudaError_t err = cudaLaunchCooperativeKernel(kernel, dim3(plan.blocks), dim3(kThreads),
                                                      kargs, plan.smem_bytes, stream);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // a refused launch must not poison later calls
    return err;
  }
  return cudaGetLastError();
}

bool plan_usable(const PersistentPlan& plan, int steps, const void* peep) {
  return plan.ok && plan.backward && steps > 0 && (!plan.cell.peephole || peep != nullptr);
}

}  // namespace

const void* backward_kernel(MmaMode mode, int ntcm, CellKind cell) {
  switch (mode) {
    case MmaMode::kBF16: return backward_kernel_of<static_cast<int>(MmaMode::kBF16)>(ntcm, cell);
    case MmaMode::kF16: return backward_kernel_of<static_cast<int>(MmaMode::kF16)>(ntcm, cell);
    case MmaMode::kTF32: return backward_kernel_of<static_cast<int>(MmaMode::kTF32)>(ntcm, cell);
    case MmaMode::k3xTF32: return backward_kernel_of<static_cast<int>(MmaMode::k3xTF32)>(ntcm, cell);
  }
  return nullptr;
}

}  // namespace persistent

cudaError_t persistent_backward(const PersistentPlan& plan, cudaStream_t stream, int steps,
                                bool reverse, const float* w_hh, const float* gates,
                                const float* cells, const float* c0, const float* grad_output,
                                const float* grad_hn, const float* grad_cn, float* dgates,
                                float* grad_h0, float* grad_c0, float* staging,
                                const float* peep, float* dpeep) {
  if (!persistent::plan_usable(plan, steps, peep)) return cudaErrorInvalidValue;
  if (plan.mode == static_cast<int>(MmaMode::kTF32)) {
    return persistent::launch_backward<static_cast<int>(MmaMode::kTF32)>(
        plan, stream, steps, reverse, w_hh, gates, cells, c0, grad_output, grad_hn, grad_cn,
        dgates, grad_h0, grad_c0, staging, peep, dpeep);
  }
  if (plan.mode == static_cast<int>(MmaMode::k3xTF32)) {
    return persistent::launch_backward<static_cast<int>(MmaMode::k3xTF32)>(
        plan, stream, steps, reverse, w_hh, gates, cells, c0, grad_output, grad_hn, grad_cn,
        dgates, grad_h0, grad_c0, staging, peep, dpeep);
  }
  return cudaErrorInvalidValue;
}

cudaError_t persistent_backward(const PersistentPlan& plan, cudaStream_t stream, int steps,
                                bool reverse, const __half* w_hh, const __half* gates,
                                const __half* cells, const __half* c0,
                                const __half* grad_output, const __half* grad_hn,
                                const __half* grad_cn, __half* dgates, __half* grad_h0,
                                __half* grad_c0, __half* staging, const __half* peep,
                                float* dpeep) {
  if (!persistent::plan_usable(plan, steps, peep) || plan.mode != static_cast<int>(MmaMode::kF16)) {
    return cudaErrorInvalidValue;
  }
  return persistent::launch_backward<static_cast<int>(MmaMode::kF16)>(
      plan, stream, steps, reverse, w_hh, gates, cells, c0, grad_output, grad_hn, grad_cn,
      dgates, grad_h0, grad_c0, staging, peep, dpeep);
}

cudaError_t persistent_backward(const PersistentPlan& plan, cudaStream_t stream, int steps,
                                bool reverse, const __nv_bfloat16* w_hh,
                                const __nv_bfloat16* gates, const __nv_bfloat16* cells,
                                const __nv_bfloat16* c0, const __nv_bfloat16* grad_output,
                                const __nv_bfloat16* grad_hn, const __nv_bfloat16* grad_cn,
                                __nv_bfloat16* dgates, __nv_bfloat16* grad_h0,
                                __nv_bfloat16* grad_c0, __nv_bfloat16* staging,
                                const __nv_bfloat16* peep, float* dpeep) {
  if (!persistent::plan_usable(plan, steps, peep) || plan.mode != static_cast<int>(MmaMode::kBF16)) {
    return cudaErrorInvalidValue;
  }
  return persistent::launch_backward<static_cast<int>(MmaMode::kBF16)>(
      plan, stream, steps, reverse, w_hh, gates, cells, c0, grad_output, grad_hn, grad_cn,
      dgates, grad_h0, grad_c0, staging, peep, dpeep);
}

}  // namespace cuda
}  // namespace lstm_fused
