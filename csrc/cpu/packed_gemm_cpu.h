#pragma once
// The recurrent GEMM of the CPU layer loop on MKL's packed-weight GEMM
// (cblas_sgemm_pack / cblas_sgemm_compute): the weight is packed once per
// sequence instead of being repacked by every step's GEMM (~20% faster per
// step at B = 8..64 on AVX-512 machines), and each step writes or accumulates
// (beta = 1) straight into the caller's rows, with no temporary and no extra
// pass. bfloat16 and float16 run on a float copy of the weight: their products
// are exact in float and the sums accumulate in float, as a 16-bit GEMM
// accumulates, and the library's 16-bit GEMM repacks the weight every step
// (~6x slower at B = 8). Torch builds that do not export MKL, and float64, use
// the library GEMM on a contiguous wᵀ.
#include <ATen/ATen.h>

#include <cstddef>
#include <optional>

#include "engine_cpu.h"
#include "library_gemm_cpu.h"

// MKL's packed-GEMM API with 32-bit integers (LP64), which torch's x86 builds
// export from libtorch_cpu. Weak, so that the extension still loads against a
// torch without them and takes the library GEMM instead.
extern "C" {
__attribute__((weak)) size_t cblas_sgemm_pack_get_size(int identifier, int m, int n, int k);
__attribute__((weak)) void cblas_sgemm_pack(int layout, int identifier, int trans, int m, int n,
                                            int k, float alpha, const float* src, int ld,
                                            float* dest);
__attribute__((weak)) void cblas_sgemm_compute(int layout, int transa, int transb, int m, int n,
                                               int k, const float* a, int lda, const float* b,
                                               int ldb, float beta, float* c, int ldc);
}

namespace lstm_fused {

class PackedStepGemm {
 public:
  // w (N, K) with either row-major or column-major strides (a transposed view
  // of a contiguous matrix packs without a copy); batch: the rows of the whole
  // batch, a hint for the packing.
  PackedStepGemm(const at::Tensor& w, int64_t batch, int64_t steps)
      : w_(w), n_(w.size(0)), k_(w.size(1)), batch_(batch), steps_(steps) {
    const auto dtype = w.scalar_type();
    if (!available() || steps * batch < kMinPreparedRows || batch <= 0 || n_ == 0 || k_ == 0 ||
        (dtype != at::kFloat && dtype != at::kBFloat16 && dtype != at::kHalf)) {
      return;
    }
    // The float weight that is packed; .to() keeps a transposed view's strides.
    const at::Tensor wf = dtype == at::kFloat ? w : w.to(at::kFloat);
    // op(B) = wᵀ (K, N). Row-major w (N, K) is B stored transposed; a w whose
    // transpose is contiguous is B itself.
    const bool row_major = wf.stride(1) == 1 && wf.stride(0) == k_;
    const bool col_major = wf.stride(0) == 1 && wf.stride(1) == n_;
    const at::Tensor src = row_major || col_major ? wf : wf.contiguous();
    const bool trans = !col_major || row_major;
    const auto bytes = cblas_sgemm_pack_get_size(kBMatrix, int(batch), int(n_), int(k_));
    packed_ = at::empty({static_cast<int64_t>(bytes)}, w.options().dtype(at::kByte));
    cblas_sgemm_pack(kRowMajor, kBMatrix, trans ? kTrans : kNoTrans, int(batch), int(n_), int(k_),
                     1.0f, src.data_ptr<float>(), trans ? int(k_) : int(n_),
                     reinterpret_cast<float*>(packed_.data_ptr()));
    if (dtype != at::kFloat) {
      // The float rows of 16-bit steps, allocated once for the whole sequence.
      a_f_ = at::empty({batch, k_}, wf.options());
      c_f_ = at::empty({batch, n_}, wf.options());
    }
  }

  // g[:n] (N wide) += h[:n] (K wide) · wᵀ; g and h hold the whole batch.
  void accumulate(const at::Tensor& g, const at::Tensor& h, int64_t n) { run(g, h, n, 1.0f); }

  // out[:n] = h[:n] · wᵀ; out's other rows are left as they are.
  void product(const at::Tensor& out, const at::Tensor& h, int64_t n) { run(out, h, n, 0.0f); }

  // Whether this torch exports MKL's packed GEMM.
  static bool available() {
    return cblas_sgemm_pack_get_size != nullptr && cblas_sgemm_pack != nullptr &&
           cblas_sgemm_compute != nullptr;
  }

 private:
  static constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112, kPacked = 151,
                       kBMatrix = 162;

  static bool rows_dense(const at::Tensor& t) { return t.dim() == 2 && t.stride(1) == 1; }

  void compute(float* c, int64_t ldc, const float* a, int64_t lda, int64_t n, float beta) const {
    cblas_sgemm_compute(kRowMajor, kNoTrans, kPacked, int(n), int(n_), int(k_), a, int(lda),
                        reinterpret_cast<const float*>(packed_.data_ptr()), 0, beta, c, int(ldc));
  }

  void run(const at::Tensor& c, const at::Tensor& a, int64_t n, float beta) {
    if (n == 0) return;
    if (packed_.defined() && c.scalar_type() == at::kFloat && rows_dense(c) && rows_dense(a)) {
      compute(c.data_ptr<float>(), c.stride(0), a.data_ptr<float>(), a.stride(0), n, beta);
      return;
    }
    if (packed_.defined() && c.scalar_type() != at::kFloat) {
      // 16-bit rows: float in, float out, one rounding when stored.
      auto af = a_f_.narrow(0, 0, n);
      af.copy_(a.narrow(0, 0, n));
      const auto cf = c_f_.narrow(0, 0, n);
      compute(cf.data_ptr<float>(), n_, af.data_ptr<float>(), k_, n, 0.0f);
      auto cn = c.narrow(0, 0, n);
      if (beta == 0.0f) {
        cn.copy_(cf);
      } else {
        cn.add_(cf);
      }
      return;
    }
    // Built on first use: most calls never need it.
    if (!library_) library_.emplace(w_, batch_, steps_);
    if (beta == 0.0f) {
      library_->product(c, a, n);
    } else {
      library_->accumulate(c, a, n);
    }
  }

  at::Tensor w_, packed_, a_f_, c_f_;
  int64_t n_, k_, batch_, steps_;
  std::optional<LibraryStepGemm> library_;
};

}  // namespace lstm_fused
