#pragma once
// A vector of floats stored as the tensor's 16-bit type: the one rounding
// step of the CPU kernels (the cell update's c_t, h_t and gates; the oneDNN
// product's rows in bfloat16/float16).
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <type_traits>

namespace lstm_fused {

// p[0, Vectorized<float>::size()) = v rounded to nearest even; scalar_t
// bfloat16 or float16.
template <typename scalar_t>
inline void store_rounded(const at::vec::Vectorized<float>& v, scalar_t* p) {
#if defined(CPU_CAPABILITY_AVX512) && defined(__AVX512BF16__)
  if constexpr (std::is_same_v<scalar_t, at::BFloat16>) {
    // one instruction where ATen's portable conversion takes eight; it also
    // flushes float denormals (below 1.2e-38) to zero
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), (__m256i)_mm512_cvtneps_pbh(v));
    return;
  }
#endif
  at::vec::convert_from_float<scalar_t>(v, v).store(p, at::vec::Vectorized<float>::size());
}

}  // namespace lstm_fused
