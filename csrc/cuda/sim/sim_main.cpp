// Runs the CUDA kernels in the CPU simulation (sim_prelude.h) against float64
// references: pointwise forward/backward, the fused cell, and the persistent
// forward/backward for every mode, on small odd shapes (all blocks and warp
// roles, partial tiles, padding, reverse, need_grad). Outputs are poisoned
// with NaN first, so an element a kernel forgets to write fails.
// The persistent kernels are planned by the real planner (plan_persistent)
// and started by the real launchers (persistent_forward / persistent_backward)
// against a stub CUDA runtime that describes an H100/H200-like device whose
// multiprocessor count is its device number, and runs cudaLaunchCooperativeKernel
// in the simulation.
//   usage: sim_main [quick|full|long|grid|plans]
//   quick  the default suite's cases; full: more shapes
//   long   T = 1000 at the shapes and error bounds of tests/test_cuda.py
//   grid   the real grid: H = 512 on 132 SMs (128 / 64 blocks), as fibers
#include "sim_prelude.h"

// The kernels, compiled as host code.
#include "../cell_kernel.cuh"
#include "../persistent_bwd.cu"
#include "../persistent_bwd_16bit.cu"
#include "../persistent_bwd_32bit.cu"
#include "../persistent_fwd.cu"
#include "../persistent_fwd_16bit.cu"
#include "../persistent_fwd_32bit.cu"
#include "../persistent_plan.cu"
#include "../pointwise_kernels.cuh"

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <type_traits>

using namespace lstm_fused::cuda;
using namespace lstm_fused;
namespace P = lstm_fused::cuda::persistent;

// ------------------------------------------------------ a stub CUDA runtime
// What the planner and the launchers call, answered for a device like an
// H100/H200 (compute capability 9.0, cooperative launch, 227 KB of opt-in
// shared memory per block, 1 KB of it static in the persistent kernels, one
// 256-thread block per SM at their ~230-250 registers) whose number of
// multiprocessors is its device number: a case with `sms` SMs runs on device
// `sms`. No libcudart.
namespace stub {
int current_device = 132;
constexpr int kOptinSmem = 232448;
constexpr int kStaticSmem = 1024;  // the cooperative-groups grid barrier's, per cuobjdump
std::map<const void*, int> dyn_limit;
// kernel -> a runner of the kernel in the simulation, given its argument array.
std::map<const void*, std::function<void(void**)>> kernels;
int launches = 0;

template <int MODE, int NTCM, class Cell>
void register_kernels() {
  using S = typename P::ModeTraits<MODE>::T;
  const CellKind cell{Cell::kVariant, Cell::kPeephole};
  kernels[P::forward_kernel(static_cast<MmaMode>(MODE), NTCM, cell)] = [](void** args) {
    P::persistent_forward_kernel<MODE, NTCM, Cell>(*static_cast<const P::FwdArgs<S>*>(args[0]));
  };
  kernels[P::backward_kernel(static_cast<MmaMode>(MODE), NTCM, cell)] = [](void** args) {
    P::persistent_backward_kernel<MODE, NTCM, Cell>(
        *static_cast<const P::BwdArgs<S>*>(args[0]));
  };
}
#define LSTM_FUSED_SIM_REGISTER(Cell, MODE)     \
  register_kernels<MODE, P::kNTCSmall, Cell>(); \
  register_kernels<MODE, P::kNTC, Cell>();
template <int MODE>
void register_mode() {
  LSTM_FUSED_FOR_EACH_CELL(LSTM_FUSED_SIM_REGISTER, MODE)
}
#undef LSTM_FUSED_SIM_REGISTER
}  // namespace stub

extern "C" {
cudaError_t CUDARTAPI cudaGetDevice(int* device) {
  *device = stub::current_device;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaDeviceGetAttribute(int* value, enum cudaDeviceAttr attr, int device) {
  switch (attr) {
    case cudaDevAttrComputeCapabilityMajor: *value = 9; return cudaSuccess;
    case cudaDevAttrCooperativeLaunch: *value = 1; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = device; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = stub::kOptinSmem; return cudaSuccess;
    default: return cudaErrorInvalidValue;
  }
}
cudaError_t CUDARTAPI cudaFuncGetAttributes(struct cudaFuncAttributes* attr, const void* func) {
  if (stub::kernels.count(func) == 0) return cudaErrorInvalidDeviceFunction;
  *attr = cudaFuncAttributes{};
  attr->sharedSizeBytes = stub::kStaticSmem;
  attr->maxThreadsPerBlock = P::kThreads;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaFuncSetAttribute(const void* func, enum cudaFuncAttribute attr,
                                           int value) {
  if (stub::kernels.count(func) == 0) return cudaErrorInvalidDeviceFunction;
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize ||
      value + stub::kStaticSmem > stub::kOptinSmem) {
    return cudaErrorInvalidValue;
  }
  stub::dyn_limit[func] = value;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* num, const void* func,
                                                                    int block, size_t smem) {
  if (stub::kernels.count(func) == 0) return cudaErrorInvalidDeviceFunction;
  const auto it = stub::dyn_limit.find(func);
  const int limit = it == stub::dyn_limit.end() ? 48 * 1024 - stub::kStaticSmem : it->second;
  *num = block == P::kThreads && smem <= static_cast<size_t>(limit) ? 1 : 0;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaLaunchCooperativeKernel(const void* func, dim3 grid, dim3 block,
                                                  void** args, size_t smem, cudaStream_t) {
  const auto it = stub::kernels.find(func);
  if (it == stub::kernels.end()) return cudaErrorInvalidDeviceFunction;
  int fit = 0;
  cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit, func, static_cast<int>(block.x), smem);
  if (grid.y != 1 || grid.z != 1 || block.y != 1 || block.z != 1 ||
      static_cast<int64_t>(fit) * stub::current_device < grid.x) {
    return cudaErrorCooperativeLaunchTooLarge;
  }
  ++stub::launches;
  const std::function<void(void**)>& run = it->second;
  lstm_fused_sim::launch(static_cast<int>(grid.x), static_cast<int>(block.x), smem, true,
                         [&] { run(args); });
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaGetLastError(void) { return cudaSuccess; }
}

namespace {

std::mt19937 rng(12345);
int failures = 0;
int checks = 0;
bool verbose = false;  // print every check's error (long, grid)

template <typename S>
S to_s(double v) {
  return detail::from_acc<S>(static_cast<detail::acc_t<S>>(v));
}
template <typename S>
double of_s(S v) {
  return static_cast<double>(detail::to_acc(v));
}
template <typename S>
S nan_s() {
  return to_s<S>(std::nan(""));
}

template <typename S>
std::vector<S> rand_vec(size_t n, double lo, double hi) {
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<S> v(n);
  for (auto& x : v) x = to_s<S>(d(rng));
  return v;
}

double sigm(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// max |got - want| / max(1, max |want|); NaN (an unwritten element) fails.
template <typename S>
void compare(const std::string& what, const std::vector<S>& got, const std::vector<double>& want,
             double tol) {
  ++checks;
  double scale = 1.0, err = 0.0;
  size_t bad = 0, worst = 0;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  if (got.size() != want.size()) {
    std::printf("FAIL %s: size %zu != %zu\n", what.c_str(), got.size(), want.size());
    ++failures;
    return;
  }
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = of_s(got[i]);
    if (!std::isfinite(g)) {
      ++bad;
      worst = i;
      continue;
    }
    const double e = std::fabs(g - want[i]);
    if (e > err) {
      err = e;
      if (bad == 0) worst = i;
    }
  }
  err /= scale;
  if (verbose) std::printf("     %s: rel err %.3g (tol %.3g)\n", what.c_str(), err, tol);
  if (bad > 0 || !(err <= tol)) {
    std::printf("FAIL %s: rel err %.3g (tol %.3g), %zu non-finite, worst index %zu "
                "(got %g want %g)\n",
                what.c_str(), err, tol, bad, worst, of_s(got[worst]), want[worst]);
    ++failures;
  }
}

// ------------------------------------------------------------------ pointwise
template <typename S>
void test_pointwise(int n, int H, bool bias, bool second_dh) {
  const size_t G = 4 * static_cast<size_t>(H);
  auto gates = rand_vec<S>(n * G, -3, 3);
  auto bi = rand_vec<S>(G, -1, 1), bh = rand_vec<S>(G, -1, 1);
  auto c_prev = rand_vec<S>(static_cast<size_t>(n) * H, -2, 2);
  std::vector<S> c_out(c_prev), h_out(n * static_cast<size_t>(H), nan_s<S>()),
      h_copy(h_out), c_copy(h_out);
  std::vector<double> rg(n * G), rc(n * static_cast<size_t>(H)), rh(rc.size());
  for (int r = 0; r < n; ++r)
    for (int u = 0; u < H; ++u) {
      double pre[4];
      for (int k = 0; k < 4; ++k) {
        pre[k] = of_s(gates[r * G + k * H + u]);
        if (bias) pre[k] += of_s(bi[k * H + u]) + of_s(bh[k * H + u]);
      }
      const double i = sigm(pre[0]), f = sigm(pre[1]), g = std::tanh(pre[2]), o = sigm(pre[3]);
      const double c = f * of_s(c_prev[r * H + u]) + i * g;
      rg[r * G + u] = i;
      rg[r * G + H + u] = f;
      rg[r * G + 2 * H + u] = g;
      rg[r * G + 3 * H + u] = o;
      rc[r * H + u] = c;
      rh[r * H + u] = o * std::tanh(c);
    }
  S* gp = gates.data();
  lstm_fused_sim::launch(3, 64, 0, false, [&] {
    kernels::pointwise_forward_kernel<StandardCell, S>(
        n, H, gp, bias ? bi.data() : nullptr, bias ? bh.data() : nullptr, c_out.data(),
        c_out.data(), h_out.data(), h_copy.data(), c_copy.data(), nullptr);
  });
  const double tol = sizeof(S) == 2 ? 1e-2 : 1e-5;
  const std::string tag = "pointwise_fwd<" + std::to_string(sizeof(S)) + "> n=" +
                          std::to_string(n) + " H=" + std::to_string(H);
  compare(tag + " gates", gates, rg, tol);
  compare(tag + " c", c_out, rc, tol);
  compare(tag + " h", h_out, rh, tol);
  compare(tag + " h_copy", h_copy, rh, tol);
  compare(tag + " c_copy", c_copy, rc, tol);

  // backward
  auto ga = rand_vec<S>(n * G, 0.05, 0.95);
  auto c = rand_vec<S>(static_cast<size_t>(n) * H, -2, 2);
  auto cp = rand_vec<S>(c.size(), -2, 2);
  auto dha = rand_vec<S>(c.size(), -1, 1), dhb = rand_vec<S>(c.size(), -1, 1);
  auto dc = rand_vec<S>(c.size(), -1, 1);
  std::vector<S> dg(n * G, nan_s<S>());
  std::vector<double> rdg(n * G), rdc(c.size());
  for (int r = 0; r < n; ++r)
    for (int u = 0; u < H; ++u) {
      const size_t e = static_cast<size_t>(r) * H + u;
      const double i = of_s(ga[r * G + u]), f = of_s(ga[r * G + H + u]),
                   g = of_s(ga[r * G + 2 * H + u]), o = of_s(ga[r * G + 3 * H + u]);
      const double dh = of_s(dha[e]) + (second_dh ? of_s(dhb[e]) : 0.0);
      const double tc = std::tanh(of_s(c[e]));
      const double dct = of_s(dc[e]) + dh * o * (1 - tc * tc);
      rdg[r * G + u] = dct * g * i * (1 - i);
      rdg[r * G + H + u] = dct * of_s(cp[e]) * f * (1 - f);
      rdg[r * G + 2 * H + u] = dct * i * (1 - g * g);
      rdg[r * G + 3 * H + u] = dh * tc * o * (1 - o);
      rdc[e] = dct * f;
    }
  lstm_fused_sim::launch(2, 96, 0, false, [&] {
    kernels::pointwise_backward_kernel<StandardCell, S>(
        n, H, ga.data(), c.data(), cp.data(), dha.data(), second_dh ? dhb.data() : nullptr,
        dc.data(), dg.data(), nullptr, nullptr);
  });
  compare("pointwise_bwd dgates n=" + std::to_string(n) + " H=" + std::to_string(H), dg, rdg, tol);
  compare("pointwise_bwd dc n=" + std::to_string(n) + " H=" + std::to_string(H), dc, rdc, tol);
}

// The cell variants' equations (../../cell_variants.h) in float64.
struct HostMath {
  static double sigmoid(double x) { return sigm(x); }
  static double tanh(double x) { return std::tanh(x); }
  static double one_minus(double x) { return 1 - x; }
  static double ones(double) { return 1; }
};
template <class Cell>
CellValues<double> variant_ref(const double* pre, double cp, const double* p /* i, f, o */) {
  double q[Cell::kGates];
  std::copy(pre, pre + Cell::kGates, q);
  return cell_equations<Cell, HostMath>(q, cp, p);
}
// Unit u's peephole weights (i, f, o) from (Cell::kPeepRows, H) storage; zeros
// without peepholes.
template <class Cell, typename S>
void peep_vals(const std::vector<S>& peep, int H, int u, double* p) {
  p[0] = Cell::kInputGate && Cell::kPeephole ? of_s(peep[u]) : 0;
  p[1] = Cell::kPeephole ? of_s(peep[Cell::kPeepF * H + u]) : 0;
  p[2] = Cell::kPeephole ? of_s(peep[Cell::kPeepO * H + u]) : 0;
}
// The activated gates in Cell's order.
template <class Cell>
double gate_of(const CellValues<double>& v, int k) {
  const double all[4] = {v.i, v.f, v.g, v.o};
  return all[4 - Cell::kGates + k];
}
template <class Cell>
std::string cell_tag() {
  static const char* names[] = {"", " cifg", " no_input_gate"};
  return std::string(names[static_cast<int>(Cell::kVariant)]) +
         (Cell::kPeephole ? " peephole" : "");
}

// The pointwise kernels of a cell variant: the forward against the
// equations in float64 (the layout: gate blocks, peephole rows), the
// backward against central differences of them (d(dh·h + dc·c)/d(pre),
// d/dc_{t-1}): the backward equations checked against the forward's. The
// forward equations themselves are checked by the tests against the
// reference in lstm_fused/_reference.py.
template <class Cell, typename S>
void test_pointwise_variant(int n, int H) {
  constexpr int K = Cell::kGates;
  const size_t G = K * static_cast<size_t>(H), NH = static_cast<size_t>(n) * H;
  auto pre_s = rand_vec<S>(n * G, -3, 3);
  auto peep = rand_vec<S>(Cell::kPeepRows * static_cast<size_t>(H), -1, 1);
  auto c_prev = rand_vec<S>(NH, -2, 2);
  auto dh = rand_vec<S>(NH, -1, 1), dc_in = rand_vec<S>(NH, -1, 1);
  std::vector<double> rg(n * G), rc(NH), rh(NH), rdg(n * G), rdc(NH);
  std::vector<S> act(n * G), c_t(NH);
  for (int r = 0; r < n; ++r)
    for (int u = 0; u < H; ++u) {
      const size_t e = static_cast<size_t>(r) * H + u;
      double pre[4] = {}, p[3];
      for (int k = 0; k < K; ++k) pre[k] = of_s(pre_s[r * G + k * H + u]);
      peep_vals<Cell>(peep, H, u, p);
      const double cp = of_s(c_prev[e]);
      const auto v = variant_ref<Cell>(pre, cp, p);
      for (int k = 0; k < K; ++k) {
        rg[r * G + k * H + u] = gate_of<Cell>(v, k);
        act[r * G + k * H + u] = to_s<S>(gate_of<Cell>(v, k));
      }
      rc[e] = v.c;
      rh[e] = v.h;
      c_t[e] = to_s<S>(v.c);
      // the backward's reference, from the kernel's own (rounded) saved values
      auto loss = [&](const double* q, double c0) {
        const auto w = variant_ref<Cell>(q, c0, p);
        return of_s(dh[e]) * w.h + of_s(dc_in[e]) * w.c;
      };
      const double eps = 1e-6;
      for (int k = 0; k < K; ++k) {
        double a[4], b[4];
        std::copy(pre, pre + 4, a);
        std::copy(pre, pre + 4, b);
        a[k] += eps;
        b[k] -= eps;
        rdg[r * G + k * H + u] = (loss(a, cp) - loss(b, cp)) / (2 * eps);
      }
      rdc[e] = (loss(pre, cp + eps) - loss(pre, cp - eps)) / (2 * eps);
    }
  const double tol = sizeof(S) == 2 ? 2e-2 : 1e-5;
  const std::string tag = std::string("pointwise<variant ") +
                          std::to_string(static_cast<int>(Cell::kVariant)) +
                          (Cell::kPeephole ? ", peephole" : "") + ", " +
                          std::to_string(sizeof(S)) + "> n=" + std::to_string(n) +
                          " H=" + std::to_string(H);
  std::vector<S> gates(pre_s), c_out(c_prev), h_out(NH, nan_s<S>());
  lstm_fused_sim::launch(3, 64, 0, false, [&] {
    kernels::pointwise_forward_kernel<Cell, S>(n, H, gates.data(), nullptr, nullptr,
                                               c_out.data(), c_out.data(), h_out.data(), nullptr,
                                               nullptr, Cell::kPeephole ? peep.data() : nullptr);
  });
  compare(tag + " fwd gates", gates, rg, tol);
  compare(tag + " fwd c", c_out, rc, tol);
  compare(tag + " fwd h", h_out, rh, tol);
  // 16-bit saved gates and cells are rounded: the differences are taken at
  // the unrounded point, so the bound is that of the rounding
  std::vector<S> dg(n * G, nan_s<S>()), dc(dc_in);
  // the peephole accumulators start at 1 (they add to what they hold)
  using Acc = detail::acc_t<S>;
  const size_t PR = Cell::kPeepRows * static_cast<size_t>(H);
  std::vector<Acc> dpeep(n * PR, Acc(1));
  std::vector<double> rdp(n * PR, 1.0);
  for (int r = 0; r < n && Cell::kPeephole; ++r)
    for (int u = 0; u < H; ++u) {
      const size_t e = static_cast<size_t>(r) * H + u;
      const double cp = of_s(c_prev[e]), cc = of_s(c_t[e]);
      if (Cell::kInputGate) rdp[r * PR + u] += rdg[r * G + u] * cp;
      rdp[r * PR + Cell::kPeepF * H + u] += rdg[r * G + Cell::kF * H + u] * cp;
      rdp[r * PR + Cell::kPeepO * H + u] += rdg[r * G + Cell::kO * H + u] * cc;
    }
  lstm_fused_sim::launch(2, 96, 0, false, [&] {
    kernels::pointwise_backward_kernel<Cell, S>(n, H, act.data(), c_t.data(), c_prev.data(),
                                                dh.data(), nullptr, dc.data(), dg.data(),
                                                Cell::kPeephole ? peep.data() : nullptr,
                                                Cell::kPeephole ? dpeep.data() : nullptr);
  });
  compare(tag + " bwd dgates", dg, rdg, tol);
  compare(tag + " bwd dc", dc, rdc, tol);
  if (Cell::kPeephole) compare(tag + " bwd dpeep", dpeep, rdp, tol);
}

#define LSTM_FUSED_SIM_VARIANT(Cell, S) test_pointwise_variant<Cell, S>(n, H);
template <typename S>
void test_pointwise_variants(int n, int H) {
  LSTM_FUSED_FOR_EACH_CELL(LSTM_FUSED_SIM_VARIANT, S)
}
#undef LSTM_FUSED_SIM_VARIANT

// ----------------------------------------------------------------------- cell
template <typename S, class Cell = StandardCell>
void test_cell(int B, int I, int H, bool bias, bool gates_out) {
  constexpr int K = Cell::kGates;
  const size_t G = K * static_cast<size_t>(H);
  const double a = 1.0 / std::sqrt(double(I + H) + 1.0);
  auto x = rand_vec<S>(static_cast<size_t>(B) * I, -1, 1);
  auto h = rand_vec<S>(static_cast<size_t>(B) * H, -1, 1);
  auto c = rand_vec<S>(static_cast<size_t>(B) * H, -1, 1);
  auto wi = rand_vec<S>(G * I, -2 * a, 2 * a), wh = rand_vec<S>(G * H, -2 * a, 2 * a);
  auto bi = rand_vec<S>(G, -0.5, 0.5), bh = rand_vec<S>(G, -0.5, 0.5);
  auto peep = rand_vec<S>(Cell::kPeepRows * static_cast<size_t>(H), -1, 1);
  std::vector<S> hy(static_cast<size_t>(B) * H, nan_s<S>()), cy(hy), gt(B * G, nan_s<S>());
  std::vector<double> rh(hy.size()), rc(hy.size()), rg(B * G);
  for (int b = 0; b < B; ++b)
    for (int u = 0; u < H; ++u) {
      double pre[4], p[3];
      for (int k = 0; k < K; ++k) {
        const size_t row = k * static_cast<size_t>(H) + u;
        double s = bias ? of_s(bi[row]) + of_s(bh[row]) : 0.0;
        for (int j = 0; j < I; ++j) s += of_s(wi[row * I + j]) * of_s(x[b * I + j]);
        for (int j = 0; j < H; ++j) s += of_s(wh[row * H + j]) * of_s(h[b * H + j]);
        pre[k] = s;
      }
      double cn, hn;
      if constexpr (std::is_same_v<Cell, StandardCell>) {  // written out: an independent check
        const double i = sigm(pre[0]), f = sigm(pre[1]), g = std::tanh(pre[2]),
                     o = sigm(pre[3]);
        cn = f * of_s(c[b * H + u]) + i * g;
        hn = o * std::tanh(cn);
        const double all[4] = {i, f, g, o};
        for (int k = 0; k < 4; ++k) rg[b * G + k * H + u] = all[k];
      } else {
        peep_vals<Cell>(peep, H, u, p);
        const auto v = variant_ref<Cell>(pre, of_s(c[b * H + u]), p);
        cn = v.c;
        hn = v.h;
        for (int k = 0; k < K; ++k) rg[b * G + k * H + u] = gate_of<Cell>(v, k);
      }
      rc[b * H + u] = cn;
      rh[b * H + u] = hn;
    }
  const int gx = (H + kernels::kCellUnits - 1) / kernels::kCellUnits;
  const int gy = (B + kernels::kCellBT - 1) / kernels::kCellBT;
  lstm_fused_sim::launch(gx, kernels::kCellThreads, 0, false, [&] {
    kernels::cell_fused_kernel<Cell, S>(B, I, H, x.data(), h.data(), c.data(), wi.data(),
                                        wh.data(), bias ? bi.data() : nullptr,
                                        bias ? bh.data() : nullptr, hy.data(), cy.data(),
                                        gates_out ? gt.data() : nullptr,
                                        Cell::kPeephole ? peep.data() : nullptr);
  }, gy);
  const double tol = sizeof(S) == 2 ? 1.5e-2 : 2e-5;
  const std::string tag = "cell<" + std::to_string(sizeof(S)) + ">" + cell_tag<Cell>() +
                          " B=" + std::to_string(B) + " I=" + std::to_string(I) +
                          " H=" + std::to_string(H);
  compare(tag + " h", hy, rh, tol);
  compare(tag + " c", cy, rc, tol);
  if (gates_out) compare(tag + " gates", gt, rg, tol);
}

// ------------------------------------------------------------- persistent
double mode_tol(int mode) {
  switch (mode) {
    case 0: return 3e-2;   // bf16 storage and operands
    case 1: return 4e-3;   // fp16
    case 2: return 1e-2;   // tf32 operands
    default: return 1e-4;  // 3xTF32: about fp32
  }
}
// tests/test_cuda.py's BOUND for the same precision (bf16, fp16, tf32, fp32),
// against a float64 reference that does not round the state to the storage type.
double gpu_test_bound(int mode) {
  static const double bound[] = {3e-2, 5e-3, 1e-2, 1e-4};
  return bound[mode];
}

// How a persistent case is checked.
struct Check {
  double tol;      // relative error bound
  bool round_ref;  // the reference rounds what the kernel stores (h, dgates) to the storage type
};
Check mode_check(int mode) { return {mode_tol(mode), true}; }

// The real planner's plan on a device with `sms` multiprocessors (stub runtime).
PersistentPlan plan_on(int sms, int mode, bool backward, int B, int H, CellKind cell = {}) {
  stub::current_device = sms;
  return plan_persistent(sms, static_cast<MmaMode>(mode), backward, B, H, cell);
}

std::string plan_tag(const PersistentPlan& plan) {
  return " [HS=" + std::to_string(plan.HS) + " blocks=" + std::to_string(plan.blocks) +
         " NTC=" + std::to_string(plan.NTC) + " MT=" + std::to_string(plan.MT) +
         " WMxWK=" + std::to_string(plan.WM) + "x" + std::to_string(plan.WK) + "]";
}

// The launcher's status and launch count: a refused or skipped launch fails.
bool launched(const std::string& tag, cudaError_t err, int launches_before) {
  if (err == cudaSuccess && stub::launches == launches_before + 1) return true;
  std::printf("FAIL %s: launch returned %d, %d launches\n", tag.c_str(), static_cast<int>(err),
              stub::launches - launches_before);
  ++failures;
  return false;
}
const char* mode_name(int mode) {
  static const char* names[] = {"bf16", "f16", "tf32", "3xtf32"};
  return names[mode];
}

// The persistent forward of cell Cell against the cell's equations in
// float64 (variant_ref; the standard cell's are checked against hand-written
// ones in test_pointwise).
template <int MODE, class Cell = StandardCell>
void test_persistent_forward(int B, int H, int T, bool reverse, bool need_grad, int sms,
                             Check chk = mode_check(MODE)) {
  using S = typename P::ModeTraits<MODE>::T;
  constexpr int K = Cell::kGates;
  const auto plan = plan_on(sms, MODE, false, B, H, CellKind{Cell::kVariant, Cell::kPeephole});
  std::string tag = std::string("fwd ") + mode_name(MODE) + cell_tag<Cell>() +
                    " B=" + std::to_string(B) + " H=" + std::to_string(H) +
                    " T=" + std::to_string(T) + (reverse ? " rev" : "") +
                    (need_grad ? " grad" : "");
  if (!plan.ok) {
    std::printf("FAIL %s: no plan (error %d)\n", tag.c_str(), plan.error);
    ++failures;
    return;
  }
  tag += plan_tag(plan);
  const size_t G = K * static_cast<size_t>(H), BH = static_cast<size_t>(B) * H;
  const double a = 1.0 / std::sqrt(double(H));
  auto w = rand_vec<S>(G * H, -2 * a, 2 * a);
  auto h0 = rand_vec<S>(BH, -1, 1), c0 = rand_vec<S>(BH, -1, 1);
  auto xp = rand_vec<S>(T * B * G, -1.5, 1.5);
  auto peep = rand_vec<S>(Cell::kPeepRows * static_cast<size_t>(H), -1, 1);
  std::vector<S> gates(xp), out(T * BH, nan_s<S>()), cells(T * BH, nan_s<S>()),
      hn(BH, nan_s<S>()), cn(BH, nan_s<S>()), staging(plan.staging_elems(), nan_s<S>());

  std::vector<double> h(BH), c(BH), rout(T * BH), rcells(T * BH), rgates(T * B * G);
  for (size_t e = 0; e < BH; ++e) {
    h[e] = of_s(h0[e]);
    c[e] = of_s(c0[e]);
  }
  for (int s = 0; s < T; ++s) {
    const int t = reverse ? T - 1 - s : s;
    std::vector<double> hn_(BH);
    for (int b = 0; b < B; ++b)
      for (int u = 0; u < H; ++u) {
        double pre[4], p[3];
        for (int k = 0; k < K; ++k) {
          const size_t row = k * static_cast<size_t>(H) + u;
          double acc = of_s(xp[(static_cast<size_t>(t) * B + b) * G + row]);
          for (int j = 0; j < H; ++j) acc += of_s(w[row * H + j]) * h[b * H + j];
          pre[k] = acc;
        }
        peep_vals<Cell>(peep, H, u, p);
        const size_t e = static_cast<size_t>(b) * H + u;
        const auto v = variant_ref<Cell>(pre, c[e], p);
        c[e] = v.c;
        hn_[e] = v.h;
        const size_t gi = (static_cast<size_t>(t) * B + b) * G + u;
        for (int k = 0; k < K; ++k) rgates[gi + k * H] = gate_of<Cell>(v, k);
        rout[t * BH + e] = hn_[e];
        rcells[t * BH + e] = c[e];
      }
    for (size_t e = 0; e < BH; ++e) {
      h[e] = chk.round_ref ? of_s(to_s<S>(hn_[e])) : hn_[e];  // the kernel's h is stored as S
    }
  }

  const int before = stub::launches;
  const cudaError_t err = persistent_forward(plan, nullptr, T, reverse, need_grad, w.data(),
                                             h0.data(), c0.data(), gates.data(), out.data(),
                                             need_grad ? cells.data() : nullptr, hn.data(),
                                             cn.data(), staging.data(),
                                             Cell::kPeephole ? peep.data() : nullptr);
  if (!launched(tag, err, before)) return;
  const double tol = chk.tol;
  compare(tag + " output", out, rout, tol);
  std::vector<double> rhn(BH), rcn(BH);
  const int tl = reverse ? 0 : T - 1;
  for (size_t e = 0; e < BH; ++e) {
    rhn[e] = rout[tl * BH + e];
    rcn[e] = rcells[tl * BH + e];
  }
  compare(tag + " h_n", hn, rhn, tol);
  compare(tag + " c_n", cn, rcn, tol);
  if (need_grad) {
    compare(tag + " gates", gates, rgates, tol);
    compare(tag + " cells", cells, rcells, tol);
  } else {
    // gates must still hold the untouched x-projection
    std::vector<double> rx(xp.size());
    for (size_t e = 0; e < xp.size(); ++e) rx[e] = of_s(xp[e]);
    compare(tag + " gates untouched", gates, rx, 0.0);
  }
}

// The persistent backward of cell Cell against the cell's gradient equations
// in float64 (cell_gradients, checked against differences of the forward in
// test_pointwise_variant); the peephole gradient accumulators start at 1.
template <int MODE, class Cell = StandardCell>
void test_persistent_backward(int B, int H, int T, bool reverse, int sms,
                              Check chk = mode_check(MODE)) {
  using S = typename P::ModeTraits<MODE>::T;
  constexpr int K = Cell::kGates;
  const auto plan = plan_on(sms, MODE, true, B, H, CellKind{Cell::kVariant, Cell::kPeephole});
  std::string tag = std::string("bwd ") + mode_name(MODE) + cell_tag<Cell>() +
                    " B=" + std::to_string(B) + " H=" + std::to_string(H) +
                    " T=" + std::to_string(T) + (reverse ? " rev" : "");
  if (!plan.ok) {
    std::printf("FAIL %s: no plan (error %d)\n", tag.c_str(), plan.error);
    ++failures;
    return;
  }
  tag += plan_tag(plan);
  const size_t G = K * static_cast<size_t>(H), BH = static_cast<size_t>(B) * H;
  const double a = 1.0 / std::sqrt(double(H));
  auto w = rand_vec<S>(G * H, -2 * a, 2 * a);
  std::vector<S> gates(T * B * G);
  {
    auto sg = rand_vec<S>(gates.size(), 0.05, 0.95), tg = rand_vec<S>(gates.size(), -0.95, 0.95);
    for (size_t r = 0; r < static_cast<size_t>(T) * B; ++r)
      for (size_t j = 0; j < G; ++j) {
        const bool is_g = j / H == static_cast<size_t>(Cell::kG);
        gates[r * G + j] = is_g ? tg[r * G + j] : sg[r * G + j];
      }
  }
  auto cells = rand_vec<S>(T * BH, -2, 2);
  auto c0 = rand_vec<S>(BH, -2, 2);
  auto go = rand_vec<S>(T * BH, -1, 1);
  auto ghn = rand_vec<S>(BH, -1, 1), gcn = rand_vec<S>(BH, -1, 1);
  auto peep = rand_vec<S>(Cell::kPeepRows * static_cast<size_t>(H), -1, 1);
  std::vector<S> dgates(T * B * G, nan_s<S>()), gh0(BH, nan_s<S>()), gc0(BH, nan_s<S>()),
      staging(plan.staging_elems(), nan_s<S>());
  const size_t PR = Cell::kPeepRows * static_cast<size_t>(H);
  std::vector<float> dpeep(B * PR, 1.f);
  std::vector<double> rdp(B * PR, 1.0);

  std::vector<double> dh(BH), dc(BH), rdg(T * B * G);
  for (size_t e = 0; e < BH; ++e) {
    dh[e] = of_s(ghn[e]);
    dc[e] = of_s(gcn[e]);
  }
  for (int s = T - 1; s >= 0; --s) {
    const int t = reverse ? T - 1 - s : s;
    const int tp = reverse ? t + 1 : t - 1;
    std::vector<double> dg_s(B * G);
    for (int b = 0; b < B; ++b)
      for (int u = 0; u < H; ++u) {
        const size_t e = static_cast<size_t>(b) * H + u;
        const size_t gi = (static_cast<size_t>(t) * B + b) * G + u;
        double gate[K], p[3];
        for (int k = 0; k < K; ++k) gate[k] = of_s(gates[gi + k * H]);
        peep_vals<Cell>(peep, H, u, p);
        const double cv = of_s(cells[t * BH + e]);
        const double cp = s > 0 ? of_s(cells[tp * BH + e]) : of_s(c0[e]);
        const double dhv = of_s(go[t * BH + e]) + dh[e];
        const auto r = cell_gradients<Cell, HostMath>(gate, cv, cp, dhv, dc[e], p);
        dc[e] = r.dc_prev;
        for (int k = 0; k < K; ++k) {
          rdg[gi + k * H] = r.d[k];
          // the GEMM sees dgates stored as S
          dg_s[b * G + k * H + u] = chk.round_ref ? of_s(to_s<S>(r.d[k])) : r.d[k];
        }
        if (Cell::kPeephole) {
          double* acc = &rdp[b * PR + u];
          if (Cell::kInputGate) acc[0] += r.d[0] * cp;
          acc[Cell::kPeepF * H] += r.d[Cell::kF] * cp;
          acc[Cell::kPeepO * H] += r.d[Cell::kO] * cv;
        }
      }
    for (int b = 0; b < B; ++b)
      for (int u = 0; u < H; ++u) {
        double acc = 0;
        for (size_t r = 0; r < G; ++r) acc += dg_s[b * G + r] * of_s(w[r * H + u]);
        dh[b * H + u] = acc;
      }
  }

  const int before = stub::launches;
  const cudaError_t err = persistent_backward(
      plan, nullptr, T, reverse, w.data(), gates.data(), cells.data(), c0.data(), go.data(),
      ghn.data(), gcn.data(), dgates.data(), gh0.data(), gc0.data(), staging.data(),
      Cell::kPeephole ? peep.data() : nullptr, Cell::kPeephole ? dpeep.data() : nullptr);
  if (!launched(tag, err, before)) return;
  const double tol = chk.tol;
  compare(tag + " dgates", dgates, rdg, tol);
  compare(tag + " grad_h0", gh0, dh, tol);
  compare(tag + " grad_c0", gc0, dc, tol);
  if (Cell::kPeephole) compare(tag + " dpeep", dpeep, rdp, tol);
}

void print_plans() {
  // An H100/H200: 132 SMs, 227 KB of shared memory per block, one block per SM
  // (the kernels use ~230-250 registers per thread).
  std::printf("%-7s %-4s %5s %5s | %4s %6s %4s %3s %5s %9s\n", "mode", "dir", "B", "H", "HS",
              "blocks", "NTC", "MT", "WMxWK", "smem KB");
  for (int mode = 0; mode < 4; ++mode)
    for (int bwd = 0; bwd < 2; ++bwd)
      for (int B : {1, 8, 64, 256})
        for (int H : {256, 512, 1024, 1280, 1536, 2048}) {
          const auto p = plan_on(132, mode, bwd != 0, B, H);
          if (p.ok) {
            std::printf("%-7s %-4s %5d %5d | %4d %6d %4d %3d %2dx%-2d %9.1f\n", mode_name(mode),
                        bwd ? "bwd" : "fwd", B, H, p.HS, p.blocks, p.NTC, p.MT, p.WM, p.WK,
                        p.smem_bytes / 1024.0);
          } else {
            std::printf("%-7s %-4s %5d %5d | no plan (per-step path)\n", mode_name(mode),
                        bwd ? "bwd" : "fwd", B, H);
          }
        }
}

template <int MODE>
void persistent_suite(bool full) {
  struct Case {
    int B, H, T, sms;
    bool fwd, bwd;
  };
  std::vector<Case> cases = {
      {1, 1, 3, 4, true, true},    // a single unit: one block, almost all padding
      {3, 33, 4, 8, true, true},   // odd sizes, partial last block
      {17, 40, 3, 6, true, true},  // two m-tiles
      {5, 24, 2, 2, true, true},   // forward HS = 12: the 8-n-tile kernel
  };
  if (full) {
    cases.push_back({40, 100, 3, 16, true, true});  // MT = 3: WM = 2, a warp with one m-tile
    cases.push_back({70, 33, 2, 8, true, true});    // MT = 5: WM = 4
    cases.push_back({130, 16, 2, 4, true, true});   // MT = 9: WM = 8, WK = 1
    cases.push_back({2, 80, 2, 2, false, true});    // backward HS = 40: the 8-n-tile kernel
    cases.push_back({1, 257, 2, 40, true, true});   // K chunks spread over all warps
  }
  for (const auto& c : cases) {
    for (int rev = 0; rev < 2; ++rev) {
      if (c.fwd) {
        test_persistent_forward<MODE>(c.B, c.H, c.T, rev != 0, rev == 0, c.sms);
        if (full) test_persistent_forward<MODE>(c.B, c.H, c.T, rev != 0, rev != 0, c.sms);
      }
      if (c.bwd) test_persistent_backward<MODE>(c.B, c.H, c.T, rev != 0, c.sms);
    }
  }
  // The other cells: three gate blocks (forward slices padded to whole
  // n-tiles: 3·HS = 18 -> 24 columns at H = 33 on 8 SMs, 36 -> 40 on 2 SMs,
  // the 8-n-tile kernel) and peepholes.
  auto variant_cases = [&](auto cell) {
    using Cell = decltype(cell);
    for (const Case& c : {Case{3, 33, 4, 8, true, true}, Case{5, 24, 2, 2, true, true}}) {
      for (int rev = 0; rev < 2; ++rev) {
        test_persistent_forward<MODE, Cell>(c.B, c.H, c.T, rev != 0, rev == 0, c.sms);
        test_persistent_backward<MODE, Cell>(c.B, c.H, c.T, rev != 0, c.sms);
      }
    }
  };
  variant_cases(StandardPeepholeCell{});
  variant_cases(CifgCell{});
  variant_cases(CifgPeepholeCell{});
  variant_cases(NoInputGateCell{});
  variant_cases(NoInputGatePeepholeCell{});
}

// T = 1000 at tests/test_cuda.py's long shapes (T, B, I, H) = (1000, 3, 8, 33) and
// (1000, 65, 16, 100), forward (need_grad) and backward, against an unrounded
// float64 reference with the GPU tests' bounds. Fibers: faster than threads here.
template <int MODE>
void long_suite(bool large_shape) {
  const Check chk{gpu_test_bound(MODE), false};
  lstm_fused_sim::g_fibers = true;
  if (large_shape) {
    test_persistent_forward<MODE>(65, 100, 1000, true, true, 16, chk);
    test_persistent_backward<MODE>(65, 100, 1000, false, 16, chk);
  } else {
    test_persistent_forward<MODE>(3, 33, 1000, false, true, 3, chk);
    test_persistent_backward<MODE>(3, 33, 1000, true, 3, chk);
  }
  lstm_fused_sim::g_fibers = false;
}

// The grid of the benchmarks on an H100/H200: H = 512 on 132 SMs, which the
// planner must split into 128 forward blocks (HS = 4) and 64 backward blocks
// (HS = 8); 32768 and 16384 simulated threads, as fibers. The standard cell,
// then cifg with peepholes.
template <int MODE>
void grid_suite(int B) {
  for (int bwd = 0; bwd < 2; ++bwd) {
    const auto p = plan_on(132, MODE, bwd != 0, B, 512);
    const int want = bwd ? 64 : 128;
    ++checks;
    if (!p.ok || p.blocks != want) {
      std::printf("FAIL grid %s %s B=%d H=512: plan ok=%d blocks=%d, expected %d\n",
                  mode_name(MODE), bwd ? "bwd" : "fwd", B, p.ok, p.blocks, want);
      ++failures;
    }
  }
  lstm_fused_sim::g_fibers = true;
  test_persistent_forward<MODE>(B, 512, 2, false, true, 132);
  test_persistent_backward<MODE>(B, 512, 2, false, 132);
  // a three-gate cell with peepholes on the same grid: 12 of 16 columns per
  // forward block, K = 3H backward
  test_persistent_forward<MODE, CifgPeepholeCell>(B, 512, 2, false, true, 132);
  test_persistent_backward<MODE, CifgPeepholeCell>(B, 512, 2, false, 132);
  lstm_fused_sim::g_fibers = false;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string what = argc > 1 ? argv[1] : "quick";
  stub::register_mode<0>();
  stub::register_mode<1>();
  stub::register_mode<2>();
  stub::register_mode<3>();
  if (what == "plans") {
    print_plans();
    return 0;
  }
  verbose = what == "long" || what == "grid";
  setvbuf(stdout, nullptr, _IOLBF, 0);  // progress of the slow runs, line by line
  if (what == "long") {
    // every mode at the small shape first (cheap), then the large one (minutes each)
    long_suite<0>(false);
    long_suite<1>(false);
    long_suite<2>(false);
    long_suite<3>(false);
    long_suite<0>(true);
    long_suite<1>(true);
    long_suite<2>(true);
    long_suite<3>(true);
  } else if (what == "grid") {
    grid_suite<0>(8);
    grid_suite<3>(64);
  }
  if (what == "long" || what == "grid") {
    std::printf("%s: %d checks, %d failures\n", failures ? "FAILED" : "OK", checks, failures);
    return failures ? 1 : 0;
  }
  const bool full = what == "full";
  test_pointwise<float>(3, 33, true, true);
  test_pointwise<double>(2, 7, false, false);
  test_pointwise<__half>(5, 20, true, false);
  test_pointwise<__nv_bfloat16>(4, 9, false, true);
  test_pointwise_variants<float>(3, 21);
  test_pointwise_variants<double>(2, 5);
  test_pointwise_variants<__nv_bfloat16>(2, 17);

  test_cell<float>(1, 7, 33, true, true);
  test_cell<float>(3, 70, 9, false, false);
  test_cell<__nv_bfloat16>(8, 5, 17, true, true);
  test_cell<__half>(2, 1, 1, true, true);
  test_cell<float, StandardPeepholeCell>(3, 7, 17, true, true);
  test_cell<float, CifgCell>(5, 9, 12, false, true);
  test_cell<__nv_bfloat16, CifgPeepholeCell>(4, 6, 9, true, true);
  test_cell<float, NoInputGateCell>(2, 5, 20, true, true);
  test_cell<__half, NoInputGatePeepholeCell>(65, 4, 11, true, true);  // two batch tiles
  if (full) {
    test_cell<float>(64, 33, 8, true, true);
    test_cell<float>(65, 3, 12, true, true);  // two batch tiles
    test_cell<float>(9, 0, 16, true, false);  // no input features
  }

  persistent_suite<0>(full);
  persistent_suite<1>(full);
  persistent_suite<2>(full);
  persistent_suite<3>(full);
  // T = 1000 at the GPU tests' bounds, bf16 and fp32 (3xTF32) at the smaller
  // shape (every mode and both shapes: `long`). Fibers hide races from
  // ThreadSanitizer's view of threads: not under --tsan.
#ifndef __SANITIZE_THREAD__
  long_suite<0>(false);
  long_suite<3>(false);
#endif

  std::printf("%s: %d checks, %d failures\n", failures ? "FAILED" : "OK", checks, failures);
  return failures ? 1 : 0;
}
