// The Python module: importing it registers the ops (the TORCH_LIBRARY blocks
// in the other translation units) and exposes build facts and settings.
#include <torch/extension.h>

#include <atomic>
#include <limits>

#include "config.h"
#include "cpu/host_pool.h"
#include "cpu/weight_layouts_cpu.h"

#ifndef LSTM_FUSED_TORCH_VERSION
#error "setup.py defines LSTM_FUSED_TORCH_VERSION"
#endif

namespace lstm_fused {

static std::atomic<int> g_path{static_cast<int>(Path::Auto)};

Path kernel_path() { return static_cast<Path>(g_path.load(std::memory_order_relaxed)); }
void set_kernel_path(Path p) { g_path.store(static_cast<int>(p), std::memory_order_relaxed); }

bool cuda_compiled();

}  // namespace lstm_fused

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("built_torch_version", [] { return std::string(LSTM_FUSED_TORCH_VERSION); });
  m.def("cuda_compiled", &lstm_fused::cuda_compiled);
  m.def("get_path", [] { return static_cast<int>(lstm_fused::kernel_path()); });
  m.def("set_path", [](int p) {
    TORCH_CHECK(p >= 0 && p <= 2, "lstm_fused: path code must be 0, 1 or 2");
    lstm_fused::set_kernel_path(static_cast<lstm_fused::Path>(p));
  });
  m.def("empty_cache", [] {
    lstm_fused::weight_layouts_empty();
    lstm_fused::host_cache_empty();
  });
  m.def("cpu_cache_stats", [] {
    const auto s = lstm_fused::host_cache_stats();
    pybind11::dict d;
    d["cached_bytes"] = s.cached_bytes;
    d["cached_blocks"] = s.cached_blocks;
    d["in_use_bytes"] = s.in_use_bytes;
    d["recent_bytes"] = s.recent_bytes;
    d["limit_bytes"] = s.limit_bytes == std::numeric_limits<size_t>::max() ? pybind11::object(pybind11::none())
                                                                              : pybind11::int_(s.limit_bytes);
    d["hits"] = s.hits;
    d["misses"] = s.misses;
    const auto l = lstm_fused::weight_layout_stats();
    d["layout_bytes"] = l.bytes;
    d["layout_entries"] = l.entries;
    d["layout_hits"] = l.hits;
    d["layout_misses"] = l.misses;
    return d;
  });
}
