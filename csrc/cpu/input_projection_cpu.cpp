// The choice of input_projection_cpu.h and its counters. Exposed to Python as
// torch.ops.lstm_fused._cpu_*input_projection*.
#include "input_projection_cpu.h"

#include "engine_cpu.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>
#include <map>
#include <mutex>
#include <tuple>

namespace lstm_fused {
namespace {

std::atomic<int> g_pinned{static_cast<int>(InputProjection::Auto)};
std::array<std::atomic<int64_t>, 2> g_counts{};  // gemm, step

using Key = std::tuple<int64_t, int64_t, int64_t, int>;  // B, I, G, threads
std::mutex g_mutex;
std::map<Key, InputProjection> g_chosen;

Key key(int64_t B, int64_t I, int64_t G) { return {B, I, G, at::get_num_threads()}; }

}  // namespace

std::optional<InputProjection> settled_input_projection(int64_t B, int64_t I, int64_t G) {
  const auto pinned = static_cast<InputProjection>(g_pinned.load(std::memory_order_relaxed));
  if (pinned != InputProjection::Auto) return pinned;
  if (at::globalContext().deterministicAlgorithms()) return InputProjection::Gemm;
  std::lock_guard<std::mutex> lock(g_mutex);
  const auto it = g_chosen.find(key(B, I, G));
  if (it != g_chosen.end()) return it->second;
  return std::nullopt;
}

InputProjection timed_input_projection(int64_t B, int64_t I, int64_t G,
                                       const std::function<void()>& gemm, double share,
                                       const std::function<void()>& plain,
                                       const std::function<void()>& step,
                                       const std::function<void()>& attach, double attach_share) {
  // each run is a few ms: one untimed round, then five
  const auto t = median_seconds({{gemm, 1}, {plain, 1}, {step, 1}, {attach, 1}}, /*warmup=*/1,
                                /*min_rounds=*/5);
  // No margin for the GEMM: since a worker computes the next step's product
  // while it waits at the barrier, the steps ran whole calls level with the
  // GEMM or faster at every shape measured (AMD EPYC; bench/NOTES.md v19),
  // where with a 3% margin (32, 256) took the GEMM in one process of four
  // and ran 8% slower.
  const auto where = t[2] + attach_share * t[3] < t[1] + share * t[0]
                         ? InputProjection::Step
                         : InputProjection::Gemm;
  std::lock_guard<std::mutex> lock(g_mutex);
  g_chosen[key(B, I, G)] = where;
  return where;
}

void count_input_projection(bool in_step) {
  g_counts[in_step].fetch_add(1, std::memory_order_relaxed);
}

std::vector<std::string> input_projection_choices() {
  std::lock_guard<std::mutex> lock(g_mutex);
  std::vector<std::string> out;
  for (const auto& [k, where] : g_chosen) {
    const auto& [B, I, G, threads] = k;
    out.push_back("input projection Float B=" + std::to_string(B) + " I=" + std::to_string(I) +
                  " G=" + std::to_string(G) + " threads=" + std::to_string(threads) + " -> " +
                  kInputProjectionNames[static_cast<int>(where)]);
  }
  return out;
}

void clear_input_projection_choices() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_chosen.clear();
}

TORCH_LIBRARY_FRAGMENT(lstm_fused, m) {
  m.def("_cpu_input_projection_names() -> str[]", [] {
    return std::vector<std::string>(kInputProjectionNames.begin(), kInputProjectionNames.end());
  });
  m.def("_cpu_get_input_projection() -> int",
        [] { return static_cast<int64_t>(g_pinned.load(std::memory_order_relaxed)); });
  m.def("_cpu_set_input_projection(int where) -> ()", [](int64_t w) {
    TORCH_CHECK(w >= 0 && w < static_cast<int64_t>(InputProjection::kCount),
                "lstm_fused: input projection code out of range");
    g_pinned.store(static_cast<int>(w), std::memory_order_relaxed);
  });
  m.def("_cpu_input_projection_counts() -> int[]", [] {
    return std::vector<int64_t>{g_counts[0].load(), g_counts[1].load()};
  });
  m.def("_cpu_input_projection_choices() -> str[]", &input_projection_choices);
}

}  // namespace lstm_fused
