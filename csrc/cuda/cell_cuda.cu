// Launcher of the fused LSTM cell step (the kernel and its design: cell_kernel.cuh).
#include "cell_kernel.cuh"
#include "kernels.h"

namespace lstm_fused {
namespace cuda {

template <typename T>
cudaError_t cell_fused_forward(cudaStream_t stream, CellKind cell, int B, int I, int H,
                               const T* x, const T* h, const T* c, const T* w_ih, const T* w_hh,
                               const T* b_ih, const T* b_hh, T* h_out, T* c_out, T* gates,
                               const T* peep) {
  if (B <= 0 || H <= 0 || I < 0) return cudaSuccess;
  if (cell.peephole && peep == nullptr) return cudaErrorInvalidValue;
  const dim3 grid((H + kernels::kCellUnits - 1) / kernels::kCellUnits,
                  (B + kernels::kCellBT - 1) / kernels::kCellBT);
  with_cell(cell, [&](auto c_) {
    kernels::cell_fused_kernel<decltype(c_), T><<<grid, kernels::kCellThreads, 0, stream>>>(
        B, I, H, x, h, c, w_ih, w_hh, b_ih, b_hh, h_out, c_out, gates, peep);
  });
  return cudaGetLastError();
}

#define LSTM_FUSED_INSTANTIATE_CELL(T)                                                     \
  template cudaError_t cell_fused_forward<T>(cudaStream_t, CellKind, int, int, int, const T*, \
                                             const T*, const T*, const T*, const T*,          \
                                             const T*, const T*, T*, T*, T*, const T*);
LSTM_FUSED_INSTANTIATE_CELL(float)
LSTM_FUSED_INSTANTIATE_CELL(__half)
LSTM_FUSED_INSTANTIATE_CELL(__nv_bfloat16)
#undef LSTM_FUSED_INSTANTIATE_CELL

}  // namespace cuda
}  // namespace lstm_fused
