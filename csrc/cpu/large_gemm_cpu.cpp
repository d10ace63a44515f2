// The two libraries behind large_mm_out_cpu and the timed choice between them.
#include "large_gemm_cpu.h"

#include "brgemm_cpu.h"
#include "engine_cpu.h"

#include <torch/library.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <exception>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <tuple>
#include <optional>
#include <vector>

// oneDNN's matmul as ATen's own 16-bit GEMMs call it. libtorch_cpu exports it;
// its header (ATen/native/mkldnn/Matmul.h) is not among the installed ones.
// result = beta · result + alpha · mat1 · mat2.
namespace at::native {
TORCH_API void mkldnn_matmul(const at::Tensor& mat1, const at::Tensor& mat2,
                             const at::Tensor& result, float beta, float alpha);
}

namespace lstm_fused {
namespace {

// Called directly in every dtype, so that what runs as onednn is oneDNN
// whatever ATen's routing of a 16-bit at::mm decides (its CPU BLAS can also
// end in MKL's bf16 GEMM, which on CPUs where MKL takes its generic paths
// converts to float and runs an AVX2 sgemm).
void onednn_mm_out(at::Tensor& out, const at::Tensor& a, const at::Tensor& b) {
  at::native::mkldnn_matmul(a, b, out, /*beta=*/0.f, /*alpha=*/1.f);
}

void mkl_mm_out(at::Tensor& out, const at::Tensor& a, const at::Tensor& b) {
  if (out.scalar_type() == at::kFloat) {
    at::mm_out(out, a, b);
  } else {
    out.copy_(at::mm(a.to(at::kFloat), b.to(at::kFloat)));
  }
}

void run(CpuEngine e, at::Tensor& out, const at::Tensor& a, const at::Tensor& b, bool counted) {
  if (counted) count_cpu_large_gemm(e);
  if (e == CpuEngine::Onednn) {
    onednn_mm_out(out, a, b);
  } else {
    mkl_mm_out(out, a, b);
  }
}

// t's first `rows` rows, stored as t is (row- or column-major): a strided
// slice of a column-major matrix would send oneDNN through a copy that the
// whole call does not make, and time the copy.
at::Tensor first_rows(const at::Tensor& t, int64_t rows) {
  const auto s = t.narrow(0, 0, rows);
  return t.stride(0) == 1 && t.size(1) > 1 ? s.t().contiguous().t() : s.contiguous();
}

// The power of two at or below M (at least 1): calls whose rows differ by
// less than 2x share a timed choice.
int64_t rows_class(int64_t M) {
  return int64_t{1} << (63 - __builtin_clzll(static_cast<uint64_t>(std::max<int64_t>(M, 1))));
}

// A small product checked against float64: oneDNN's matmul throws where the
// CPU lacks what it needs for a type (float16 without AVX512_FP16 or
// AVX_NE_CONVERT, as on AMD Zen 4) or a build leaves it out.
bool probe(at::ScalarType dtype) {
  try {
    const auto opts = at::TensorOptions().dtype(at::kFloat);
    const auto a = at::arange(3 * 40, opts).view({3, 40}).sin().to(dtype);
    const auto b = at::arange(40 * 24, opts).view({40, 24}).cos().to(dtype);
    auto c = at::full({3, 24}, std::numeric_limits<float>::quiet_NaN(), opts).to(dtype);
    at::native::mkldnn_matmul(a, b, c, 0.f, 1.f);
    const double tol = dtype == at::kFloat ? 1e-5 : 2e-2;
    return at::allclose(c.to(at::kDouble), at::mm(a.to(at::kDouble), b.to(at::kDouble)), tol, tol);
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace

bool onednn_matmul_usable(at::ScalarType dtype) {
  static const std::array<bool, 3> usable{probe(at::kFloat), probe(at::kBFloat16), probe(at::kHalf)};
  switch (dtype) {
    case at::kFloat: return usable[0];
    case at::kBFloat16: return usable[1];
    case at::kHalf: return usable[2];
    default: return false;
  }
}

void large_mm_out_cpu(at::Tensor& out, const at::Tensor& a, const at::Tensor& b, bool counted) {
  const auto t = out.scalar_type();
  if (t == at::kDouble) {
    at::mm_out(out, a, b);
    return;
  }
  // The fixed order: float on MKL as torch.mm runs it; the 16-bit types
  // natively where the CPU has dot products for them (their products are
  // exact in float either way).
  std::vector<CpuEngine> engines{CpuEngine::Mkl};
  if (onednn_matmul_usable(t)) {
    const bool native = t != at::kFloat && cpu_has_16bit_dot(t);
    engines.insert(native ? engines.begin() : engines.end(), CpuEngine::Onednn);
  }
  const int64_t M = a.size(0);
  const EngineKey key{EngineUse::LargeGemm, t, rows_class(M), b.size(1), a.size(1), false};
  // A pinned onednn_linear takes its library (oneDNN) for these too.
  const bool linear = pinned_cpu_engine() == CpuEngine::OnednnLinear &&
                      std::find(engines.begin(), engines.end(), CpuEngine::Onednn) != engines.end();
  auto e = linear ? std::optional<CpuEngine>(CpuEngine::Onednn) : settled_cpu_engine(key, engines);
  if (!e) {
    // About 2^29 multiply-adds (a few ms), at least 256 rows: the two
    // libraries' ratio on fewer rows strayed up to ~15% from the whole call's.
    const int64_t per_row = std::max<int64_t>(1, a.size(1) * b.size(1));
    const int64_t rows = std::min<int64_t>(M, std::max<int64_t>(256, (int64_t{1} << 29) / per_row));
    auto o = at::empty({rows, out.size(1)}, out.options());
    const auto x = first_rows(a, rows);
    // Only the engines that run t here: oneDNN's float16 matmul throws on
    // CPUs without AVX512_FP16 (AMD Zen 4).
    std::vector<std::pair<CpuEngine, std::function<void()>>> candidates;
    for (const auto c : engines) {
      if (c == CpuEngine::Onednn) candidates.emplace_back(c, [&] { onednn_mm_out(o, x, b); });
      if (c == CpuEngine::Mkl) candidates.emplace_back(c, [&] { mkl_mm_out(o, x, b); });
    }
    e = timed_cpu_engine(key, candidates);
  }
  run(*e, out, a, b, counted);
}

namespace {

// (rows class, N, K, threads) -> whether the kept blocks ran faster.
std::mutex g_projection_mutex;
std::map<std::tuple<int64_t, int64_t, int64_t, int>, bool> g_projection_blocks;
// Test hooks: 0 times the choice, 1 pins the large GEMM, 2 the kept blocks;
// and the products that ran on the kept blocks.
std::atomic<int> g_projection_pin{0};
std::atomic<int64_t> g_projection_block_runs{0};

// out (M, N) = x · wᵀ on w's kept column blocks: each thread takes a share of
// the blocks (a block, K x 64 floats, stays in its L2) and runs every row
// through it, 64 rows per brgemm call.
void blocks_mm_out(at::Tensor& out, const at::Tensor& x, const at::Tensor& w) {
  const BrgemmBlocks<float> blocks(w, brgemm_block(w.size(0)), 0, /*vnni=*/false);
  const auto xc = x.stride(1) == 1 ? x : x.contiguous();
  const int64_t M = xc.size(0), lda = xc.stride(0), N = out.size(1), nb = blocks.width();
  constexpr int64_t kRows = 64;
  const float* a = xc.const_data_ptr<float>();
  float* c = out.mutable_data_ptr<float>();
  at::parallel_for(0, blocks.blocks(), 1, [&](int64_t j0, int64_t j1) {
    for (int64_t r = 0; r < M; r += kRows) {
      for (int64_t j = j0; j < j1; ++j) {
        blocks.run(j, std::min(kRows, M - r), a + r * lda, lda, c + r * N + j * nb, N, false);
      }
    }
    blocks.release();
  });
}

}  // namespace

void projection_out_cpu(at::Tensor& out, const at::Tensor& x, const at::Tensor& w,
                        bool weight_kept, bool counted) {
  const auto wt = w.t();
  if (!weight_kept || at::globalContext().deterministicAlgorithms() ||
      out.scalar_type() != at::kFloat || x.scalar_type() != at::kFloat || !w.is_contiguous() ||
      !out.is_contiguous() || x.size(0) == 0 || !brgemm_usable(at::kFloat, w.size(0), w.size(1))) {
    large_mm_out_cpu(out, x, wt, counted);
    return;
  }
  const int64_t M = x.size(0);
  const auto key = std::make_tuple(rows_class(M), w.size(0), w.size(1), at::get_num_threads());
  std::optional<bool> blocks;
  if (const int pin = g_projection_pin.load(std::memory_order_relaxed); pin != 0) {
    blocks = pin == 2;
  } else if (pinned_cpu_engine() != CpuEngine::Auto) {
    blocks = false;  // a pinned engine settles the call without timing
  }
  if (!blocks) {
    std::lock_guard<std::mutex> lock(g_projection_mutex);
    if (const auto it = g_projection_blocks.find(key); it != g_projection_blocks.end()) {
      blocks = it->second;
    }
  }
  if (!blocks) {
    // ~2^30 multiply-adds of rows, twice what large_mm_out_cpu times on: each
    // call on the kept blocks first compares the weight with its copy, which
    // on fewer rows weighs more than in the call (AMD EPYC, N = 2048, K = 512,
    // 2 threads: the blocks 1.5% faster on 512 rows, 4.5% on 800).
    const int64_t rows = std::min<int64_t>(
        M, std::max<int64_t>(256, (int64_t{1} << 30) / std::max<int64_t>(1, w.numel())));
    auto o = at::empty({rows, out.size(1)}, out.options());
    const auto xr = first_rows(x, rows);
    // the warmup round lays w out (and keeps it), as the call's first run does
    const auto t = median_seconds({{[&] { large_mm_out_cpu(o, xr, wt, /*counted=*/false); }, 1},
                                   {[&] { blocks_mm_out(o, xr, w); }, 1}},
                                  /*warmup=*/1, /*min_rounds=*/7);
    blocks = t[1] < t[0];
    std::lock_guard<std::mutex> lock(g_projection_mutex);
    g_projection_blocks[key] = *blocks;
  }
  if (!*blocks) {
    large_mm_out_cpu(out, x, wt, counted);
    return;
  }
  if (counted) {
    count_cpu_large_gemm(CpuEngine::Onednn);
    g_projection_block_runs.fetch_add(1, std::memory_order_relaxed);
  }
  blocks_mm_out(out, x, w);
}

std::vector<std::string> projection_choices() {
  std::lock_guard<std::mutex> lock(g_projection_mutex);
  std::vector<std::string> out;
  for (const auto& [k, blocks] : g_projection_blocks) {
    const auto& [M, N, K, threads] = k;
    out.push_back("projection Float B=" + std::to_string(M) + " N=" + std::to_string(N) +
                  " K=" + std::to_string(K) + " threads=" + std::to_string(threads) + " -> " +
                  (blocks ? "onednn kept blocks" : "large GEMM"));
  }
  return out;
}

void clear_projection_choices() {
  std::lock_guard<std::mutex> lock(g_projection_mutex);
  g_projection_blocks.clear();
}

TORCH_LIBRARY_FRAGMENT(lstm_fused, m) {
  m.def("_cpu_onednn_matmul_usable(ScalarType dtype) -> bool", &onednn_matmul_usable);
  m.def("_cpu_projection_choices() -> str[]", &projection_choices);
  m.def("_cpu_pin_projection(int mode) -> ()", [](int64_t mode) {
    TORCH_CHECK(mode >= 0 && mode <= 2, "lstm_fused: projection mode must be 0, 1 or 2");
    g_projection_pin.store(static_cast<int>(mode), std::memory_order_relaxed);
  });
  m.def("_cpu_projection_block_runs() -> int",
        [] { return g_projection_block_runs.load(std::memory_order_relaxed); });
}

}  // namespace lstm_fused
