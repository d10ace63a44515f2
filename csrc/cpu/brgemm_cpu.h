#pragma once
// The recurrent GEMM on oneDNN's brgemm micro-kernel, as ATen exports it
// (at::native::cpublas::brgemm). oneDNN generates its kernels for the CPU it
// runs on, where MKL takes slower generic paths on some vendors' CPUs. ATen
// runs 16-bit types on the micro-kernel only where the CPU has AMX
// (VNNI-packed weight, float accumulation); elsewhere it hands them to its CPU
// BLAS (MKL's 16-bit GEMM), which onednn_linear_cpu.h avoids.
//
// The weight is laid out as column blocks, kept from call to call while it
// holds the same bytes (weight_layouts_cpu.h): block j holds the
// columns cols(j) of wᵀ as a (K, width) row-major matrix (VNNI-packed for
// 16-bit types). Two orders of the columns:
//   plain:       block j = output columns [j·nb, j·nb + nb)
//   gate groups: block j = units [j·nb, j·nb + nb) of each of the K gate
//                blocks (columns q·H + j·nb + l, q < K), so that one block
//                holds all the pre-activations of nb hidden units
// Each step runs the blocks on at::parallel_for with grain 1: OpenMP's even
// split gives each thread the same blocks every step, so its slice of the
// weight stays in its own cache.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/native/CPUBlas.h>

#include <algorithm>

#include <cstdint>
#include <optional>
#include <type_traits>

#include "fused_step_cpu.h"
#include "transpose_cpu.h"
#include "vec_store_cpu.h"
#include "weight_layouts_cpu.h"

namespace lstm_fused {

// Whether brgemm runs scalar_t on this CPU, and whether it wants the weight
// VNNI-packed; probed once per type on a small product checked against
// at::mm (a CPU or build without the ukernel throws or is not offered).
struct BrgemmSupport {
  bool usable = false;
  bool vnni = false;
};
BrgemmSupport brgemm_support(at::ScalarType dtype);

template <typename scalar_t>
class BrgemmBlocks {
 public:
  // w (N, K), any strides; N = gate_blocks·H in gate groups (gate_blocks >
  // 0), plain blocks otherwise. nb: block width (units per gate in gate
  // groups, columns otherwise); must divide N (H). vnni: the weight is
  // VNNI-packed (brgemm_support).
  BrgemmBlocks(const at::Tensor& w, int64_t nb, int64_t gate_blocks, bool vnni)
      : k_(w.size(1)), width_(gate_blocks > 0 ? gate_blocks * nb : nb), blocks_(w.size(0) / width_),
        vnni_(vnni),
        packed_(kept_layout(w,
                                {nb, gate_blocks, vnni,
                                 static_cast<int64_t>(c10::CppTypeToScalarType<scalar_t>::value)},
                            [&] { return lay_out(w, nb, gate_blocks); })) {}

  int64_t blocks() const { return blocks_; }
  int64_t width() const { return width_; }

  // c (m, width) float, ld ldc = a (m, K) · block j; add: c += instead of =.
  void run(int64_t j, int64_t m, const scalar_t* a, int64_t lda, float* c, int64_t ldc,
           bool add) const {
    const scalar_t* b = packed_.data_ptr<scalar_t>() + j * k_ * width_;
    at::native::cpublas::brgemm(m, width_, k_, lda, width_, ldc, add, a, b, c, vnni_);
  }

  // As run, over rows [k0, k0 + k) of block j, a pointing at column k0 of its rows.
  void run_chunk(int64_t j, int64_t m, int64_t k0, int64_t k, const scalar_t* a, int64_t lda,
                 float* c, int64_t ldc, bool add) const {
    const scalar_t* b = packed_.data_ptr<scalar_t>() + (j * k_ + k0) * width_;
    at::native::cpublas::brgemm(m, width_, k, lda, width_, ldc, add, a, b, c, vnni_);
  }

  // After a thread's last block of a step (AMX keeps tile state per thread).
  void release() const { at::native::cpublas::brgemm_release(vnni_); }

  // Blocks that make a thread's share worth the fork: about 64K multiply-adds.
  int64_t grain(int64_t m) const {
    const int64_t per_block = std::max<int64_t>(1, m * k_ * width_);
    return std::max<int64_t>(1, (int64_t{1} << 16) / per_block);
  }

 private:
  // The blocks of w, (blocks, K, width), VNNI-packed when vnni_. A w whose
  // transpose is dense (the backward's W_hhᵀ, a view of W_hh) gives each row
  // of a block as runs of wᵀ's rows, copied as they are: transposing it to
  // dense rows first and back into blocks cost 2-3 ms at 512 x 2048 on an AMD
  // EPYC, more than 20 recurrent steps.
  at::Tensor lay_out(const at::Tensor& w, int64_t nb, int64_t gate_blocks) const {
    const auto dtype = c10::CppTypeToScalarType<scalar_t>::value;
    const at::Tensor wd = w.to(dtype);
    const bool rows_of_wt = wd.t().is_contiguous();
    const at::Tensor wt = rows_of_wt ? wd : wd.contiguous();
    at::Tensor laid = at::empty({blocks_, k_, width_}, wt.options());
    const scalar_t* src = wt.const_data_ptr<scalar_t>();
    scalar_t* dst = laid.mutable_data_ptr<scalar_t>();
    const int64_t K = k_, N = w.size(0), width = width_, parts = gate_blocks > 0 ? gate_blocks : 1;
    at::parallel_for(0, blocks_, 1, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) {
        // gate groups: w rows q·H + j·nb + l -> block j, columns q·nb + l
        // (H = blocks·nb); plain: rows j·nb + l -> block j, column l
        for (int64_t q = 0; q < parts; ++q) {
          const int64_t row = q * blocks_ * nb + j * nb;
          scalar_t* to = dst + j * K * width + q * nb;
          if (rows_of_wt) {
            for (int64_t k = 0; k < K; ++k) std::copy_n(src + k * N + row, nb, to + k * width);
          } else {
            transpose_into(src + row * K, K, to, width, nb, K);
          }
        }
      }
    });
    if (!vnni_) return laid;
    at::Tensor packed = at::empty_like(laid);
    for (int64_t j = 0; j < blocks_; ++j) {
      at::native::cpublas::pack(k_, width_, width_, width_, dtype, dtype, laid[j].data_ptr(),
                                packed[j].data_ptr());
    }
    return packed;
  }

  int64_t k_, width_, blocks_;
  bool vnni_;
  at::Tensor packed_;
};

// The widest block of at most 64 columns that divides n and is a multiple of
// the float vector width (0: none).
inline int64_t brgemm_block(int64_t n) {
  for (int64_t nb : {64, 32, 16}) {
    if (n % nb == 0) return nb;
  }
  return 0;
}

// Whether brgemm runs c = a · wᵀ for w (N, K) of dtype: N in blocks of 16
// columns or more, and K even for VNNI-packed types (an odd K aborts the
// packing).
inline bool brgemm_usable(at::ScalarType dtype, int64_t N, int64_t K) {
  const auto s = brgemm_support(dtype);
  return s.usable && brgemm_block(N) > 0 && K > 0 && (!s.vnni || K % 2 == 0);
}

// The GEMM-only engine: c[:n] (+)= a[:n] · wᵀ on plain column blocks, for
// the backward's dh, projected layers and the unfused forward. float writes
// (or accumulates) straight into the caller's rows; 16-bit types accumulate a
// block in float and round once when stored.
template <typename scalar_t>
class BrgemmStepGemm {
 public:
  // w (N, K), any strides; batch: the rows of the whole batch.
  BrgemmStepGemm(const at::Tensor& w, int64_t batch)
      : blocks_(w, brgemm_block(w.size(0)), 0, brgemm_support(w.scalar_type()).vnni), batch_(batch) {
    if constexpr (!std::is_same_v<scalar_t, float>) {
      scratch_ = at::empty({at::get_num_threads(), batch, blocks_.width()},
                           w.options().dtype(at::kFloat));
    }
  }

  // c (rows, N), a (rows, K): unit stride along a row; rows [0, n) are used.
  void accumulate(const at::Tensor& c, const at::Tensor& a, int64_t n) const { run(c, a, n, true); }
  void product(const at::Tensor& c, const at::Tensor& a, int64_t n) const { run(c, a, n, false); }

  // Column blocks, each width() columns wide, for callers that split the
  // product themselves (fused_backward_cpu.h).
  int64_t blocks() const { return blocks_.blocks(); }
  int64_t width() const { return blocks_.width(); }
  int64_t grain(int64_t n) const { return blocks_.grain(n); }
  void release() const { blocks_.release(); }

  // Columns of block j: c[:n, j·width, (j+1)·width) (+)= a[:n] · wᵀ, on the
  // calling thread; c and a with row strides ldc and lda.
  void run_block(int64_t j, int64_t n, const scalar_t* a, int64_t lda, scalar_t* c, int64_t ldc,
                 bool add) const {
    const int64_t nb = blocks_.width();
    if constexpr (std::is_same_v<scalar_t, float>) {
      blocks_.run(j, n, a, lda, c + j * nb, ldc, add);
    } else {
      float* s = scratch_.data_ptr<float>() + at::get_thread_num() * batch_ * nb;
      blocks_.run(j, n, a, lda, s, nb, false);
      for (int64_t r = 0; r < n; ++r) store_row(s + r * nb, c + r * ldc + j * nb, nb, add);
    }
  }

 private:
  void run(const at::Tensor& c, const at::Tensor& a, int64_t n, bool add) const {
    if (n == 0) return;
    TORCH_CHECK(c.stride(1) == 1 && a.stride(1) == 1 && n <= batch_,
                "lstm_fused: oneDNN step operands must have dense rows");
    const scalar_t* ap = a.data_ptr<scalar_t>();
    scalar_t* cp = c.data_ptr<scalar_t>();
    const int64_t lda = a.stride(0), ldc = c.stride(0);
    at::parallel_for(0, blocks_.blocks(), blocks_.grain(n), [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) run_block(j, n, ap, lda, cp, ldc, add);
      blocks_.release();
    });
  }

  // dst[0, w) (+)= src[0, w), rounded once to scalar_t; w is a multiple of 16.
  static void store_row(const float* src, scalar_t* dst, int64_t w, bool add) {
    using V = at::vec::Vectorized<float>;
    for (int64_t u = 0; u < w; u += V::size()) {
      V v = V::loadu(src + u);
      if (add) {
        V d;
        at::vec::load_to_float<scalar_t>(dst + u, d);
        v = v + d;
      }
      store_rounded(v, dst + u);
    }
  }

  BrgemmBlocks<scalar_t> blocks_;
  int64_t batch_;
  at::Tensor scratch_;
};

// The fused forward step: each group's product and the cell update of its
// units in one pass, while the group's pre-activations are still in L1; no
// separate pointwise pass, one fork-join per step. Same interface as
// SmallBatchStep::step, any of the engine's types.
//
// A group is up to 64 hidden units (several brgemm blocks: VNNI packing takes
// at most 64 columns, 16 units of 4 gates), so that each row of the cell
// update reads and writes whole cache lines of the gate, c and h rows; the
// next row's lines are prefetched (rows are KH elements apart, a page or more
// at H >= 512, where the hardware prefetchers stop).
template <class Activations, typename scalar_t>
class BrgemmFusedStep {
 public:
  static bool usable(int64_t K, int64_t H, bool proj, at::ScalarType dtype) {
    // groups of whole brgemm blocks of units: H a multiple of 16
    return !proj && brgemm_block(H) > 0 && brgemm_usable(dtype, K * H, H);
  }

  // w_hh (KH, H), any strides, K gate blocks; batch: the rows of the whole batch.
  BrgemmFusedStep(const at::Tensor& w_hh, int64_t batch)
      : H_(w_hh.size(1)),
        K_(w_hh.size(0) / H_),
        group_(brgemm_block(H_)),
        nb_(block_width(w_hh.scalar_type(), H_, group_)),
        batch_(batch),
        blocks_(w_hh, nb_, K_, brgemm_support(w_hh.scalar_type()).vnni),
        scratch_(at::empty({at::get_num_threads(), 1, batch, K_ * group_},
                           w_hh.options().dtype(at::kFloat))) {}

  // Whether the steps can compute x_t·W_ihᵀ too (FusedStepArgs::x), for
  // w_ih (KH, I); attach_input lays its blocks out, after which steps given
  // x do. The product of x_t goes first into the float block that h_{t-1}'s
  // then accumulates to, where the gates buffer held it before.
  bool can_attach_input(const at::Tensor& w_ih) const {
    return w_ih.dim() == 2 && w_ih.size(0) == K_ * H_ &&
           brgemm_usable(w_ih.scalar_type(), K_ * H_, w_ih.size(1));
  }
  bool input_attached() const { return ih_.has_value(); }
  void attach_input(const at::Tensor& w_ih) {
    TORCH_CHECK(can_attach_input(w_ih), "lstm_fused: the fused oneDNN step cannot take this W_ih");
    I_ = w_ih.size(1);
    ih_.emplace(w_ih, nb_, K_, brgemm_support(w_ih.scalar_type()).vnni);
    // a float block per group, so that a thread can compute the next step's
    // x_t·W_ihᵀ for all its groups before h_{t-1} is there (prepare_parts)
    scratch_ = at::empty({at::get_num_threads(), parts(), batch_, K_ * group_},
                         scratch_.options());
  }

  // The fused step engine interface of fused_step_cpu.h; a part is a group.
  int64_t parts() const { return H_ / group_; }
  int64_t grain(int64_t n) const { return std::max<int64_t>(1, blocks_.grain(n) / (group_ / nb_)); }
  void end_parts() const { blocks_.release(); }

  template <class Cell>
  void check() const {
    TORCH_CHECK(Cell::kGates == K_, "lstm_fused: fused oneDNN step built for another cell");
  }

  template <class Cell>
  void step(int64_t n, const FusedStepArgs<scalar_t>& a) const {
    if (n == 0) return;
    check<Cell>();
    at::parallel_for(0, parts(), grain(n), [&](int64_t j0, int64_t j1) {
      prepare_parts<Cell>(n, a, j0, j1);
      run_parts<Cell>(n, a, j0, j1);
      end_parts();
    });
  }

  // Given x: x_t·W_ihᵀ for groups [j0, j1), each into its float block.
  template <class Cell>
  void prepare_parts(int64_t n, const FusedStepArgs<scalar_t>& a, int64_t j0, int64_t j1) const {
    if (!a.x) return;
    const int64_t subs = group_ / nb_, w = K_ * group_;
    for (int64_t j = j0; j < j1; ++j) {
      float* s = block(n, a, j - j0);
      for (int64_t k = 0; k < subs; ++k) ih_->run(j * subs + k, n, a.x, I_, s + k * K_ * nb_, w, false);
    }
  }

  template <class Cell>
  void run_parts(int64_t n, const FusedStepArgs<scalar_t>& a, int64_t j0, int64_t j1) const {
    using V = typename Activations::template MathVec<scalar_t>;
    constexpr int K = Cell::kGates;
    const int64_t H = H_, G = K * H_, nb = nb_, subs = group_ / nb_, w = K * group_;
    constexpr int64_t kLine = 64 / sizeof(scalar_t);
    scalar_t* const gates = a.gates;
    scalar_t* const c = a.c;
    for (int64_t j = j0; j < j1; ++j) {
      float* s = block(n, a, j - j0);
      // block k of the group: its K gates × nb units at columns k·K·nb of s
      for (int64_t k = 0; k < subs; ++k) {
        blocks_.run(j * subs + k, n, a.h_prev, H, s + k * K * nb, w, a.x != nullptr);
      }
      const int64_t u0 = j * group_;
      for (int64_t r = 0; r < n; ++r) {
        if (r + 1 < n) {
          for (int64_t l = 0; l < group_; l += kLine) {
            if (!a.x) {
              for (int q = 0; q < K; ++q) __builtin_prefetch(gates + (r + 1) * G + q * H + u0 + l);
            }
            __builtin_prefetch(c + (r + 1) * H + u0 + l);
          }
        }
        for (int64_t v = 0; v < group_; v += V::size()) {
          const int64_t u = u0 + v, off = r * H + u;
          const float* sv = s + r * w + (v / nb) * K * nb + v % nb;
          scalar_t* g = gates ? gates + r * G + u : nullptr;
          V pre[K];
          for (int q = 0; q < K; ++q) {
            pre[q] = V::loadu(sv + q * nb);
            if (!a.x) pre[q] = pre[q] + Activations::vload(g + q * H);
            if (a.bias) pre[q] = pre[q] + Activations::vload(a.bias + q * H + u);
          }
          Activations::template cell_update<Cell>(
              H, pre, a.keep_gates ? g : nullptr, c + off, c + off, a.h_out + off,
              a.h_copy ? a.h_copy + off : nullptr, a.c_copy ? a.c_copy + off : nullptr,
              a.peep ? a.peep + u : nullptr);
        }
      }
    }
  }

 private:
  // The calling thread's float block for its i-th group of a step, (batch, K·group);
  // one block for all its groups when the step is not given x.
  float* block(int64_t n, const FusedStepArgs<scalar_t>& a, int64_t i) const {
    TORCH_INTERNAL_ASSERT_DEBUG_ONLY(n <= batch_ && (!a.x || i < parts()));
    const int64_t size = batch_ * K_ * group_;
    return scratch_.data_ptr<float>() +
           (at::get_thread_num() * scratch_.size(1) + (a.x ? i : 0)) * size;
  }

  // Columns per brgemm block within a group: VNNI packing takes 16. float
  // takes 32 up to H = 512 and 16 from H = 1024 on, where h's rows (the
  // product's K) are 4 KiB or longer: AMD EPYC, 2 threads, the recurrence
  // alone (I = 16) at H = 1024, B = 4, 8, 16, 32, 64: 15-28% faster on 16
  // than on 32 or 64, at H = 2048, B = 16: 28%; one thread, (16, 1024): 29%;
  // at H = 256 and 512 the widths ran within 1-4% of each other
  // (bench/NOTES.md v21).
  static int64_t block_width(at::ScalarType dtype, int64_t H, int64_t group) {
    if (brgemm_support(dtype).vnni || H >= 1024) return std::min<int64_t>(group, 16);
    return std::min<int64_t>(group, 32);
  }

  int64_t H_, K_, group_, nb_, batch_, I_ = 0;
  BrgemmBlocks<scalar_t> blocks_;
  std::optional<BrgemmBlocks<scalar_t>> ih_;  // W_ih's blocks, once attached
  at::Tensor scratch_;
};

}  // namespace lstm_fused
