#pragma once
// Pre-activations of a block of units as dot products along K, on the
// weights and inputs as the user's tensors hold them (both K-contiguous), for
// AVX-512 builds. At a small batch the library GEMMs vectorise along the
// batch or the units and pack the weight rows on every call (about half
// their lanes and a copy of the block); here every lane runs along K, and
// 16 partial sums at a time are folded into one vector of 16 results.
//
// Tile: 4 weight rows × 4 input rows, 16 accumulators, 8 loads per 16 FMAs.
#include <algorithm>
#include <cstdint>

#if defined(CPU_CAPABILITY_AVX512)
#include <immintrin.h>
#endif

namespace lstm_fused {

#if defined(CPU_CAPABILITY_AVX512)
namespace dot_detail {

// Lane j of 128-bit lane L of the result: the sum of the 4 elements in lane
// L of the j-th of (a, b, c, d).
inline __m512 fold4(__m512 a, __m512 b, __m512 c, __m512 d) {
  const __m512 t0 = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
  const __m512 t1 = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
  return _mm512_add_ps(_mm512_shuffle_ps(t0, t1, _MM_SHUFFLE(1, 0, 1, 0)),
                       _mm512_shuffle_ps(t0, t1, _MM_SHUFFLE(3, 2, 3, 2)));
}

// Lane v of the result: the sum of all 16 lanes of v[v].
inline __m512 fold16(const __m512 (&v)[16]) {
  const __m512 u0 = fold4(v[0], v[1], v[2], v[3]), u1 = fold4(v[4], v[5], v[6], v[7]);
  const __m512 u2 = fold4(v[8], v[9], v[10], v[11]), u3 = fold4(v[12], v[13], v[14], v[15]);
  const __m512 w01 = _mm512_add_ps(_mm512_shuffle_f32x4(u0, u1, _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_f32x4(u0, u1, _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512 w23 = _mm512_add_ps(_mm512_shuffle_f32x4(u2, u3, _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_f32x4(u2, u3, _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm512_add_ps(_mm512_shuffle_f32x4(w01, w23, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(w01, w23, _MM_SHUFFLE(3, 1, 3, 1)));
}

// acc[4r + j] += a[r] · w[j] over k in [0, K), K-contiguous rows.
inline void accumulate(__m512 (&acc)[16], const float* const (&a)[4], const float* const (&w)[4],
                       int64_t K) {
  auto step = [&](int64_t k, __mmask16 m) {
    __m512 wv[4], av[4];
    for (int j = 0; j < 4; ++j) wv[j] = _mm512_maskz_loadu_ps(m, w[j] + k);
    for (int r = 0; r < 4; ++r) av[r] = _mm512_maskz_loadu_ps(m, a[r] + k);
    for (int r = 0; r < 4; ++r) {
      for (int j = 0; j < 4; ++j) acc[4 * r + j] = _mm512_fmadd_ps(av[r], wv[j], acc[4 * r + j]);
    }
  };
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) step(k, static_cast<__mmask16>(0xFFFF));
  if (k < K) step(k, static_cast<__mmask16>((1u << (K - k)) - 1));
}

// Row pointers of a tile of 4 rows from `first` (count of them real) in two
// K-contiguous matrices; a partial tile repeats its last row, whose results
// are not stored.
inline void tile_rows(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t first,
                      int64_t count, const float* (&pa)[4], const float* (&pb)[4]) {
  for (int64_t i = 0; i < 4; ++i) {
    const int64_t row = first + std::min(i, count - 1);
    pa[i] = a + row * lda;
    pb[i] = b + row * ldb;
  }
}

}  // namespace dot_detail

// out[r·ldo + u] = x[r]·w_x[u] + h[r]·w_h[u] for r < B, u < n:
//   x    (B, I)  rows of stride I      w_x  (n, I) rows of stride I
//   h    (B, H)  rows of stride H      w_h  (n, H) rows of stride H
//   out  (B, ldo) the first n columns written
inline void dot_gates(int64_t B, int64_t n, int64_t I, int64_t H, const float* x, const float* h,
                      const float* w_x, const float* w_h, float* out, int64_t ldo) {
  using namespace dot_detail;
  for (int64_t u = 0; u < n; u += 4) {
    const int64_t nu = std::min<int64_t>(4, n - u);
    const float *wx[4], *wh[4];
    tile_rows(w_x, I, w_h, H, u, nu, wx, wh);
    for (int64_t r0 = 0; r0 < B; r0 += 4) {
      const int64_t nr = std::min<int64_t>(4, B - r0);
      const float *ax[4], *ah[4];
      tile_rows(x, I, h, H, r0, nr, ax, ah);
      __m512 acc[16];
      for (auto& a : acc) a = _mm512_setzero_ps();
      accumulate(acc, ax, wx, I);
      accumulate(acc, ah, wh, H);
      alignas(64) float sums[16];
      _mm512_store_ps(sums, fold16(acc));
      for (int64_t r = 0; r < nr; ++r) {
        std::copy(sums + 4 * r, sums + 4 * r + nu, out + (r0 + r) * ldo + u);
      }
    }
  }
}
#endif

}  // namespace lstm_fused
