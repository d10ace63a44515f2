// Launchers of the persistent forward kernel (persistent_fwd.cuh).
#include "persistent_common.cuh"

namespace lstm_fused {
namespace cuda {
namespace persistent {

namespace {

template <int MODE>
cudaError_t launch_forward(const PersistentPlan& plan, cudaStream_t stream, int steps,
                           bool reverse, bool need_grad, const typename ModeTraits<MODE>::T* w_hh,
                           const typename ModeTraits<MODE>::T* h0,
                           const typename ModeTraits<MODE>::T* c0,
                           typename ModeTraits<MODE>::T* gates,
                           typename ModeTraits<MODE>::T* output,
                           typename ModeTraits<MODE>::T* cells, typename ModeTraits<MODE>::T* h_n,
                           typename ModeTraits<MODE>::T* c_n,
                           typename ModeTraits<MODE>::T* staging,
                           const typename ModeTraits<MODE>::T* peep) {
  FwdArgs<typename ModeTraits<MODE>::T> args;
  args.s = shape_of(plan, steps, reverse);
  args.need_grad = need_grad ? 1 : 0;
  args.w_hh = w_hh;
  args.h0 = h0;
  args.c0 = c0;
  args.gates = gates;
  args.output = output;
  args.cells = cells;
  args.h_n = h_n;
  args.c_n = c_n;
  args.staging = staging;
  args.peep = peep;
  void* kargs[] = {&args};
  const void* kernel =
      forward_kernel(static_cast<MmaMode>(MODE), ntc_bound(plan.NTC), plan.cell);
  const cudaError_t err = cudaLaunchCooperativeKernel(kernel, dim3(plan.blocks), dim3(kThreads),
                                                      kargs, plan.smem_bytes, stream);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // a refused launch must not poison later calls
    return err;
  }
  return cudaGetLastError();
}

bool plan_usable(const PersistentPlan& plan, int steps, bool need_grad, const void* cells,
                 const void* peep) {
  return plan.ok && !plan.backward && steps > 0 && (!need_grad || cells != nullptr) &&
         (!plan.cell.peephole || peep != nullptr);
}

}  // namespace

const void* forward_kernel(MmaMode mode, int ntcm, CellKind cell) {
  switch (mode) {
    case MmaMode::kBF16: return forward_kernel_of<static_cast<int>(MmaMode::kBF16)>(ntcm, cell);
    case MmaMode::kF16: return forward_kernel_of<static_cast<int>(MmaMode::kF16)>(ntcm, cell);
    case MmaMode::kTF32: return forward_kernel_of<static_cast<int>(MmaMode::kTF32)>(ntcm, cell);
    case MmaMode::k3xTF32: return forward_kernel_of<static_cast<int>(MmaMode::k3xTF32)>(ntcm, cell);
  }
  return nullptr;
}

}  // namespace persistent

cudaError_t persistent_forward(const PersistentPlan& plan, cudaStream_t stream, int steps,
                               bool reverse, bool need_grad, const float* w_hh, const float* h0,
                               const float* c0, float* gates, float* output, float* cells,
                               float* h_n, float* c_n, float* staging,
                               const float* peep) {
  if (!persistent::plan_usable(plan, steps, need_grad, cells, peep)) return cudaErrorInvalidValue;
  if (plan.mode == static_cast<int>(MmaMode::kTF32)) {
    return persistent::launch_forward<static_cast<int>(MmaMode::kTF32)>(
        plan, stream, steps, reverse, need_grad, w_hh, h0, c0, gates, output, cells, h_n, c_n,
        staging, peep);
  }
  if (plan.mode == static_cast<int>(MmaMode::k3xTF32)) {
    return persistent::launch_forward<static_cast<int>(MmaMode::k3xTF32)>(
        plan, stream, steps, reverse, need_grad, w_hh, h0, c0, gates, output, cells, h_n, c_n,
        staging, peep);
  }
  return cudaErrorInvalidValue;
}

cudaError_t persistent_forward(const PersistentPlan& plan, cudaStream_t stream, int steps,
                               bool reverse, bool need_grad, const __half* w_hh, const __half* h0,
                               const __half* c0, __half* gates, __half* output, __half* cells,
                               __half* h_n, __half* c_n, __half* staging,
                               const __half* peep) {
  if (!persistent::plan_usable(plan, steps, need_grad, cells, peep) ||
      plan.mode != static_cast<int>(MmaMode::kF16)) {
    return cudaErrorInvalidValue;
  }
  return persistent::launch_forward<static_cast<int>(MmaMode::kF16)>(
      plan, stream, steps, reverse, need_grad, w_hh, h0, c0, gates, output, cells, h_n, c_n,
      staging, peep);
}

cudaError_t persistent_forward(
    const PersistentPlan& plan, cudaStream_t stream, int steps, bool reverse, bool need_grad,
    const __nv_bfloat16* w_hh, const __nv_bfloat16* h0, const __nv_bfloat16* c0,
    __nv_bfloat16* gates, __nv_bfloat16* output, __nv_bfloat16* cells, __nv_bfloat16* h_n,
    __nv_bfloat16* c_n, __nv_bfloat16* staging, const __nv_bfloat16* peep) {
  if (!persistent::plan_usable(plan, steps, need_grad, cells, peep) ||
      plan.mode != static_cast<int>(MmaMode::kBF16)) {
    return cudaErrorInvalidValue;
  }
  return persistent::launch_forward<static_cast<int>(MmaMode::kBF16)>(
      plan, stream, steps, reverse, need_grad, w_hh, h0, c0, gates, output, cells, h_n, c_n,
      staging, peep);
}

}  // namespace cuda
}  // namespace lstm_fused
