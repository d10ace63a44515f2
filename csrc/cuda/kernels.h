#pragma once
// Framework-free launch functions of the CUDA kernels (raw pointers, row-major,
// contiguous; every pointer is device memory unless said otherwise). All run on
// the stream they are given and return the launch's cudaError_t (never throw).
// T is one of float, double (pointwise only), __half, __nv_bfloat16.
//
// Shapes use B (batch), I (input width), H (hidden width), T (time steps).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "../cell_variants.h"

namespace lstm_fused {
namespace cuda {

// The math type of T: float, or double for double.
template <typename T>
using MathOf = std::conditional_t<std::is_same_v<T, double>, double, float>;

// ---------------------------------------------------------------- pointwise
// One LSTM step's pointwise part (see ../pointwise.h), n rows of H units, for
// the cell variant Cell (../cell_variants.h) with K = Cell::kGates gate blocks.
//   gates   (n, KH)  in: pre-activations (Cell's order); out: activated gates
//   b_ih    (KH)     added to the pre-activations; may be null
//   b_hh    (KH)     added to the pre-activations; may be null
//   c_prev  (n, H)   c_{t-1}; may alias c_out
//   c_out   (n, H)   c_t
//   h_out   (n, H)   h_t
//   h_copy  (n, H)   second destination of h_t; may be null
//   c_copy  (n, H)   second destination of c_t; may be null
//   peep    (Cell::kPeepRows, H) peephole weights when Cell has them; else null
template <class Cell, typename T>
cudaError_t pointwise_forward(cudaStream_t stream, int64_t n, int64_t H, T* gates, const T* b_ih,
                              const T* b_hh, const T* c_prev, T* c_out, T* h_out, T* h_copy,
                              T* c_copy, const T* peep);

//   gates   (n, KH)  activated gates saved by the forward
//   c       (n, H)   c_t
//   c_prev  (n, H)   c_{t-1}
//   dh_a    (n, H)   dL/dh_t, first term
//   dh_b    (n, H)   dL/dh_t, second term; may be null
//   dc      (n, H)   in: dL/dc_t from later steps; out: dL/dc_{t-1} (may alias nothing else)
//   dgates  (n, KH)  out: dL/d(pre-activations)
//   peep    (Cell::kPeepRows, H) peephole weights when Cell has them; else null
//   dpeep   (n, Cell::kPeepRows, H) in the math type (float; double for
//           double): this step's dL/d(peephole weights) added; may be null
template <class Cell, typename T>
cudaError_t pointwise_backward(cudaStream_t stream, int64_t n, int64_t H, const T* gates,
                               const T* c, const T* c_prev, const T* dh_a, const T* dh_b, T* dc,
                               T* dgates, const T* peep, MathOf<T>* dpeep);

// --------------------------------------------------------- fused cell step
// T in {float, __half, __nv_bfloat16}. One launch: [x, h]·[W_ih; W_hh]ᵀ + b,
// activations and the cell update of `cell` (G = cell.gates() gate blocks);
// fp32 arithmetic throughout (no TF32). Oriented to small batches:
// cell_fused_max_batch() rows at most per call.
//   x       (B, I)
//   h       (B, H)   h_{t-1}
//   c       (B, H)   c_{t-1}
//   w_ih    (GH, I)
//   w_hh    (GH, H)
//   b_ih    (GH)     may be null (then b_hh must be null too)
//   b_hh    (GH)     may be null
//   h_out   (B, H)   h_t
//   c_out   (B, H)   c_t
//   gates   (B, GH)  activated gates (the cell's order); may be null
//   peep    (rows, H) peephole weights when the cell has them; else null
inline constexpr int cell_fused_max_batch() { return 64; }
template <typename T>
cudaError_t cell_fused_forward(cudaStream_t stream, CellKind cell, int B, int I, int H,
                               const T* x, const T* h, const T* c, const T* w_ih, const T* w_hh,
                               const T* b_ih, const T* b_hh, T* h_out, T* c_out, T* gates,
                               const T* peep);

// ------------------------------------------------ persistent sequence kernels
// One cooperative launch runs all T steps of one layer/direction. Each block
// owns a slice of hidden units (all four gates of them); its slice of W_hh
// stays in shared memory for the whole sequence. Every cell variant
// (../cell_variants.h): G = cell.gates() gate blocks, peephole weights p
// (cell.peephole_rows(), H) when the cell has them.
enum class MmaMode : int {
  kBF16 = 0,     // bf16 operands, fp32 accumulation (mma.m16n8k16)
  kF16 = 1,      // fp16 operands, fp32 accumulation (mma.m16n8k16)
  kTF32 = 2,     // fp32 storage, tf32 operands (mma.m16n8k8)
  k3xTF32 = 3,   // fp32 storage, operands split in tf32 hi+lo: fp32-level accuracy
};

// A launch shape chosen by plan_persistent (see persistent_common.cuh).
struct PersistentPlan {
  bool ok = false;
  int mode = 0;
  bool backward = false;
  int B = 0, H = 0;
  CellKind cell;
  int HS = 0;       // hidden units per block
  int blocks = 0;   // ceil(H / HS), all co-resident
  int NC = 0;       // k-chunks of the recurrent GEMM (K = H forward, G·H backward)
  int Kpad = 0;     // NC * chunk width: row stride of the padded staging buffer
  int NTC = 0;      // n-tiles (8 columns) per block
  int MT = 0;       // m-tiles (16 batch rows)
  int WM = 0, WK = 0;  // warps along m-tiles and along k (WM * WK = 8)
  int PS = 0;       // row stride (floats) of the partial-sum buffer
  size_t w_bytes = 0;     // shared memory: W slice (bytes), then
  size_t pre_floats = 0;  // the partial sums (WK · 16·MT · PS floats), then
  // per-pair fp32 state (forward: c; backward: dh, dc), then the block's
  // peephole weights and, backward, their per-pair gradient accumulators
  size_t state_floats = 0;
  size_t smem_bytes = 0;
  // The runtime error (a cudaError_t) that left no plan: a refused
  // cudaFuncSetAttribute or occupancy query; 0 when none occurred.
  int error = 0;
  // Elements of the staging buffer the caller allocates (dtype: float for the
  // TF32 modes, else the tensor's): 2 * B * Kpad.
  int64_t staging_elems() const { return int64_t(2) * B * Kpad; }
};

// Chooses the shape for (device, mode, B, H, cell), or ok = false when the kernel is
// not eligible (too large for shared memory, batch over 256, too few SMs for
// co-residency, no cooperative launch, compute capability below 8.0, or the
// kernel image missing for this device). Cached per (device, mode, B, H,
// cell); sets the kernel's dynamic shared-memory limit on the device as a
// side effect.
PersistentPlan plan_persistent(int device, MmaMode mode, bool backward, int B, int H,
                               CellKind cell = {});

// Forward over all T steps; overloads for float (kTF32/k3xTF32 plans), __half
// (kF16) and __nv_bfloat16 (kBF16). Returns cudaErrorInvalidValue when the plan
// does not match the call, or the launch's error (cudaErrorCooperativeLaunchTooLarge
// and the like: the caller falls back to the per-step path). Pointers, with T
// the storage type:
//   w_hh     (GH, H)
//   h0, c0   (B, H)
//   gates    (T, B, GH)  in: x·W_ihᵀ + b_ih + b_hh for every step; out (need_grad):
//                        the activated gates (the cell's order), as lstm_layer returns them
//   output   (T, B, H)   h_t
//   cells    (T, B, H)   c_t; written only when need_grad (may be null otherwise)
//   h_n, c_n (B, H)      states after the last step processed
//   staging  (2, B, Kpad) scratch, contents irrelevant on entry
//   peep     (rows, H)   peephole weights when plan.cell has them; else null
#define LSTM_FUSED_DECLARE_PERSISTENT_FORWARD(T)                                              \
  cudaError_t persistent_forward(const PersistentPlan& plan, cudaStream_t stream, int steps, \
                                 bool reverse, bool need_grad, const T* w_hh, const T* h0,    \
                                 const T* c0, T* gates, T* output, T* cells, T* h_n, T* c_n,  \
                                 T* staging, const T* peep);
LSTM_FUSED_DECLARE_PERSISTENT_FORWARD(float)
LSTM_FUSED_DECLARE_PERSISTENT_FORWARD(__half)
LSTM_FUSED_DECLARE_PERSISTENT_FORWARD(__nv_bfloat16)
#undef LSTM_FUSED_DECLARE_PERSISTENT_FORWARD

// Backward over all T steps (reversed processing order), no weight gradients:
// those are large GEMMs the caller runs on dgates afterwards. Same overloads and
// error convention as persistent_forward.
//   w_hh        (GH, H)
//   gates       (T, B, GH) activated gates saved by the forward
//   cells       (T, B, H)  c_t saved by the forward
//   c0          (B, H)
//   grad_output (T, B, H)  dL/dh_t from the layer's output
//   grad_hn     (B, H)     dL/dh_n
//   grad_cn     (B, H)     dL/dc_n
//   dgates      (T, B, GH) out: dL/d(pre-activations)
//   grad_h0     (B, H)     out: dL/dh0
//   grad_c0     (B, H)     out: dL/dc0
//   staging     (2, B, Kpad) scratch, contents irrelevant on entry
//   peep        (rows, H)  peephole weights when plan.cell has them; else null
//   dpeep       (B, rows, H) fp32: each row's dL/d(peephole weights) over all
//               steps added; null when not wanted (or no peepholes)
#define LSTM_FUSED_DECLARE_PERSISTENT_BACKWARD(T)                                             \
  cudaError_t persistent_backward(const PersistentPlan& plan, cudaStream_t stream, int steps, \
                                  bool reverse, const T* w_hh, const T* gates, const T* cells, \
                                  const T* c0, const T* grad_output, const T* grad_hn,         \
                                  const T* grad_cn, T* dgates, T* grad_h0, T* grad_c0,         \
                                  T* staging, const T* peep, float* dpeep);
LSTM_FUSED_DECLARE_PERSISTENT_BACKWARD(float)
LSTM_FUSED_DECLARE_PERSISTENT_BACKWARD(__half)
LSTM_FUSED_DECLARE_PERSISTENT_BACKWARD(__nv_bfloat16)
#undef LSTM_FUSED_DECLARE_PERSISTENT_BACKWARD

}  // namespace cuda
}  // namespace lstm_fused
