#pragma once
// One LSTMCell step in a single parallel region (float): each thread computes
// the pre-activations of its own hidden units, all gates, from row blocks of
// W_ih and W_hh as they are (a gate's rows for a run of units are contiguous,
// so nothing is re-laid), and applies the cell update to those units at once.
// One fork/join per step instead of three (two threaded GEMMs and the
// pointwise pass), and each thread reads only its own rows of the weights.
// The products run on the library's sequential GEMM (Products::Library) or
// as dot products along K (Products::Dot, dot_gates_cpu.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "dot_gates_cpu.h"
#include "pointwise_cpu.h"

// The Fortran BLAS GEMM that torch's x86 builds export from libtorch_cpu
// (MKL's). Weak, so that the extension still loads against a torch without
// it and the cell takes the library path instead.
extern "C" {
__attribute__((weak)) void sgemm_(const char* transa, const char* transb, const int* m,
                                  const int* n, const int* k, const float* alpha, const float* a,
                                  const int* lda, const float* b, const int* ldb,
                                  const float* beta, float* c, const int* ldc);
}

namespace lstm_fused {

struct CellStepArgs {
  int64_t B, I, H;
  const float* x;      // (B, I) rows of stride I
  const float* h;      // (B, H) rows of stride H
  const float* c;      // (B, H) c_{t-1}
  const float* w_ih;   // (KH, I) row-major, K = Cell::kGates blocks
  const float* w_hh;   // (KH, H) row-major
  const float* b_ih;   // (KH) or null
  const float* b_hh;   // (KH) or null
  const float* peep;   // (Cell::kPeepRows, H) or null
  float* gates;        // (B, KH) out: the activated gates if keep_gates (else scratch)
  bool keep_gates;
  float* c_out;        // (B, H) c_t
  float* h_out;        // (B, H) h_t
};

class CellStep {
 public:
  enum class Products { Library, Dot };

  // Units per thread's block: a whole number of vectors.
  static constexpr int64_t kUnits = 16;

  // Whether this CPU and torch build can run it on these shapes.
  static bool usable(Products p, at::ScalarType dtype, int64_t B, int64_t I, int64_t H,
                     int64_t K) {
    if (dtype != at::kFloat || B < 1 || I < 1 || H < 1) return false;
    if (p == Products::Dot) {
#if defined(CPU_CAPABILITY_AVX512)
      return true;
#else
      return false;
#endif
    }
    return sgemm_ != nullptr && K * H <= INT_MAX && I <= INT_MAX && B <= INT_MAX;
  }

  template <class Cell>
  static void run(Products p, const CellStepArgs& a) {
    constexpr int64_t K = Cell::kGates;
    const int64_t G = K * a.H, groups = (a.H + kUnits - 1) / kUnits;
    // Grain 1 with OpenMP's even split: the same thread gets the same units
    // call after call, so its rows of the weights stay in its cache. Inside
    // the parallel region the library's GEMM runs on the calling thread.
    at::parallel_for(0, groups, 1, [&](int64_t g0, int64_t g1) {
      const int64_t u0 = g0 * kUnits, u1 = std::min(a.H, g1 * kUnits);
      for (int64_t q = 0; q < K; ++q) {
        float* out = a.gates + q * a.H + u0;
        const float* wi = a.w_ih + (q * a.H + u0) * a.I;
        const float* wh = a.w_hh + (q * a.H + u0) * a.H;
        if (p == Products::Library) {
          // column-major view: out (units × B, ld G) = W rows (units × I)·xᵀ
          gemm_t(u1 - u0, a.B, a.I, wi, a.x, 0.f, out, G);
          gemm_t(u1 - u0, a.B, a.H, wh, a.h, 1.f, out, G);
        } else {
#if defined(CPU_CAPABILITY_AVX512)
          dot_gates(a.B, u1 - u0, a.I, a.H, a.x, a.h, wi, wh, out, G);
#endif
        }
      }
      for (int64_t r = 0; r < a.B; ++r) {
        const int64_t off = r * a.H;
        CpuPointwise::forward_units<Cell, float>(a.H, u0, u1, a.gates + r * G, a.keep_gates,
                                                 a.b_ih, a.b_hh,
                                                 a.c + off, a.c_out + off, a.h_out + off,
                                                 nullptr, nullptr, a.peep);
      }
    });
  }

 private:
  // c (m × n, column-major, ld ldc) = w·b + beta·c with w (m × k) given
  // row-major (ld k) and b (k × n) column-major (ld k): out rows of units,
  // columns of batch rows.
  static void gemm_t(int64_t m, int64_t n, int64_t k, const float* w, const float* b, float beta,
                     float* c, int64_t ldc) {
    const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k),
              ld = static_cast<int>(ldc);
    const float one = 1.f;
    sgemm_("T", "N", &mi, &ni, &ki, &one, w, &ki, b, &ki, &beta, c, &ld);
  }
};

}  // namespace lstm_fused
