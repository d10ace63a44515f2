#pragma once
// Device helpers shared by the .cu files: conversions, activations, and the
// warp-level matrix instructions. CUDA headers only.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../cell_variants.h"

// Kernels declare their dynamic shared memory through this macro so that the CPU
// simulation (sim/, LSTM_FUSED_SIM) can give every simulated block its own.
#ifndef LSTM_FUSED_SIM
#define LSTM_FUSED_DYNAMIC_SMEM(type, name) extern __shared__ type name[]
#else
#define LSTM_FUSED_DYNAMIC_SMEM(type, name) \
  type* name = reinterpret_cast<type*>(::lstm_fused_sim::block_smem())
#endif

namespace lstm_fused {
namespace cuda {
namespace detail {

// Arithmetic type for a storage type: float for float/half/bfloat16, double for double.
template <typename T>
struct AccOf {
  using type = float;
};
template <>
struct AccOf<double> {
  using type = double;
};
template <typename T>
using acc_t = typename AccOf<T>::type;

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_acc(acc_t<T> v);
template <>
__device__ __forceinline__ float from_acc<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ double from_acc<double>(double v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_acc<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

template <typename T>
__device__ __forceinline__ T zero_of();
template <>
__device__ __forceinline__ float zero_of<float>() {
  return 0.f;
}
template <>
__device__ __forceinline__ __half zero_of<__half>() {
  return __ushort_as_half(static_cast<unsigned short>(0));
}
template <>
__device__ __forceinline__ __nv_bfloat16 zero_of<__nv_bfloat16>() {
  return __ushort_as_bfloat16(static_cast<unsigned short>(0));
}

// The accurate libm forms (no fast-math): fp32 results stay within a few ulp.
__device__ __forceinline__ float sigmoid_acc(float x) { return 1.f / (1.f + expf(-x)); }
__device__ __forceinline__ double sigmoid_acc(double x) { return 1.0 / (1.0 + exp(-x)); }
__device__ __forceinline__ float tanh_acc(float x) { return tanhf(x); }
__device__ __forceinline__ double tanh_acc(double x) { return tanh(x); }

// The cell's equations (../cell_variants.h) on device scalars, for every
// kernel (pointwise, fused cell, persistent). p_i, p_f, p_o: the unit's
// peephole weights, read only when Cell has them.
struct DeviceMath {
  template <typename A>
  __device__ __forceinline__ static A sigmoid(A x) { return sigmoid_acc(x); }
  template <typename A>
  __device__ __forceinline__ static A tanh(A x) { return tanh_acc(x); }
  template <typename A>
  __device__ __forceinline__ static A one_minus(A x) { return A(1) - x; }
  template <typename A>
  __device__ __forceinline__ static A ones(A) { return A(1); }
};

template <class Cell = StandardCell, typename A>
__device__ __forceinline__ CellValues<A> cell_forward(const A (&pre)[Cell::kGates], A c_prev,
                                                      A p_i = A(0), A p_f = A(0), A p_o = A(0)) {
  const A p[3] = {p_i, p_f, p_o};
  return cell_equations<Cell, DeviceMath>(pre, c_prev, p);
}

template <class Cell = StandardCell, typename A>
__device__ __forceinline__ CellGradients<A, Cell::kGates> cell_backward(
    const A (&gate)[Cell::kGates], A c, A c_prev, A dh, A dc, A p_i = A(0), A p_f = A(0),
    A p_o = A(0)) {
  const A p[3] = {p_i, p_f, p_o};
  return cell_gradients<Cell, DeviceMath>(gate, c, c_prev, dh, dc, p);
}
template <typename A>
__device__ __forceinline__ CellGradients<A, 4> cell_backward(A i, A f, A g, A o, A c, A c_prev,
                                                             A dh, A dc) {
  const A gate[4] = {i, f, g, o};
  return cell_backward<StandardCell>(gate, c, c_prev, dh, dc);
}

// Unit u's peephole weights (i, f, o) when Cell has them, read from
// (Cell::kPeepRows, stride) storage; zeros (unread) otherwise.
template <typename A>
struct Peephole {
  A i, f, o;
};
template <class Cell, typename T>
__device__ __forceinline__ Peephole<acc_t<T>> peephole_of(const T* peep, int64_t stride,
                                                         int64_t u) {
  using A = acc_t<T>;
  Peephole<A> p{A(0), A(0), A(0)};
  if constexpr (Cell::kPeephole) {
    if constexpr (Cell::kInputGate) p.i = to_acc(peep[u]);
    p.f = to_acc(peep[Cell::kPeepF * stride + u]);
    p.o = to_acc(peep[Cell::kPeepO * stride + u]);
  }
  return p;
}

// One unit's activated gates into a gate row (Cell's blocks, `stride` apart).
template <class Cell, typename T, typename A>
__device__ __forceinline__ void store_gates(T* g, int64_t stride, const CellValues<A>& s) {
  if constexpr (Cell::kInputGate) g[0] = from_acc<T>(s.i);
  g[Cell::kF * stride] = from_acc<T>(s.f);
  g[Cell::kG * stride] = from_acc<T>(s.g);
  g[Cell::kO * stride] = from_acc<T>(s.o);
}

// Raw 16-bit pattern of a half/bfloat16 value, for packing into 32-bit registers.
__device__ __forceinline__ uint32_t bits16(__half v) { return __half_as_ushort(v); }
__device__ __forceinline__ uint32_t bits16(__nv_bfloat16 v) { return __bfloat16_as_ushort(v); }
__device__ __forceinline__ uint32_t pack2(uint32_t lo, uint32_t hi) { return lo | (hi << 16); }

// ------------------------------------------------------------ tensor cores
// mma.m16n8k16 (bf16/fp16 in, fp32 accumulate), row.col. With g = lane / 4 and
// q = lane % 4, each 32-bit register holds two consecutive-k elements (lower k
// in the lower half):
//   A (16x16): a0 = (row g,   k 2q..2q+1)   a1 = (row g+8, k 2q..2q+1)
//              a2 = (row g,   k 2q+8..+9)   a3 = (row g+8, k 2q+8..+9)
//   B (16x8):  b0 = (k 2q..2q+1, col g)      b1 = (k 2q+8..+9, col g)
//   C (16x8):  c0, c1 = (row g, cols 2q, 2q+1); c2, c3 = (row g+8, cols 2q, 2q+1)
template <bool kBF16>
__device__ __forceinline__ void mma_16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                          uint32_t a3, uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (kBF16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
#elif defined(LSTM_FUSED_SIM)
  ::lstm_fused_sim::mma_16816(kBF16, d, a0, a1, a2, a3, b0, b1);
#else
  __trap();  // the host never launches tensor-core kernels below sm_80
#endif
}

// mma.m16n8k8 with tf32 operands (fp32 bit patterns with the low 13 mantissa
// bits cleared), fp32 accumulate, row.col:
//   A (16x8): a0 = (row g, k q)  a1 = (row g+8, k q)  a2 = (row g, k q+4)  a3 = (row g+8, k q+4)
//   B (8x8):  b0 = (k q, col g)  b1 = (k q+4, col g)
//   C: as for m16n8k16.
__device__ __forceinline__ void mma_1688_tf32(float (&d)[4], uint32_t a0, uint32_t a1,
                                              uint32_t a2, uint32_t a3, uint32_t b0,
                                              uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
      "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#elif defined(LSTM_FUSED_SIM)
  ::lstm_fused_sim::mma_1688_tf32(d, a0, a1, a2, a3, b0, b1);
#else
  __trap();
#endif
}

// fp32 -> tf32, round to nearest (ties away), as cuBLAS rounds its TF32 inputs.
__device__ __forceinline__ uint32_t to_tf32(uint32_t fbits) {
  uint32_t r;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(__uint_as_float(fbits)));
#else
  // The same rounding in C (CPU simulation): to nearest on the 13 dropped bits,
  // ties away from zero; Inf and NaN kept.
  r = ((fbits & 0x7f800000u) == 0x7f800000u) ? fbits : ((fbits + 0x1000u) & 0xffffe000u);
#endif
  return r;
}

// x = hi + lo with hi, lo both tf32: the 3xTF32 split (x - hi is exact in fp32).
__device__ __forceinline__ void split_tf32(uint32_t fbits, uint32_t& hi, uint32_t& lo) {
  hi = to_tf32(fbits);
  lo = to_tf32(__float_as_uint(__uint_as_float(fbits) - __uint_as_float(hi)));
}

}  // namespace detail
}  // namespace cuda
}  // namespace lstm_fused
