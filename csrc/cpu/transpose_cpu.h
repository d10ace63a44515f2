#pragma once
// Weight layouts are built from transposed blocks of the user's (rows, K)
// weights. ATen's strided copy of a permuted view moves one element at a time
// (1.2 ms for a 512 x 2048 float weight on an AMD EPYC, as long as 10-15
// recurrent steps); ATen's vector transposes move whole vectors.
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>

namespace lstm_fused {

// dst[j·ld_dst + i] = src[i·ld_src + j] for i < M, j < N. Tiles of 32 x 32:
// the most ATen's 16-bit transposes take (its float one tiles by itself).
template <typename T>
inline void transpose_into(const T* src, int64_t ld_src, T* dst, int64_t ld_dst, int64_t M,
                           int64_t N) {
  constexpr int64_t kTile = 32;
  for (int64_t i = 0; i < M; i += kTile) {
    for (int64_t j = 0; j < N; j += kTile) {
      at::vec::transpose_mxn<T>(src + i * ld_src + j, ld_src, dst + j * ld_dst + i, ld_dst,
                                static_cast<int>(std::min(kTile, M - i)),
                                static_cast<int>(std::min(kTile, N - j)));
    }
  }
}

}  // namespace lstm_fused
