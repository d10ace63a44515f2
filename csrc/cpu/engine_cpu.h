#pragma once
// The CPU engines of the recurrence and how one is chosen.
//
//   mkl          MKL's packed GEMM per step, then the vectorised pointwise pass
//   onednn       oneDNN's brgemm micro-kernel per step (16-bit types native);
//                in the forward of a layer without projection, fused with the
//                cell update (brgemm_cpu.h)
//   aten         the library GEMM (torch.mm) per step, then the pointwise pass
//   small_batch  the hand-written fused step for the smallest layers: float,
//                and bfloat16 on AVX512_BF16 (small_batch_cpu.h)
//   onednn_linear  oneDNN's packed matmul per step (torch's mkldnn linear ops),
//                then the pointwise pass; 16-bit types natively on every CPU
//                with 16-bit dot products (onednn_linear_cpu.h)
// An LSTMCell step has its own mkl, small_batch and aten (cell_cpu.cpp).
//
// Choice, per (direction, dtype, B, N, K, threads, projection): a pinned
// engine (lstm_fused.set_cpu_engine / LSTM_FUSED_CPU_ENGINE) when it can run
// the call; under torch.use_deterministic_algorithms(True), a fixed order;
// otherwise each engine that can run the call is timed on it, a few steps
// each, on the first call of its kind in the process, and the fastest is
// kept. Calls with fewer than kMinPreparedRows rows in all (T·B) take aten:
// preparing a weight costs more than it saves there.
#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace lstm_fused {

enum class CpuEngine : int { Auto = 0, Mkl, Onednn, Aten, SmallBatch, OnednnLinear, kCount };

inline constexpr std::array<const char*, static_cast<int>(CpuEngine::kCount)> kCpuEngineNames = {
    "auto", "mkl", "onednn", "aten", "small_batch", "onednn_linear"};

// Rows (T·B) below which a call runs on aten unless an engine is pinned.
// Preparing (packing, re-laying) a weight costs ~0.1-0.25 ms whatever the
// batch; a prepared step saves more the more rows it has. Measured
// break-even, T steps of B rows: T ~ 32 at B = 1, T ~ 4 at B = 8, T = 1 at
// B = 64.
inline constexpr int64_t kMinPreparedRows = 64;

// Whether the CPU multiplies `t` (bfloat16 or float16) natively: AMX or
// AVX-512's BF16/FP16 dot products, as torch's CPU detection (cpuinfo)
// reports them.
bool cpu_has_16bit_dot(at::ScalarType t);
// Whether the CPU has AVX-512's bfloat16 dot products (AVX512_BF16), which
// code of its own can issue (AMX needs tile set-up).
bool cpu_has_avx512_bf16();

CpuEngine pinned_cpu_engine();
void set_pinned_cpu_engine(CpuEngine e);

// Layer and cell calls each engine has run since the process started.
void count_cpu_engine(CpuEngine e);
// Large GEMMs (large_gemm_cpu.h) each engine has run.
void count_cpu_large_gemm(CpuEngine e);
// Layer calls whose fused forward (fused_sequence) or backward sweep
// (fused_backward_sequence) ran all its steps in one parallel region.
void count_cpu_sequence(bool backward);
// CPUs this process may run on.
int64_t available_cpus();

// What is timed: a forward step, the product alone (the backward's), a
// large GEMM (the input projection, the gradients: mkl or onednn as the
// library, large_gemm_cpu.h), or an LSTMCell step (cell_cpu.cpp).
enum class EngineUse : int { ForwardStep = 0, Product = 1, LargeGemm = 2, CellStep = 3 };

// What a choice is keyed by: the use, the weight's type and shape (N, K),
// the batch (rows; for a large GEMM its class, a power of two).
struct EngineKey {
  EngineUse use;
  at::ScalarType dtype;
  int64_t B, N, K;
  bool proj;
};

// The engine among `engines` (those that can run the call, in the fixed
// order used under deterministic algorithms) when it is settled without
// timing: the only one, the pinned one, the first under deterministic
// algorithms, or the one timed before for the same key.
std::optional<CpuEngine> settled_cpu_engine(const EngineKey& key,
                                            const std::vector<CpuEngine>& engines);

// A call to time, and how many times a round runs it (the last one timed).
struct TimedRun {
  std::function<void()> fn;
  int repeats = 1;
};
// The median time of each run's timed call over alternating rounds: after
// `warmup` untimed ones, at least `min_rounds`, more (up to 25) while they
// add up to less than ~4 ms.
std::vector<double> median_seconds(const std::vector<TimedRun>& runs, int warmup = 2,
                                   int min_rounds = 5);

// Times each candidate (the last of `repeats` calls in a row, alternating
// between candidates), remembers the fastest for `key` and returns it.
CpuEngine timed_cpu_engine(const EngineKey& key,
                           const std::vector<std::pair<CpuEngine, std::function<void()>>>& candidates,
                           int repeats = 1);

}  // namespace lstm_fused
