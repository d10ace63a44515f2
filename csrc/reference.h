#pragma once
// The LSTM in plain differentiable ATen ops, on any device: the recomputation
// that double backward differentiates (the fused backward ops are not
// themselves differentiable). Same conventions as the ops (see ops.cpp).
#include <ATen/core/Tensor.h>

#include <optional>
#include <vector>

#include "cell_variants.h"

namespace lstm_fused {

// -> {hy, cy}
std::vector<at::Tensor> cell_reference(const at::Tensor& input, const at::Tensor& hx,
                                       const at::Tensor& cx, const at::Tensor& w_ih,
                                       const at::Tensor& w_hh, const at::Tensor& b_ih,
                                       const at::Tensor& b_hh, CellKind kind = {},
                                       const at::Tensor& peephole = {});

// -> {output, h_n, c_n}
std::vector<at::Tensor> layer_reference(const at::Tensor& input, const at::Tensor& h0,
                                        const at::Tensor& c0, const at::Tensor& w_ih,
                                        const at::Tensor& w_hh, const at::Tensor& b_ih,
                                        const at::Tensor& b_hh, const at::Tensor& w_hr,
                                        const std::optional<at::Tensor>& lengths, bool reverse,
                                        CellKind kind = {}, const at::Tensor& peephole = {});

}  // namespace lstm_fused
