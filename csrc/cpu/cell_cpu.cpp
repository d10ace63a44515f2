// The CPU lstm_cell op. Three engines, chosen like the layer's (engine_cpu.h):
//   mkl          the single-region step (cell_step_cpu.h) on MKL's sequential
//                GEMM: float only
//   small_batch  the same step on dot products along K (dot_gates_cpu.h):
//                float, AVX-512 builds
//   aten         the driver: library GEMMs, then the pointwise pass (every type)
#include <ATen/ATen.h>
#include <torch/library.h>

#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "../driver.h"
#include "cell_step_cpu.h"
#include "engine_cpu.h"
#include "pointwise_cpu.h"

namespace lstm_fused {

std::tuple<at::Tensor, at::Tensor, at::Tensor> cell_forward_cpu(
    const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx, const at::Tensor& w_ih,
    const at::Tensor& w_hh, const std::optional<at::Tensor>& b_ih,
    const std::optional<at::Tensor>& b_hh, bool need_gates, int64_t variant,
    const std::optional<at::Tensor>& peephole) {
  const auto kind = cell_kind(variant, peephole);
  const auto d = check_cell_args(input, hx, cx, w_ih, w_hh, b_ih, b_hh, kind, peephole);
  auto library = [&] {
    return cell_forward<CpuPointwise>(input, hx, cx, w_ih, w_hh, b_ih, b_hh, need_gates, variant,
                                      peephole);
  };
  using Products = CellStep::Products;
  std::vector<std::pair<CpuEngine, Products>> steps;
  for (const auto& [engine, p] : {std::pair{CpuEngine::Mkl, Products::Library},
                                  std::pair{CpuEngine::SmallBatch, Products::Dot}}) {
    if (CellStep::usable(p, input.scalar_type(), d.B, d.I, d.H, kind.gates())) {
      steps.emplace_back(engine, p);
    }
  }
  std::vector<CpuEngine> engines;
  for (const auto& s : steps) engines.push_back(s.first);
  engines.push_back(CpuEngine::Aten);
  const EngineKey key{EngineUse::CellStep, input.scalar_type(), d.B, d.G, d.I + d.H, false};
  auto e = steps.empty() ? std::optional<CpuEngine>(CpuEngine::Aten)
                         : settled_cpu_engine(key, engines);
  if (e == CpuEngine::Aten) {
    count_cpu_engine(CpuEngine::Aten);
    return library();
  }
  const auto opts = input.options();
  const auto x = input.contiguous(), h = hx.contiguous(), c = cx.contiguous();
  const auto wi = w_ih.contiguous(), wh = w_hh.contiguous();
  const auto bi = b_ih.has_value() ? b_ih->contiguous() : at::Tensor();
  const auto bh = b_hh.has_value() ? b_hh->contiguous() : at::Tensor();
  const auto pp = peephole.has_value() ? peephole->contiguous() : at::Tensor();
  auto gates = buffer<CpuPointwise>({d.B, d.G}, opts);
  auto hy = buffer<CpuPointwise>({d.B, d.H}, opts);
  auto cy = buffer<CpuPointwise>({d.B, d.H}, opts);
  const CellStepArgs args{d.B, d.I, d.H,
                          x.data_ptr<float>(), h.data_ptr<float>(), c.data_ptr<float>(),
                          wi.data_ptr<float>(), wh.data_ptr<float>(), ptr_or_null<float>(bi),
                          ptr_or_null<float>(bh), ptr_or_null<float>(pp),
                          gates.data_ptr<float>(), need_gates, cy.data_ptr<float>(),
                          hy.data_ptr<float>()};
  auto fused = [&](Products p) {
    with_cell(kind, [&](auto cell) { CellStep::run<decltype(cell)>(p, args); });
  };
  if (!e) {
    std::vector<std::pair<CpuEngine, std::function<void()>>> candidates;
    for (const auto& [engine, p] : steps) candidates.emplace_back(engine, [&, p = p] { fused(p); });
    candidates.emplace_back(CpuEngine::Aten, [&] { library(); });
    e = timed_cpu_engine(key, candidates);
  }
  count_cpu_engine(*e);
  if (*e == CpuEngine::Aten) return library();
  for (const auto& [engine, p] : steps) {
    if (engine == *e) fused(p);
  }
  return {hy, cy, kept_if(need_gates, gates, opts)};
}

TORCH_LIBRARY_IMPL(lstm_fused, CPU, m) { m.impl("lstm_cell", &cell_forward_cpu); }

}  // namespace lstm_fused
