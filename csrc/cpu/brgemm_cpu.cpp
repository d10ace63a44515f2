// The probe behind brgemm_support: one small product per type, once.
#include "brgemm_cpu.h"
#include "recurrence_cpu.h"

#include <exception>
#include <limits>
#include <mutex>

namespace lstm_fused {
namespace {

template <typename scalar_t>
BrgemmSupport probe() {
  BrgemmSupport s;
  const auto dtype = c10::CppTypeToScalarType<scalar_t>::value;
  // 16-bit types only where the CPU has dot products for them: elsewhere the
  // micro-kernel has no fast path to offer (and is not asked to find one).
  if (dtype != at::kFloat && !cpu_has_16bit_dot(dtype)) return s;
  s.vnni = dtype != at::kFloat && at::native::cpublas::could_pack(dtype);
  try {
    // Non-trivial sizes: two blocks of 16 columns, K = 32, three rows.
    const auto w = timing_operand({32, 32}, at::TensorOptions().dtype(dtype));
    const auto a = timing_operand({3, 32}, at::TensorOptions().dtype(dtype));
    BrgemmBlocks<scalar_t> blocks(w, 16, false, s.vnni);
    auto c = at::full({3, 32}, std::numeric_limits<float>::quiet_NaN());
    for (int64_t j = 0; j < blocks.blocks(); ++j) {
      blocks.run(j, 3, a.template data_ptr<scalar_t>(), 32, c.data_ptr<float>() + j * 16, 32,
                 false);
    }
    blocks.release();
    const auto ref = at::mm(a.to(at::kFloat), w.to(at::kFloat).t());
    s.usable = at::allclose(c, ref, 1e-3, 1e-3);
  } catch (const std::exception&) {
    s.usable = false;
  }
  return s;
}

}  // namespace

BrgemmSupport brgemm_support(at::ScalarType dtype) {
  static std::once_flag once;
  static BrgemmSupport f32, bf16, f16;
  std::call_once(once, [] {
    f32 = probe<float>();
    bf16 = probe<at::BFloat16>();
    f16 = probe<at::Half>();
  });
  switch (dtype) {
    case at::kFloat: return f32;
    case at::kBFloat16: return bf16;
    case at::kHalf: return f16;
    default: return {};
  }
}

}  // namespace lstm_fused
