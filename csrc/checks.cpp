#include "checks.h"

#include <c10/util/Exception.h>

namespace lstm_fused {
namespace {

void check_same(const at::Tensor& ref, const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), "lstm_fused: ", name, " has dtype ",
              t.scalar_type(), " but input has dtype ", ref.scalar_type());
  TORCH_CHECK(t.device() == ref.device(), "lstm_fused: ", name, " is on ", t.device(),
              " but input is on ", ref.device());
}

void check_shape(const at::Tensor& t, at::IntArrayRef expected, const char* name) {
  TORCH_CHECK(t.sizes() == expected, "lstm_fused: ", name, " must have shape ", expected,
              ", got ", t.sizes());
}

void check_biases(const at::Tensor& input, int64_t G, const std::optional<at::Tensor>& b_ih,
                  const std::optional<at::Tensor>& b_hh) {
  TORCH_CHECK(b_ih.has_value() == b_hh.has_value(),
              "lstm_fused: b_ih and b_hh must both be given or both be None");
  if (b_ih.has_value()) {
    check_same(input, *b_ih, "b_ih");
    check_same(input, *b_hh, "b_hh");
    check_shape(*b_ih, {G}, "b_ih");
    check_shape(*b_hh, {G}, "b_hh");
  }
}

void check_floating(const at::Tensor& input) {
  auto st = input.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kDouble || st == at::kBFloat16 || st == at::kHalf,
              "lstm_fused: input must be float32, float64, bfloat16 or float16, got ", st);
}

// w_ih's rows: kind.gates() blocks of H.
int64_t hidden_size(const at::Tensor& w_ih, CellKind kind) {
  const int64_t k = kind.gates();
  TORCH_CHECK(w_ih.dim() == 2 && w_ih.size(0) % k == 0 && w_ih.size(0) > 0, "lstm_fused: w_ih must be (",
              k, "H, I) for this cell variant, got ", w_ih.sizes());
  return w_ih.size(0) / k;
}

void check_peephole(const at::Tensor& input, int64_t H, CellKind kind,
                    const std::optional<at::Tensor>& peephole) {
  TORCH_CHECK(kind.peephole == peephole.has_value(), "lstm_fused: peephole weights ",
              kind.peephole ? "missing" : "given to a cell without peepholes");
  if (peephole.has_value()) {
    check_same(input, *peephole, "peephole");
    check_shape(*peephole, {kind.peephole_rows(), H}, "peephole");
  }
}

}  // namespace

CellKind cell_kind(int64_t variant, const std::optional<at::Tensor>& peephole) {
  TORCH_CHECK(CellKind::valid(variant), "lstm_fused: variant must be 0 (standard), 1 (cifg) or 2 ",
              "(no_input_gate), got ", variant);
  return {static_cast<GateVariant>(variant), peephole.has_value()};
}

CellDims check_cell_args(const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
                         const at::Tensor& w_ih, const at::Tensor& w_hh,
                         const std::optional<at::Tensor>& b_ih,
                         const std::optional<at::Tensor>& b_hh, CellKind kind,
                         const std::optional<at::Tensor>& peephole) {
  check_floating(input);
  TORCH_CHECK(input.dim() == 2, "lstm_fused: input must be (B, I), got ", input.sizes());
  const int64_t B = input.size(0), I = input.size(1), H = hidden_size(w_ih, kind);
  const int64_t G = kind.gates() * H;
  check_same(input, hx, "hx");
  check_same(input, cx, "cx");
  check_same(input, w_ih, "w_ih");
  check_same(input, w_hh, "w_hh");
  check_shape(w_ih, {G, I}, "w_ih");
  check_shape(w_hh, {G, H}, "w_hh");
  check_shape(hx, {B, H}, "hx");
  check_shape(cx, {B, H}, "cx");
  check_biases(input, G, b_ih, b_hh);
  check_peephole(input, H, kind, peephole);
  return {B, I, H, G};
}

LayerDims check_layer_args(const at::Tensor& input, const at::Tensor& h0, const at::Tensor& c0,
                           const at::Tensor& w_ih, const at::Tensor& w_hh,
                           const std::optional<at::Tensor>& b_ih,
                           const std::optional<at::Tensor>& b_hh,
                           const std::optional<at::Tensor>& w_hr,
                           const std::optional<at::Tensor>& lengths, CellKind kind,
                           const std::optional<at::Tensor>& peephole) {
  check_floating(input);
  TORCH_CHECK(input.dim() == 3, "lstm_fused: input must be (T, B, I), got ", input.sizes());
  const int64_t T = input.size(0), B = input.size(1), I = input.size(2), H = hidden_size(w_ih, kind);
  const int64_t G = kind.gates() * H;
  int64_t P = H;
  if (w_hr.has_value()) {
    check_same(input, *w_hr, "w_hr");
    TORCH_CHECK(w_hr->dim() == 2 && w_hr->size(1) == H && w_hr->size(0) < H && w_hr->size(0) > 0,
                "lstm_fused: w_hr must be (P, H) with 0 < P < H = ", H, ", got ", w_hr->sizes());
    P = w_hr->size(0);
  }
  check_same(input, h0, "h0");
  check_same(input, c0, "c0");
  check_same(input, w_ih, "w_ih");
  check_same(input, w_hh, "w_hh");
  check_shape(w_ih, {G, I}, "w_ih");
  check_shape(w_hh, {G, P}, "w_hh");
  check_shape(h0, {B, P}, "h0");
  check_shape(c0, {B, H}, "c0");
  check_biases(input, G, b_ih, b_hh);
  check_peephole(input, H, kind, peephole);
  if (lengths.has_value()) {
    const auto& l = *lengths;
    TORCH_CHECK(l.device().is_cpu() && l.scalar_type() == at::kLong && l.dim() == 1 &&
                    l.size(0) == B,
                "lstm_fused: lengths must be an int64 CPU tensor of shape (", B, "), got ",
                l.scalar_type(), " ", l.sizes(), " on ", l.device());
  }
  return {T, B, I, H, P, G};
}

std::vector<int64_t> active_rows(const std::optional<at::Tensor>& lengths, int64_t T, int64_t B) {
  std::vector<int64_t> n(T, B);
  if (!lengths.has_value()) return n;
  const auto l = lengths->contiguous();
  const int64_t* len = l.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK(len[b] >= 0 && len[b] <= T, "lstm_fused: lengths[", b, "] = ", len[b],
                " is outside [0, T = ", T, "]");
    TORCH_CHECK(b == 0 || len[b] <= len[b - 1],
                "lstm_fused: lengths must be sorted in non-increasing order");
  }
  // Sorted lengths make the running sequences a prefix of the batch.
  int64_t b = B;
  for (int64_t t = 0; t < T; ++t) {
    while (b > 0 && len[b - 1] <= t) --b;
    n[t] = b;
  }
  return n;
}

}  // namespace lstm_fused
