#pragma once
// Argument validation shared by every backend. The Python layer raises
// friendlier errors first; these guard direct calls to torch.ops.lstm_fused.*.
#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>
#include <vector>

#include "cell_variants.h"

namespace lstm_fused {

struct CellDims {
  int64_t B, I, H;
  int64_t G;  // gate rows: the cell kind's gate count times H
};

struct LayerDims {
  int64_t T, B, I, H, P;  // P: width of h (proj_size if w_hr is given, else H)
  int64_t G;              // gate rows: the cell kind's gate count times H
  bool proj() const { return P != H; }
};

CellDims check_cell_args(const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
                         const at::Tensor& w_ih, const at::Tensor& w_hh,
                         const std::optional<at::Tensor>& b_ih,
                         const std::optional<at::Tensor>& b_hh, CellKind kind = {},
                         const std::optional<at::Tensor>& peephole = std::nullopt);

LayerDims check_layer_args(const at::Tensor& input, const at::Tensor& h0, const at::Tensor& c0,
                           const at::Tensor& w_ih, const at::Tensor& w_hh,
                           const std::optional<at::Tensor>& b_ih,
                           const std::optional<at::Tensor>& b_hh,
                           const std::optional<at::Tensor>& w_hr,
                           const std::optional<at::Tensor>& lengths, CellKind kind = {},
                           const std::optional<at::Tensor>& peephole = std::nullopt);

// The ops' (variant, peephole) arguments as a cell kind; the variant checked.
CellKind cell_kind(int64_t variant, const std::optional<at::Tensor>& peephole);

// Number of sequences still running at each time step t (all B without lengths).
std::vector<int64_t> active_rows(const std::optional<at::Tensor>& lengths, int64_t T, int64_t B);

}  // namespace lstm_fused
