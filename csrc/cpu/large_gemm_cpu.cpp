// The two libraries behind large_mm_out_cpu and the timed choice between them.
#include "large_gemm_cpu.h"

#include "brgemm_cpu.h"
#include "engine_cpu.h"
#include "host_pool.h"
#include "transpose_cpu.h"

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

namespace {

// out = a · b on the library chosen for (dtype, rows class, N, K).
void library_mm_out(at::Tensor& out, const at::Tensor& a, const at::Tensor& b, bool counted) {
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

// Where brgemm over a weight's column blocks is timed against the library's
// GEMM: an inference's input projection on W_ih's kept blocks, or a product
// whose right operand b (K, N) is dense, laid out per call by copying runs of
// b's rows (~0.1 ms per 4 MiB): with a's rows dense (dx = dgates · W_ih), or
// a stored transposed (dW = dgatesᵀ · x), which the call transposes first
// (~0.4 ms per 6 MiB on 2 threads) since brgemm reads a's rows.
enum class BlocksUse : int { KeptWeight = 0, DenseB = 1, DenseBTransposedA = 2, kCount };

// a is stored as its transpose: aᵀ dense.
bool stored_transposed(const at::Tensor& a) {
  return a.dim() == 2 && a.size(0) > 1 && a.size(1) > 1 && a.stride(0) == 1 &&
         a.stride(1) == a.size(0);
}

// a (M, K) with dense rows: a itself, or a's transposed copy (from the host
// pool) when a is stored transposed. Bands of 256 of a's rows per task, read
// in runs of 32 rows of aᵀ.
at::Tensor dense_rows(const at::Tensor& a) {
  if (a.stride(1) == 1) return a;
  at::Tensor r = pooled_empty(a.sizes(), a.options());
  const int64_t M = a.size(0), K = a.size(1);
  constexpr int64_t kBand = 256, kRun = 32;
  const float* s = a.const_data_ptr<float>();
  float* d = r.mutable_data_ptr<float>();
  at::parallel_for(0, (M + kBand - 1) / kBand, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t m0 = b * kBand, m = std::min(kBand, M - m0);
      for (int64_t k = 0; k < K; k += kRun) {
        transpose_into(s + k * M + m0, M, d + m0 * K + k, K, std::min(kRun, K - k), m);
      }
    }
  });
  return r;
}

// (use, rows class, N, K, threads) -> whether the blocks ran faster.
std::mutex g_blocks_mutex;
std::map<std::tuple<int, int64_t, int64_t, int64_t, int>, bool> g_blocks;
// Test hooks: 0 times the choice, 1 pins the library, 2 the blocks; and the
// products that ran on the blocks, per use.
std::atomic<int> g_blocks_pin{0};
std::array<std::atomic<int64_t>, static_cast<int>(BlocksUse::kCount)> g_block_runs{};

// out (M, N) = x · wᵀ on w's column blocks: each thread takes a share of the
// blocks and runs every row through them, 64 rows per brgemm call. Beyond
// K = 2048, K in chunks of 1024 that accumulate, so that a block's chunk
// stays in L2 (AMD EPYC, 2 threads, 800 x 4096 · 4096 x 1024: 32.4 ms
// against 53 ms unchunked; bench/NOTES.md v20).
void blocks_mm_out(at::Tensor& out, const at::Tensor& x_any, const at::Tensor& w) {
  const BrgemmBlocks<float> blocks(w, brgemm_block(w.size(0)), 0, /*vnni=*/false);
  const at::Tensor x = dense_rows(x_any);
  const int64_t M = x.size(0), K = x.size(1), lda = x.stride(0), N = out.size(1);
  const int64_t nb = blocks.width(), kc = K > 2048 ? 1024 : K;
  constexpr int64_t kRows = 64;
  const float* a = x.const_data_ptr<float>();
  float* c = out.mutable_data_ptr<float>();
  at::parallel_for(0, blocks.blocks(), 1, [&](int64_t j0, int64_t j1) {
    for (int64_t k0 = 0; k0 < K; k0 += kc) {
      const int64_t kk = std::min(kc, K - k0);
      for (int64_t r = 0; r < M; r += kRows) {
        for (int64_t j = j0; j < j1; ++j) {
          blocks.run_chunk(j, std::min(kRows, M - r), k0, kk, a + r * lda + k0, lda,
                           c + r * N + j * nb, N, k0 > 0);
        }
      }
    }
    blocks.release();
  });
}

// Whether the blocks can run out (M, N) = x · wᵀ for w (N, K): float, x with
// dense rows or stored transposed, N in blocks of 16 columns; deterministic
// algorithms keep the library.
bool blocks_usable(const at::Tensor& out, const at::Tensor& x, const at::Tensor& w) {
  return !at::globalContext().deterministicAlgorithms() && out.scalar_type() == at::kFloat &&
         x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat && out.is_contiguous() &&
         (x.stride(1) == 1 || stored_transposed(x)) && x.size(0) > 0 &&
         brgemm_usable(at::kFloat, w.size(0), w.size(1));
}

// Whether out = x · wᵀ runs on w's blocks: as the test hook pins it, the
// library under a pinned engine, else timed once per (use, rows class, N, K,
// threads) against library(o, x's first rows).
bool blocks_chosen(BlocksUse use, const at::Tensor& out, const at::Tensor& x, const at::Tensor& w,
                   const std::function<void(at::Tensor&, const at::Tensor&)>& library) {
  if (const int pin = g_blocks_pin.load(std::memory_order_relaxed); pin != 0) return pin == 2;
  if (pinned_cpu_engine() != CpuEngine::Auto) return false;  // settled without timing
  const int64_t M = x.size(0);
  const auto key = std::make_tuple(static_cast<int>(use), rows_class(M), w.size(0), w.size(1),
                                   at::get_num_threads());
  {
    std::lock_guard<std::mutex> lock(g_blocks_mutex);
    if (const auto it = g_blocks.find(key); it != g_blocks.end()) return it->second;
  }
  // ~2^30 multiply-adds of rows, twice what large_mm_out_cpu times on: each
  // call on the kept blocks first compares the weight with its copy, which
  // on fewer rows weighs more than in the call (AMD EPYC, N = 2048, K = 512,
  // 2 threads: the blocks 1.5% faster on 512 rows, 4.5% on 800).
  const int64_t rows = std::min<int64_t>(
      M, std::max<int64_t>(256, (int64_t{1} << 30) / std::max<int64_t>(1, w.numel())));
  auto o = at::empty({rows, out.size(1)}, out.options());
  const auto xr = first_rows(x, rows);
  // the warmup round lays w out (and keeps it), as the call's first run does
  const auto t = median_seconds(
      {{[&] { library(o, xr); }, 1}, {[&] { blocks_mm_out(o, xr, w); }, 1}}, /*warmup=*/1,
      /*min_rounds=*/7);
  const bool blocks = t[1] < t[0];
  std::lock_guard<std::mutex> lock(g_blocks_mutex);
  g_blocks[key] = blocks;
  return blocks;
}

void run_blocks(BlocksUse use, at::Tensor& out, const at::Tensor& x, const at::Tensor& w,
                bool counted) {
  if (counted) {
    count_cpu_large_gemm(CpuEngine::Onednn);
    g_block_runs[static_cast<int>(use)].fetch_add(1, std::memory_order_relaxed);
  }
  blocks_mm_out(out, x, w);
}

}  // namespace

void large_mm_out_cpu(at::Tensor& out, const at::Tensor& a, const at::Tensor& b, bool counted) {
  const auto w = b.t();
  if (b.is_contiguous() && blocks_usable(out, a, w)) {
    const auto use = a.stride(1) == 1 ? BlocksUse::DenseB : BlocksUse::DenseBTransposedA;
    if (blocks_chosen(use, out, a, w, [&](at::Tensor& o, const at::Tensor& x) {
          library_mm_out(o, x, b, false);
        })) {
      run_blocks(use, out, a, w, counted);
      return;
    }
  }
  library_mm_out(out, a, b, counted);
}

void projection_out_cpu(at::Tensor& out, const at::Tensor& x, const at::Tensor& w,
                        bool weight_kept, bool counted) {
  const auto wt = w.t();
  if (weight_kept && w.is_contiguous() && blocks_usable(out, x, w) &&
      blocks_chosen(BlocksUse::KeptWeight, out, x, w, [&](at::Tensor& o, const at::Tensor& xr) {
        library_mm_out(o, xr, wt, false);
      })) {
    run_blocks(BlocksUse::KeptWeight, out, x, w, counted);
    return;
  }
  large_mm_out_cpu(out, x, wt, counted);
}

std::vector<std::string> block_choices() {
  std::lock_guard<std::mutex> lock(g_blocks_mutex);
  std::vector<std::string> out;
  for (const auto& [k, blocks] : g_blocks) {
    const auto& [use, M, N, K, threads] = k;
    const bool kept = use == static_cast<int>(BlocksUse::KeptWeight);
    const bool dense_a = use == static_cast<int>(BlocksUse::DenseB);
    const char* what = kept      ? "projection"
                       : dense_a ? "dense-weight GEMM"
                                 : "dense-weight GEMM, a transposed";
    out.push_back(std::string(what) + " Float B=" +
                  std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K) +
                  " threads=" + std::to_string(threads) + " -> " +
                  (blocks ? (kept ? "onednn kept blocks" : "onednn blocks") : "large GEMM"));
  }
  return out;
}

void clear_block_choices() {
  std::lock_guard<std::mutex> lock(g_blocks_mutex);
  g_blocks.clear();
}

TORCH_LIBRARY_FRAGMENT(lstm_fused, m) {
  m.def("_cpu_onednn_matmul_usable(ScalarType dtype) -> bool", &onednn_matmul_usable);
  m.def("_cpu_block_choices() -> str[]", &block_choices);
  m.def("_cpu_pin_blocks(int mode) -> ()", [](int64_t mode) {
    TORCH_CHECK(mode >= 0 && mode <= 2, "lstm_fused: blocks mode must be 0, 1 or 2");
    g_blocks_pin.store(static_cast<int>(mode), std::memory_order_relaxed);
  });
  // [on W_ih's kept blocks (inference projections), on a dense b's blocks
  // with a's rows dense (dx), with a stored transposed (dW)]
  m.def("_cpu_block_runs() -> int[]", [] {
    std::vector<int64_t> runs;
    for (const auto& r : g_block_runs) runs.push_back(r.load(std::memory_order_relaxed));
    return runs;
  });
}

}  // namespace lstm_fused
