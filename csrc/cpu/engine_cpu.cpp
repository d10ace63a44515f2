// CPU engine choice: the pinned engine, the counters, and the timed choice
// cached per kind of call. Exposed to Python as torch.ops.lstm_fused._cpu_*.
#include "engine_cpu.h"

#include "brgemm_cpu.h"
#include "input_projection_cpu.h"
#include "large_gemm_cpu.h"
#include "onednn_linear_cpu.h"
#include "packed_gemm_cpu.h"
#include "small_batch_cpu.h"

#include <ATen/Context.h>
#include <ATen/cpu/Utils.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>
#include <utility>

#if defined(__linux__)
#include <sched.h>
#endif

namespace lstm_fused {
namespace {

std::atomic<int> g_pinned{static_cast<int>(CpuEngine::Auto)};
std::array<std::atomic<int64_t>, static_cast<int>(CpuEngine::kCount)> g_counts{};
std::array<std::atomic<int64_t>, static_cast<int>(CpuEngine::kCount)> g_large_counts{};
std::array<std::atomic<int64_t>, 2> g_sequences{};  // forward, backward

using CacheKey = std::tuple<int, int, int64_t, int64_t, int64_t, bool, int>;
std::mutex g_mutex;
std::map<CacheKey, CpuEngine> g_chosen;

}  // namespace

// Median over rounds of each run's timed call, the runs alternated so that
// a disturbance hits them alike. A round runs a run `repeats` times back to
// back and times the last: for the steps of a sequence (3), the first calls
// bring its weights and operands into the caches, as the previous steps
// would. Timing single steps, one thread on an AMD EPYC at (100, 8, 512)
// float chose onednn_linear in 4 of 6 processes, which ran the layer 15%
// slower than onednn (chosen in 6 of 6 this way; bench/NOTES.md v17). At
// least 5 rounds (after 2 untimed), more (up to 25) until the timed calls
// add up to ~4 ms.
std::vector<double> median_seconds(const std::vector<TimedRun>& runs, int warmup, int min_rounds) {
  constexpr int kMaxRounds = 25;
  constexpr double kBudget = 4e-3;
  const int kWarmup = warmup, kMinRounds = min_rounds;
  const size_t n = runs.size();
  std::vector<std::vector<double>> times(n);
  int rounds = kMinRounds;
  for (int r = 0; r < kWarmup + rounds; ++r) {
    double round_s = 0;
    for (size_t i = 0; i < n; ++i) {
      for (int k = 1; k < runs[i].repeats; ++k) runs[i].fn();
      const auto t0 = std::chrono::steady_clock::now();
      runs[i].fn();
      const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
      if (r >= kWarmup) times[i].push_back(dt.count());
      round_s += dt.count();
    }
    if (r == kWarmup) {
      rounds = std::clamp(static_cast<int>(kBudget / std::max(round_s, 1e-9)), kMinRounds, kMaxRounds);
    }
  }
  std::vector<double> out(n);
  for (size_t i = 0; i < n; ++i) {
    std::nth_element(times[i].begin(), times[i].begin() + rounds / 2, times[i].end());
    out[i] = times[i][rounds / 2];
  }
  return out;
}

namespace {

CpuEngine fastest(const std::vector<std::pair<CpuEngine, std::function<void()>>>& candidates,
                  int repeats) {
  std::vector<TimedRun> runs;
  for (const auto& c : candidates) runs.push_back({c.second, repeats});
  const auto t = median_seconds(runs);
  return candidates[std::min_element(t.begin(), t.end()) - t.begin()].first;
}

bool cpu_flag(const char* name) {
  static const auto caps = at::cpu::get_cpu_capabilities();
  const auto it = caps.find(name);
  return it != caps.end() && it->second.isBool() && it->second.toBool();
}

}  // namespace

bool cpu_has_16bit_dot(at::ScalarType t) {
  static const auto has = std::pair<bool, bool>{cpu_flag("amx_bf16") || cpu_flag("avx512_bf16"),
                                                cpu_flag("amx_fp16") || cpu_flag("avx512_fp16")};
  return t == at::kBFloat16 ? has.first : t == at::kHalf ? has.second : false;
}

bool cpu_has_avx512_bf16() {
  static const bool has = cpu_flag("avx512_bf16");
  return has;
}

CpuEngine pinned_cpu_engine() { return static_cast<CpuEngine>(g_pinned.load(std::memory_order_relaxed)); }
void set_pinned_cpu_engine(CpuEngine e) { g_pinned.store(static_cast<int>(e), std::memory_order_relaxed); }

void count_cpu_engine(CpuEngine e) { g_counts[static_cast<int>(e)].fetch_add(1, std::memory_order_relaxed); }
void count_cpu_large_gemm(CpuEngine e) {
  g_large_counts[static_cast<int>(e)].fetch_add(1, std::memory_order_relaxed);
}
int64_t available_cpus() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
#endif
  return std::max<int64_t>(1, std::thread::hardware_concurrency());
}

void count_cpu_sequence(bool backward) { g_sequences[backward].fetch_add(1, std::memory_order_relaxed); }

static CacheKey cache_key(const EngineKey& key) {
  return {static_cast<int>(key.use), static_cast<int>(key.dtype), key.B, key.N, key.K, key.proj,
          at::get_num_threads()};
}

std::optional<CpuEngine> settled_cpu_engine(const EngineKey& key,
                                            const std::vector<CpuEngine>& engines) {
  TORCH_CHECK(!engines.empty(), "lstm_fused: no CPU engine can run this call");
  const CpuEngine pinned = pinned_cpu_engine();
  if (std::find(engines.begin(), engines.end(), pinned) != engines.end()) return pinned;
  if (engines.size() == 1 || at::globalContext().deterministicAlgorithms()) return engines.front();
  std::lock_guard<std::mutex> lock(g_mutex);
  const auto it = g_chosen.find(cache_key(key));
  if (it != g_chosen.end() &&
      std::find(engines.begin(), engines.end(), it->second) != engines.end()) {
    return it->second;
  }
  return std::nullopt;
}

CpuEngine timed_cpu_engine(const EngineKey& key,
                           const std::vector<std::pair<CpuEngine, std::function<void()>>>& candidates,
                           int repeats) {
  TORCH_CHECK(!candidates.empty(), "lstm_fused: no CPU engine to time");
  const CpuEngine e = fastest(candidates, std::max(1, repeats));
  std::lock_guard<std::mutex> lock(g_mutex);
  g_chosen[cache_key(key)] = e;
  return e;
}

template <size_t N>
std::vector<int64_t> loaded(const std::array<std::atomic<int64_t>, N>& counts) {
  std::vector<int64_t> out;
  for (const auto& c : counts) out.push_back(c.load(std::memory_order_relaxed));
  return out;
}

std::vector<std::string> cpu_engine_names() {
  return {kCpuEngineNames.begin(), kCpuEngineNames.end()};
}

// The timed choices so far, one line each: "<use> dtype B N K [proj] threads -> engine".
std::vector<std::string> cpu_engine_choices() {
  std::lock_guard<std::mutex> lock(g_mutex);
  std::vector<std::string> out;
  for (const auto& [k, e] : g_chosen) {
    const auto& [use, dtype, B, N, K, proj, threads] = k;
    static const char* kUses[] = {"forward step ", "product ", "large GEMM ", "cell step "};
    out.push_back(std::string(kUses[use]) +
                  c10::toString(static_cast<at::ScalarType>(dtype)) + " B=" + std::to_string(B) +
                  " N=" + std::to_string(N) + " K=" + std::to_string(K) +
                  (proj ? " proj" : "") + " threads=" + std::to_string(threads) + " -> " +
                  kCpuEngineNames[static_cast<int>(e)]);
  }
  return out;
}

void clear_cpu_engine_choices() {
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_chosen.clear();
  }
  clear_input_projection_choices();
  clear_block_choices();
}

// Whether `engine` can run layers of `dtype` on this CPU and build (shapes
// aside: small_batch takes small layers only, onednn H a multiple of 16).
bool cpu_engine_available(int64_t engine, at::ScalarType dtype) {
  switch (static_cast<CpuEngine>(engine)) {
    case CpuEngine::Mkl: return dtype != at::kDouble && PackedStepGemm::available();
    case CpuEngine::Onednn: return brgemm_support(dtype).usable;
    case CpuEngine::OnednnLinear: return OnednnLinearStepGemm::available(dtype);
    case CpuEngine::SmallBatch: return small_batch_runs(dtype);
    default: return true;
  }
}

TORCH_LIBRARY_FRAGMENT(lstm_fused, m) {
  m.def("_cpu_engine_available(int engine, ScalarType dtype) -> bool", &cpu_engine_available);
  m.def("_cpu_engine_names() -> str[]", &cpu_engine_names);
  m.def("_cpu_engine_counts() -> int[]", [] { return loaded(g_counts); });
  m.def("_cpu_large_gemm_counts() -> int[]", [] { return loaded(g_large_counts); });
  m.def("_cpu_sequence_counts() -> int[]", [] { return loaded(g_sequences); });
  m.def("_cpu_engine_choices() -> str[]", &cpu_engine_choices);
  m.def("_cpu_clear_engine_choices() -> ()", &clear_cpu_engine_choices);
  m.def("_cpu_get_engine() -> int", [] { return static_cast<int64_t>(pinned_cpu_engine()); });
  m.def("_cpu_set_engine(int engine) -> ()", [](int64_t e) {
    TORCH_CHECK(e >= 0 && e < static_cast<int64_t>(CpuEngine::kCount),
                "lstm_fused: CPU engine code out of range");
    set_pinned_cpu_engine(static_cast<CpuEngine>(e));
  });
}

}  // namespace lstm_fused
