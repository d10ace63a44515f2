#pragma once
// The per-step work of the CPU layer loop behind one interface, on the engine
// chosen for the call (engine_cpu.h):
//   CpuStepGemm              c[:n] (+)= a[:n] · wᵀ: the backward's dh, and the
//                            unfused forward's product before the pointwise pass
//   CpuForwardStep<Act>      a forward step: fused (small_batch; onednn without
//                            projection) or a CpuStepGemm the driver follows
//                            with its pointwise pass
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <variant>
#include <vector>

#include "brgemm_cpu.h"
#include "engine_cpu.h"
#include "fused_backward_cpu.h"
#include "input_projection_cpu.h"
#include "large_gemm_cpu.h"
#include "library_gemm_cpu.h"
#include "onednn_linear_cpu.h"
#include "packed_gemm_cpu.h"
#include "small_batch_cpu.h"

namespace lstm_fused {

// Random operands of a call's shapes, to time candidates on; from a generator
// of their own, so that the user's random stream is not touched.
inline at::Tensor timing_operand(at::IntArrayRef sizes, const at::TensorOptions& opts) {
  const auto gen = at::make_generator<at::CPUGeneratorImpl>(/*seed_in=*/1);
  return (at::randn(sizes, gen, opts.dtype(at::kFloat)) * 0.1).to(opts.dtype());
}

// The engine settled or timed for `key` among `engines`, built by
// `make(engine)`. Timing builds each candidate and runs the step that
// `timed_step()` returns (it makes the operands: only when timing) on it.
// repeats: runs of the timed step per round.
template <class Built, class Make, class TimedStep>
std::unique_ptr<Built> chosen_engine(const EngineKey& key, const std::vector<CpuEngine>& engines,
                                     Make make, TimedStep timed_step, int repeats = 3) {
  if (const auto settled = settled_cpu_engine(key, engines)) return make(*settled);
  auto step = timed_step();
  std::vector<std::unique_ptr<Built>> built;
  std::vector<std::pair<CpuEngine, std::function<void()>>> candidates;
  for (const auto e : engines) {
    if (e == CpuEngine::Aten && engines.size() > 1) continue;  // never ahead of a prepared weight
    built.push_back(make(e));
    Built* b = built.back().get();
    candidates.emplace_back(e, [b, &step] { step(*b); });
  }
  const CpuEngine e = timed_cpu_engine(key, candidates, repeats);
  for (auto& b : built) {
    if (b->engine() == e) return std::move(b);
  }
  return make(e);
}

class CpuStepGemm {
 public:
  // w (N, K), any strides, of the layer's dtype; the one engine to build.
  CpuStepGemm(CpuEngine e, const at::Tensor& w, int64_t batch, int64_t steps) : engine_(e) {
    switch (e) {
      case CpuEngine::Mkl: impl_.emplace<PackedStepGemm>(w, batch, steps); break;
      case CpuEngine::OnednnLinear: impl_.emplace<OnednnLinearStepGemm>(w, batch); break;
      case CpuEngine::Onednn:
        switch (w.scalar_type()) {
          case at::kFloat: impl_.emplace<BrgemmStepGemm<float>>(w, batch); break;
          case at::kBFloat16: impl_.emplace<BrgemmStepGemm<at::BFloat16>>(w, batch); break;
          default: impl_.emplace<BrgemmStepGemm<at::Half>>(w, batch); break;
        }
        break;
      default:
        engine_ = CpuEngine::Aten;
        impl_.emplace<LibraryStepGemm>(w, batch, steps);
        break;
    }
  }

  // The engines that can run c (+)= a · wᵀ for the call, in the fixed order;
  // layouts_kept: the call is an inference (prepared_or_pinned).
  static std::vector<CpuEngine> engines(const at::Tensor& w, int64_t batch, int64_t steps,
                                        bool layouts_kept = false) {
    const auto t = w.scalar_type();
    std::vector<CpuEngine> out;
    const bool onednn = (t == at::kFloat || t == at::kBFloat16 || t == at::kHalf) &&
                        brgemm_usable(t, w.size(0), w.size(1));
    const bool mkl = t != at::kDouble && PackedStepGemm::available();
    if (t != at::kFloat && onednn) out.push_back(CpuEngine::Onednn);
    if (mkl) out.push_back(CpuEngine::Mkl);
    if (t == at::kFloat && onednn) out.push_back(CpuEngine::Onednn);
    if (OnednnLinearStepGemm::available(t)) out.push_back(CpuEngine::OnednnLinear);
    out.push_back(CpuEngine::Aten);
    return prepared_or_pinned(out, batch * steps, layouts_kept);
  }

  // Chosen for the call and counted: the backward's dh = dgates · W_hh.
  static std::unique_ptr<CpuStepGemm> choose(const at::Tensor& w, int64_t batch, int64_t steps) {
    const EngineKey key{EngineUse::Product, w.scalar_type(), batch, w.size(0), w.size(1), false};
    auto g = chosen_engine<CpuStepGemm>(
        key, engines(w, batch, steps),
        [&](CpuEngine e) { return std::make_unique<CpuStepGemm>(e, w, batch, steps); }, [&] {
          const auto a = timing_operand({batch, w.size(1)}, w.options());
          const auto c = timing_operand({batch, w.size(0)}, w.options());
          return [a, c, batch](CpuStepGemm& s) { s.product(c, a, batch); };
        }, /*repeats=*/3);  // three in a row per round: a step engine's steady state in a sequence
    count_cpu_engine(g->engine());
    return g;
  }

  CpuEngine engine() const { return engine_; }

  void accumulate(const at::Tensor& c, const at::Tensor& a, int64_t n) {
    std::visit([&](auto& g) { g.accumulate(c, a, n); }, impl_);
  }
  void product(const at::Tensor& c, const at::Tensor& a, int64_t n) {
    std::visit([&](auto& g) { g.product(c, a, n); }, impl_);
  }

  // The whole backward sweep in one region (fused_backward_sequence) when the
  // product runs on brgemm in scalar_t and one region may run (OpenMP, no
  // more threads than CPUs); false, doing nothing, otherwise.
  template <class Act, class Cell, typename scalar_t>
  bool backward_sequence(int64_t T, int64_t n, int64_t H, bool reverse, const scalar_t* gates,
                         const scalar_t* cells, const scalar_t* c0, const scalar_t* grad_out,
                         scalar_t* dh, scalar_t* dc, scalar_t* dgates, const scalar_t* peep,
                         at::opmath_type<scalar_t>* dpeep) const {
    if constexpr (std::is_same_v<scalar_t, double>) {
      return false;  // no brgemm engine for double
    } else {
      const auto* g = std::get_if<BrgemmStepGemm<scalar_t>>(&impl_);
      if (!g || !one_region_allowed()) return false;
      fused_backward_sequence<Act, Cell>(*g, T, n, H, reverse, gates, cells, c0, grad_out, dh,
                                         dc, dgates, peep, dpeep);
      return true;
    }
  }

  // Below kMinPreparedRows rows only aten runs, unless the pinned engine can;
  // an inference (layouts_kept) also takes onednn, whose weight layout is
  // kept from call to call (weight_layouts_cpu.h): laid out on its first call,
  // it costs a comparison on later ones. On an AMD EPYC, where aten's small
  // products take MKL's generic paths, a one-step (1, 256) call took ~100 µs
  // on aten (bench/NOTES.md v20).
  static std::vector<CpuEngine> prepared_or_pinned(const std::vector<CpuEngine>& engines,
                                                   int64_t rows, bool layouts_kept = false) {
    if (rows >= kMinPreparedRows) return engines;
    const CpuEngine p = pinned_cpu_engine();
    if (p != CpuEngine::Auto && std::find(engines.begin(), engines.end(), p) != engines.end()) {
      return {p};
    }
    std::vector<CpuEngine> out;
    for (const auto e : engines) {
      if (e == CpuEngine::Aten || (layouts_kept && e == CpuEngine::Onednn)) out.push_back(e);
    }
    return out;
  }

 private:
  // The variant's initial state: never left so (the constructor builds an engine).
  struct Unbuilt {
    void accumulate(const at::Tensor&, const at::Tensor&, int64_t) const { fail(); }
    void product(const at::Tensor&, const at::Tensor&, int64_t) const { fail(); }
    static void fail() { TORCH_CHECK(false, "lstm_fused: CPU step GEMM used before it was built"); }
  };

  CpuEngine engine_;
  std::variant<Unbuilt, LibraryStepGemm, PackedStepGemm, OnednnLinearStepGemm,
               BrgemmStepGemm<float>, BrgemmStepGemm<at::BFloat16>, BrgemmStepGemm<at::Half>>
      impl_;
};

template <class Act>
class CpuForwardStep {
 public:
  // One engine built for the call: w_hh (KH, P), any strides, K gate blocks.
  CpuForwardStep(CpuEngine e, const at::Tensor& w_hh, int64_t K, int64_t T, int64_t B)
      : engine_(e) {
    switch (e) {
      case CpuEngine::SmallBatch:
        if (w_hh.scalar_type() == at::kFloat) {
          fused_.template emplace<SmallBatchStep<Act, float>>(w_hh);
        } else {
          fused_.template emplace<SmallBatchStep<Act, at::BFloat16>>(w_hh);
        }
        break;
      case CpuEngine::Onednn:
        if (fused_onednn(w_hh, K)) {
          switch (w_hh.scalar_type()) {
            case at::kFloat: fused_.template emplace<BrgemmFusedStep<Act, float>>(w_hh, B); break;
            case at::kBFloat16: fused_.template emplace<BrgemmFusedStep<Act, at::BFloat16>>(w_hh, B); break;
            default: fused_.template emplace<BrgemmFusedStep<Act, at::Half>>(w_hh, B); break;
          }
          break;
        }
        [[fallthrough]];
      default: gemm_ = std::make_unique<CpuStepGemm>(e, w_hh, B, T); break;
    }
  }

  // Chosen for the layer call of a Cell (cell_variants.h) and counted.
  // proj: the layer has a projection (w_hh is then (KH, P)); layouts_kept:
  // the call is an inference, whose weights are expected unchanged on the
  // next call (the engines with kept layouts then run below
  // kMinPreparedRows rows and kMinSteps steps too).
  template <class Cell>
  static std::unique_ptr<CpuForwardStep> choose(const at::Tensor& w_hh, int64_t T, int64_t B,
                                                bool proj, bool layouts_kept = false) {
    constexpr int K = Cell::kGates;
    const int64_t H = w_hh.size(0) / K, P = w_hh.size(1);
    auto engines = CpuStepGemm::engines(w_hh, B, T, layouts_kept);
    const auto dtype = w_hh.scalar_type();
    if (SmallBatchStep<Act, float>::usable(T, B, H, proj, dtype, layouts_kept)) {
      engines.insert(engines.begin(), CpuEngine::SmallBatch);
    } else if (SmallBatchStep<Act, at::BFloat16>::usable(T, B, H, proj, dtype, layouts_kept)) {
      // after the library engines in the fixed order: with AMX, onednn's
      // tiles are the faster deterministic choice
      engines.insert(engines.end() - 1, CpuEngine::SmallBatch);
    }
    const auto opts = w_hh.options();
    const EngineKey key{EngineUse::ForwardStep, w_hh.scalar_type(), B, K * H, P, proj};
    auto s = chosen_engine<CpuForwardStep>(
        key, engines, [&](CpuEngine e) { return std::make_unique<CpuForwardStep>(e, w_hh, K, T, B); },
        [&] {
          // Steps as a call runs them: a fused engine's S in one region (a
          // fused step timed alone forks and joins once per step, which a
          // sequence does not; on an AMD EPYC with one thread, the unfused
          // onednn_linear timed level with it and then ran calls ~15% slower).
          constexpr int64_t S = 3;
          const auto h = timing_operand({B, P}, opts), gates = timing_operand({S, B, K * H}, opts),
                     c = timing_operand({B, H}, opts), out = timing_operand({S, B, H}, opts),
                     h_last = timing_operand({B, H}, opts);
          const at::Tensor peep =
              Cell::kPeephole ? timing_operand({Cell::kPeepRows, H}, opts) : at::Tensor();
          return [=](CpuForwardStep& f) {
            AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, h.scalar_type(), "time_step", [&] {
              auto* cp = c.data_ptr<scalar_t>();
              const scalar_t* pp = peep.defined() ? peep.data_ptr<scalar_t>() : nullptr;
              if (f.fused()) {
                f.template sequence<Cell, scalar_t>(S, B, H, false, h.data_ptr<scalar_t>(),
                                                    gates.data_ptr<scalar_t>(), nullptr, cp,
                                                    h_last.data_ptr<scalar_t>(),
                                                    out.data_ptr<scalar_t>(), nullptr, false, pp,
                                                    nullptr, 0, /*counted=*/false);
              } else {
                for (int64_t s = 0; s < S; ++s) {
                  auto g = gates[s];
                  auto o = out[s];
                  f.gemm().accumulate(g, h, B);  // h (B, P) at every step: a projected layer's h_t is P wide
                  Act::template forward<Cell, scalar_t>(B, H, g.data_ptr<scalar_t>(), nullptr,
                                                        nullptr, cp, cp, o.data_ptr<scalar_t>(),
                                                        nullptr, nullptr, pp);
                }
              }
            });
          };
        }, /*repeats=*/1);
    count_cpu_engine(s->engine());
    return s;
  }

  CpuEngine engine() const { return engine_; }
  bool fused() const { return !gemm_; }

  // Where this call's input projection runs (input_projection_cpu.h); true:
  // in the fused steps, which then take x (sequence()). w_ih (KH, I); T, B:
  // the call's; packed: it has lengths.
  template <class Cell>
  bool input_in_steps(const at::Tensor& w_ih, int64_t T, int64_t B, bool packed) {
    auto* f = std::get_if<BrgemmFusedStep<Act, float>>(&fused_);
    if (packed || !f || !f->can_attach_input(w_ih)) return false;
    const int64_t G = w_ih.size(0), I = w_ih.size(1), H = G / Cell::kGates;
    auto where = settled_input_projection(B, I, G);
    if (!where) {
      // Both ways over S steps of a sequence as the call runs them: a step
      // timed alone reads its gates from the cache, where a sequence's come
      // from the projection written before the loop. The GEMM on R >= S·B
      // rows, of which the S steps are charged S·B/R: its rate grows with
      // its rows (on an AMD EPYC, 256 rows made the projection in the steps
      // look faster at (B, H) = (8, 512), where the call's 800 ran faster
      // as a GEMM; bench/NOTES.md v18). Laying W_ih out is charged S/T of
      // itself. Each way about 2^29 multiply-adds or less (a few ms); S at
      // most T and 32.
      f->attach_input(w_ih);
      constexpr int64_t kMacs = int64_t{1} << 29;
      const int64_t S = std::clamp<int64_t>(
          std::min<int64_t>((256 + B - 1) / B, kMacs / std::max<int64_t>(1, B * G * (I + H))), 1,
          std::min<int64_t>(T, 32));
      const int64_t R = std::clamp<int64_t>(kMacs / std::max<int64_t>(1, I * G), S * B, T * B);
      const auto opts = w_ih.options();
      const auto h0 = timing_operand({B, H}, opts), xs = timing_operand({R, I}, opts),
                 c = timing_operand({B, H}, opts);
      auto gates = at::empty({R, G}, opts), h = at::empty({B, H}, opts),
           out = at::empty({S, B, H}, opts);
      const at::Tensor peep = Cell::kPeephole ? timing_operand({Cell::kPeepRows, H}, opts) : at::Tensor();
      const float* pp = peep.defined() ? peep.data_ptr<float>() : nullptr;
      auto sequence = [&](const float* x) {
        fused_sequence<Cell, float>(*f, S, B, H, false, h0.data_ptr<float>(), gates.data_ptr<float>(),
                                    nullptr, c.data_ptr<float>(), h.data_ptr<float>(),
                                    out.data_ptr<float>(), nullptr, false, pp, x, I,
                                    /*counted=*/false);
      };
      where = timed_input_projection(
          B, I, G, [&] { projection_out_cpu(gates, xs, w_ih, /*weight_kept=*/true, /*counted=*/false); },
          static_cast<double>(S * B) / static_cast<double>(R), [&] { sequence(nullptr); },
          [&] { sequence(xs.data_ptr<float>()); }, [&] { f->attach_input(w_ih); },
          static_cast<double>(S) / static_cast<double>(T));
    }
    const bool in_step = *where == InputProjection::Step;
    if (in_step && !f->input_attached()) f->attach_input(w_ih);
    count_input_projection(in_step);
    return in_step;
  }

  CpuStepGemm& gemm() { return *gemm_; }

  // A fused step (fused() only); arguments as FusedStepArgs.
  template <class Cell, typename scalar_t>
  void step(int64_t n, const scalar_t* h_prev, scalar_t* gates, const scalar_t* bias,
            scalar_t* c, scalar_t* h_out, scalar_t* h_copy, scalar_t* c_copy,
            bool keep_gates, const scalar_t* peep) const {
    const FusedStepArgs<scalar_t> a{h_prev, gates, bias, c, h_out, h_copy, c_copy, keep_gates, peep};
    with_fused<scalar_t>([&](const auto& f) { f.template step<Cell>(n, a); });
  }

  // All T steps of n rows that run at every step (fused() only), in one
  // parallel region; arguments as fused_sequence.
  template <class Cell, typename scalar_t>
  void sequence(int64_t T, int64_t n, int64_t H, bool reverse, const scalar_t* h0,
                scalar_t* gates, const scalar_t* bias, scalar_t* c, scalar_t* h, scalar_t* out,
                scalar_t* cells, bool keep_gates, const scalar_t* peep,
                const scalar_t* x = nullptr, int64_t I = 0, bool counted = true) const {
    with_fused<scalar_t>([&](const auto& f) {
      fused_sequence<Cell>(f, T, n, H, reverse, h0, gates, bias, c, h, out, cells, keep_gates,
                           peep, x, I, counted);
    });
  }

 private:
  // w_hh (KH, P): fused without projection (P = H).
  static bool fused_onednn(const at::Tensor& w_hh, int64_t K) {
    const int64_t H = w_hh.size(0) / K;
    return w_hh.size(1) == H && BrgemmFusedStep<Act, float>::usable(K, H, false, w_hh.scalar_type());
  }

  // fn(the fused engine) where it runs scalar_t.
  template <typename scalar_t, class Fn>
  void with_fused(Fn&& fn) const {
    std::visit(
        [&](const auto& f) {
          using F = std::decay_t<decltype(f)>;
          if constexpr (std::is_same_v<F, SmallBatchStep<Act, scalar_t>>) {
            fn(f);
          } else if constexpr (std::is_same_v<F, BrgemmFusedStep<Act, scalar_t>>) {
            fn(f);
          } else {
            TORCH_CHECK(false, "lstm_fused: no fused CPU step of this type was built");
          }
        },
        fused_);
  }

  CpuEngine engine_;
  std::variant<std::monostate, SmallBatchStep<Act, float>, SmallBatchStep<Act, at::BFloat16>,
               BrgemmFusedStep<Act, float>,
               BrgemmFusedStep<Act, at::BFloat16>, BrgemmFusedStep<Act, at::Half>>
      fused_;
  std::unique_ptr<CpuStepGemm> gemm_;
};

}  // namespace lstm_fused
