#pragma once
// What the fused forward step engines (SmallBatchStep, BrgemmFusedStep) share:
// the arguments of one step, and the whole recurrence of a layer in one
// parallel region.
//
// An engine splits a step into independent parts (groups of hidden units):
//   int64_t parts() const                 parts of a step
//   int64_t grain(int64_t n) const        parts that make a thread's share worth a thread
//   void prepare_parts<Cell>(n, args, p0, p1)  the work of parts [p0, p1) of a
//                                         step that does not read h_{t-1} (may be none)
//   void run_parts<Cell>(n, args, p0, p1) the rest of parts [p0, p1) of one step,
//                                         on the thread that prepared them
//   void end_parts() const                after a thread's last parts of a region
//   void check<Cell>() const              throws unless the engine was built for Cell
// prepare_parts and run_parts must not throw: in fused_sequence the other threads would wait for
// it at the barrier.
// Its step() runs all parts of one step on at::parallel_for: a fork and a join
// per step (1.6 µs with 2 threads on the Xeon of bench/NOTES.md v12, against
// 0.11 µs for a spin barrier).
#include <ATen/Config.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>

#include "engine_cpu.h"

namespace lstm_fused {

// One step for rows [0, n):
//   h_prev   (n, H)   h_{t-1}; must not alias any output
//   gates    (n, KH)  in: x_t·W_ihᵀ (Cell's gate blocks); out: activated gates if keep_gates
//   bias     (KH)     b_ih + b_hh; may be null
//   c        (n, H)   in: c_{t-1}; out: c_t
//   h_out    (n, H)   h_t
//   h_copy   (n, H)   second destination of h_t; may be null
//   c_copy   (n, H)   second destination of c_t; may be null
//   peep     (rows, H) Cell's peephole weights; null without
//   x        (n, I)   x_t, for an engine that computes x_t·W_ihᵀ itself
//                     (attach_input); gates is then out only (null when not
//                     keep_gates). Null: gates holds x_t·W_ihᵀ.
template <typename scalar_t>
struct FusedStepArgs {
  const scalar_t* h_prev;
  scalar_t* gates;
  const scalar_t* bias;
  scalar_t* c;
  scalar_t* h_out;
  scalar_t* h_copy;
  scalar_t* c_copy;
  bool keep_gates;
  const scalar_t* peep;
  const scalar_t* x = nullptr;
};

// Counts shares of the workers rather than threads: every share of [0,
// workers) arrives once per step however OpenMP split the range, so a team
// smaller than asked for (or a call from inside a parallel region, which runs
// the whole range on one thread) cannot wait for a thread that is not there.
class StepBarrier {
 public:
  explicit StepBarrier(int64_t workers) : workers_(workers) {}

  // After a step: the shares' writes of this step are seen by every share
  // that returns. The last share to arrive opens the next generation.
  void arrive_and_wait(int64_t share) { wait(arrive(share)); }

  // arrive and wait split, so that a share can work between them on what
  // does not need the other shares' writes; arrive returns the ticket to wait on.
  int32_t arrive(int64_t share) {
    const int32_t generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(share, std::memory_order_acq_rel) + share == workers_) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_acq_rel);
      generation_.notify_all();
    }
    return generation;
  }

  void wait(int32_t generation) {
    if (generation_.load(std::memory_order_acquire) != generation) return;
    // A step's threads arrive within a few µs of each other; later than that,
    // the late one is likely waiting for a core (other processes, concurrent
    // callers), and spinning would keep a core from it: sleep on the word.
    // The spin is bounded in time, not in PAUSEs (their cost differs between
    // CPUs): 256 of them, 6.6 µs on an AMD EPYC, let threads sleep and wait
    // for a wake-up at many steps; 100 µs cut a (32, 256) float step there
    // from ~143 to ~124 µs (bench/NOTES.md v17).
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
      for (int spins = 0; spins < 16; ++spins) {
        if (generation_.load(std::memory_order_acquire) != generation) return;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      }
      if (std::chrono::steady_clock::now() - start > kSpinTime) break;
    }
    while (generation_.load(std::memory_order_acquire) == generation) {
      generation_.wait(generation, std::memory_order_acquire);
    }
  }

 private:
  static constexpr std::chrono::microseconds kSpinTime{100};
  alignas(64) std::atomic<int64_t> arrived_{0};
  alignas(64) std::atomic<int32_t> generation_{0};
  int64_t workers_;
};

// Whether a sequence may run in one region: OpenMP runs the threads of a team
// side by side, which the barrier needs (ATen's native pool may run the
// chunks one after another); with more threads than CPUs, the barrier would
// wait for threads that have no core, where OpenMP's own barrier sleeps
// sooner.
inline bool one_region_allowed() {
  return AT_PARALLEL_OPENMP && at::get_num_threads() <= available_cpus();
}

// A worker's side of the StepBarrier: sync() returns once every worker has
// called it for the same step; arrive() and wait(ticket) are its two halves.
class StepSync {
 public:
  StepSync(StepBarrier& barrier, int64_t share) : barrier_(barrier), share_(share) {}
  void operator()() const { barrier_.arrive_and_wait(share_); }
  int32_t arrive() const { return barrier_.arrive(share_); }
  void wait(int32_t ticket) const { barrier_.wait(ticket); }

 private:
  StepBarrier& barrier_;
  int64_t share_;
};

// worker(p0, p1, sync) for each worker's parts [p0, p1) of `parts`, all in
// one parallel region, sync a StepSync. At most one worker per grain parts.
template <class Worker>
void run_in_one_region(int64_t parts, int64_t grain, Worker&& worker) {
  grain = std::max<int64_t>(1, grain);
  const int64_t workers =
      std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), (parts + grain - 1) / grain));
  StepBarrier barrier(workers);
  at::parallel_for(0, workers, 1, [&](int64_t w0, int64_t w1) {
    worker(w0 * parts / workers, w1 * parts / workers, StepSync(barrier, w1 - w0));
  });
}

// The steps s = 0..T-1 of a layer whose n rows all run at every step, over
// time t = s (t = T-1-s when reverse); each worker keeps the same parts (and
// so its slice of W_hh in its cache) for the whole sequence.
//   h0     (n, H)      h_{-1}
//   gates  (T, n, KH)  as FusedStepArgs::gates, per step (null: given x and
//                      not keep_gates)
//   c      (n, H)      in: c0; out: c_T
//   h      (n, H)      out: h_T
//   out    (T, n, H)   h_t of every step
//   cells  (T, n, H)   c_t of every step; may be null
//   x      (T, n, I)   the input, for an engine with an attached W_ih
//                      (FusedStepArgs::x); null: gates holds x_t·W_ihᵀ
// counted: in cpu_sequence_counts when in one region (not when only timed).
template <class Cell, typename scalar_t, class Engine>
void fused_sequence(const Engine& f, int64_t T, int64_t n, int64_t H, bool reverse,
                    const scalar_t* h0, scalar_t* gates, const scalar_t* bias, scalar_t* c,
                    scalar_t* h, scalar_t* out, scalar_t* cells, bool keep_gates,
                    const scalar_t* peep, const scalar_t* x = nullptr, int64_t I = 0,
                    bool counted = true) {
  f.template check<Cell>();
  if (T == 0 || n == 0) return;
  const int64_t G = Cell::kGates * H, nH = n * H;
  auto args = [&](int64_t s) {
    const int64_t t = reverse ? T - 1 - s : s, tp = reverse ? t + 1 : t - 1;
    // h_t goes to out, which the next step reads; h (h_T) only at the last step
    return FusedStepArgs<scalar_t>{s == 0 ? h0 : out + tp * nH, gates ? gates + t * n * G : nullptr, bias, c,
                                   out + t * nH, s + 1 == T ? h : nullptr,
                                   cells ? cells + t * nH : nullptr, keep_gates, peep,
                                   x ? x + t * n * I : nullptr};
  };
  if (!one_region_allowed()) {
    for (int64_t s = 0; s < T; ++s) f.template step<Cell>(n, args(s));
    return;
  }
  if (counted) count_cpu_sequence(/*backward=*/false);
  run_in_one_region(f.parts(), f.grain(n), [&](int64_t p0, int64_t p1, auto&& sync) {
    // The next step's preparation fills the wait for the other workers.
    f.template prepare_parts<Cell>(n, args(0), p0, p1);
    for (int64_t s = 0; s < T; ++s) {
      f.template run_parts<Cell>(n, args(s), p0, p1);
      if (s + 1 < T) {
        const int32_t ticket = sync.arrive();
        f.template prepare_parts<Cell>(n, args(s + 1), p0, p1);
        sync.wait(ticket);
      }
    }
    f.end_parts();
  });
}

}  // namespace lstm_fused
