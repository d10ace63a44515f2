#pragma once
// A cache of host memory for the CPU kernels' large buffers (gates, cells,
// outputs, gradients: tens of MB per call). Fresh allocations of that size come
// from mmap and pay a page fault per 4 KiB on first touch (~20 ms per 50 MB
// here); reusing freed blocks of the same size avoids that. Tensors keep a
// deleter that hands their block back.
//
// How much stays cached: the pool's blocks, in use and cached together, never
// exceed the bytes the latest few periods of use needed (the distinct blocks
// each used; a period ends when every pooled block is free again, or once it
// has handed out several times that much). A loop that repeats its calls finds
// every block it needs at every step; once calls need less, the blocks only
// larger calls used are freed, the oldest first. LSTM_FUSED_CPU_CACHE_MB caps
// the cached bytes (0 disables the cache); host_cache_empty()
// (lstm_fused.empty_cache()) frees every cached block.
#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>

namespace lstm_fused {

// An uninitialised CPU tensor backed by the cache.
at::Tensor pooled_empty(at::IntArrayRef sizes, const at::TensorOptions& opts);

struct HostCacheStats {
  size_t cached_bytes = 0;   // freed blocks kept for the next call
  size_t cached_blocks = 0;
  size_t in_use_bytes = 0;   // pooled blocks held by live tensors
  size_t recent_bytes = 0;   // the bound on in-use + cached bytes: what recent periods used
  size_t limit_bytes = 0;    // LSTM_FUSED_CPU_CACHE_MB's cap on cached bytes (SIZE_MAX: none)
  uint64_t hits = 0;         // blocks served from the cache
  uint64_t misses = 0;       // blocks freshly allocated
};

HostCacheStats host_cache_stats();

// Frees every cached block (blocks in use are not touched) and, with glibc,
// returns the heap's free pages to the system (malloc_trim).
void host_cache_empty();

}  // namespace lstm_fused
