#pragma once
// Weight layouts kept from one call to the next. Laying a weight out for the
// micro-kernel (brgemm_cpu.h) reads and writes all of it on every call: 0.2-0.7
// ms for a 2048 x 512 float weight on an AMD EPYC, 1-5% of a (100, 8, 512)
// layer call (bench/NOTES.md v19). A kept layout is handed out only while the
// weight holds exactly the bytes it was laid out from: each lookup compares
// the weight with a copy taken then. A version counter would not do:
// parameters changed through .data, or by code outside autograd, keep theirs.
// The comparison reads the weight and the copy (2-4x cheaper than laying out);
// a weight that changed between calls costs that copy once more. One found
// changed twice in a row (training) is laid out without a copy for its next
// lookups, then tried again.
//
// Bounded by what recent calls used: an entry not looked up in the latest 256
// lookups goes; and at most 256 MB (copies and layouts together), least
// recently used out first; LSTM_FUSED_CPU_CACHE_MB caps it lower (0 keeps
// nothing); lstm_fused.empty_cache() empties it.
#include <ATen/ATen.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>

namespace lstm_fused {

// The layout of w that build() makes, kept for the next lookup of the same
// w (its pointer, sizes, strides, dtype and bytes) and kind (what tells
// build's layouts apart: block widths, packing). w must be dense; others are
// built every time.
at::Tensor kept_layout(const at::Tensor& w, const std::array<int64_t, 4>& kind,
                       const std::function<at::Tensor()>& build);

struct WeightLayoutStats {
  size_t bytes = 0;  // copies and layouts kept
  size_t entries = 0;  // layouts kept (not counting weights skipped as changing)
  uint64_t hits = 0;    // lookups that found their layout
  uint64_t misses = 0;  // lookups that built it
};

WeightLayoutStats weight_layout_stats();
void weight_layouts_empty();

}  // namespace lstm_fused
