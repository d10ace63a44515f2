// The fastest a recurrence can stream its recurrent weights: every dependent
// step reads all of W_hh (registers hold a few KiB of it), from whichever
// cache level holds it, then waits for the other threads. The bench's floor
// (lstm_fused/bench/floor.py) takes this time per step beside the flops at
// the GEMM rate: at one batch row a step does 2 flops per weight it reads,
// and the cache's rate, not the GEMM's, bounds it.
#include "engine_cpu.h"
#include "fused_step_cpu.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <vector>

namespace lstm_fused {
namespace {

using Vec = at::vec::Vectorized<float>;
constexpr int64_t kAcc = 8;  // independent sums: the adds' latency stays hidden

// Sum of p[0, n): the reads of a step, in vectors, kAcc at a time.
float read_all(const float* p, int64_t n) {
  Vec acc[kAcc];
  for (auto& a : acc) a = Vec(0.f);
  constexpr int64_t kRun = kAcc * Vec::size();
  int64_t i = 0;
  for (; i + kRun <= n; i += kRun) {
    for (int64_t j = 0; j < kAcc; ++j) acc[j] = acc[j] + Vec::loadu(p + i + j * Vec::size());
  }
  float s = 0.f;
  for (; i < n; ++i) s += p[i];
  for (int64_t j = 1; j < kAcc; ++j) acc[0] = acc[0] + acc[j];
  float lanes[Vec::size()];
  acc[0].store(lanes);
  for (float l : lanes) s += l;
  return s;
}

// Best seconds per step over `trials` runs of `steps` steps, each step every
// thread reading its share of `bytes` (as a layer's workers own slices of
// W_hh) and then meeting the others at the step barrier.
double stream_seconds(int64_t bytes, int64_t steps, int64_t trials) {
  TORCH_CHECK(bytes > 0 && steps > 0 && trials > 0,
              "lstm_fused: stream floor needs bytes, steps and trials > 0, got ", bytes, ", ",
              steps, ", ", trials);
  const int64_t n = (bytes + 3) / 4;
  const auto w = at::rand({n}, at::TensorOptions().dtype(at::kFloat));
  const float* p = w.const_data_ptr<float>();
  const int64_t lanes = (n + Vec::size() - 1) / Vec::size();
  std::vector<float> sink(static_cast<size_t>(at::get_num_threads()) + 1, 0.f);
  const auto slot = [&] {
    return static_cast<size_t>(std::min<int64_t>(at::get_thread_num(), sink.size() - 1));
  };
  double best = std::numeric_limits<double>::infinity();
  for (int64_t trial = 0; trial < trials + 1; ++trial) {  // the first one warms the caches
    const auto start = std::chrono::steady_clock::now();
    if (one_region_allowed()) {
      run_in_one_region(lanes, 1, [&](int64_t l0, int64_t l1, auto&& sync) {
        const int64_t i0 = l0 * Vec::size(), i1 = std::min(n, l1 * Vec::size());
        float s = 0.f;
        for (int64_t st = 0; st < steps; ++st) {
          s += read_all(p + i0, i1 - i0);
          if (st + 1 < steps) sync();
        }
        sink[slot()] += s;
      });
    } else {
      for (int64_t st = 0; st < steps; ++st) {
        at::parallel_for(0, lanes, 1, [&](int64_t l0, int64_t l1) {
          const int64_t i0 = l0 * Vec::size(), i1 = std::min(n, l1 * Vec::size());
          sink[slot()] += read_all(p + i0, i1 - i0);
        });
      }
    }
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / steps;
    if (trial > 0) best = std::min(best, s);
  }
  // The sums feed a value the caller sees only as NaN, so the reads are not
  // optimised away.
  float total = 0.f;
  for (float s : sink) total += s;
  return total == std::numeric_limits<float>::infinity() ? std::nan("") : best;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(lstm_fused, m) {
  m.def("_cpu_stream_seconds(int bytes, int steps, int trials=3) -> float", &stream_seconds);
}

}  // namespace lstm_fused
