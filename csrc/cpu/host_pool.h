#pragma once
// A small cache of host memory for the CPU kernels' large buffers (gates,
// cells, outputs, gradients: tens of MB per call). Fresh allocations of that
// size come from mmap and pay a page fault per 4 KiB on first touch (~20 ms
// per 50 MB here); reusing freed blocks of the same size avoids that.
// Tensors keep a deleter that hands their block back. At most
// LSTM_FUSED_CPU_CACHE_MB (default 1024; 0 disables) stays cached.
#include <ATen/ATen.h>

namespace lstm_fused {

// An uninitialised CPU tensor backed by the cache.
at::Tensor pooled_empty(at::IntArrayRef sizes, const at::TensorOptions& opts);

}  // namespace lstm_fused
