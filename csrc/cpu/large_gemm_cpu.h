#pragma once
// The large GEMMs of a layer (the input projection before the loop; dx, dW_ih
// and dW_hh after it) on the faster of two libraries for this CPU:
//   mkl     torch.mm on float operands (MKL's sgemm; 16-bit operands
//           converted to float first)
//   onednn  oneDNN's matmul, as ATen runs it (16-bit types natively)
// On an Intel Xeon the two run float within ~10% of each other; MKL takes
// slower paths on other vendors' CPUs, where oneDNN generates its kernels
// for the CPU it finds. Chosen per (dtype, rows class, N, K) like the step
// engines (engine_cpu.h): pinned, fixed under deterministic algorithms (mkl
// for float, onednn for 16-bit types the CPU multiplies natively), else
// timed once on the call's first rows.
#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace lstm_fused {

// out (M, N) = a (M, K) · b (K, N); out dense, a and b any strides; float,
// bfloat16 or float16 on the chosen library, or double (always on torch.mm).
// A float product whose b is dense, with a's rows dense (dx = dgates · W_ih)
// or a stored transposed (dW = dgatesᵀ · x, transposed first), may also run
// as oneDNN's brgemm over b's column blocks, laid out in the call, timed once
// per (rows class, N, K, threads) against the library (AMD EPYC, 2 threads,
// 800 x 2048 · 2048 x 512: 7.8-8.8 against 8.8-9.4 ms; bench/NOTES.md v20)
// and counted as onednn.
// counted: in cpu_large_gemm_counts (not when only timed).
void large_mm_out_cpu(at::Tensor& out, const at::Tensor& a, const at::Tensor& b,
                      bool counted = true);

// out (M, N) = x (M, K) · wᵀ for a weight w (N, K), the layer's input
// projection before its loop. weight_kept: w is expected unchanged on the
// next call (an inference), so its micro-kernel layout is worth keeping
// (weight_layouts_cpu.h): then a float product may also run as oneDNN's
// brgemm over w's kept column blocks, timed once per (rows class, N, K,
// threads) against the library (AMD EPYC, (800 x 512)·(512 x 2048):
// 8.2 against 9.0-9.5 ms on 2 threads; bench/NOTES.md v19), and counted as
// onednn. Pinned engines and deterministic algorithms keep the library.
void projection_out_cpu(at::Tensor& out, const at::Tensor& x, const at::Tensor& w,
                        bool weight_kept, bool counted = true);

// The timed choices between the library and the blocks, one line each; and
// forgetting them.
std::vector<std::string> block_choices();
void clear_block_choices();

// Whether oneDNN's matmul runs `dtype` on this CPU: a probe product per
// type, once (float16 needs AVX512_FP16 or AVX_NE_CONVERT).
bool onednn_matmul_usable(at::ScalarType dtype);

}  // namespace lstm_fused
