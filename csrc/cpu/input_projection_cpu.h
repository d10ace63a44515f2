#pragma once
// Where the input projection x_t·W_ihᵀ of a fused float layer runs:
//   gemm  one large GEMM over the T·B rows before the loop (large_gemm_cpu.h);
//         the steps read its result back from the gates buffer
//   step  in each fused step, beside h_{t-1}·W_hhᵀ, on brgemm blocks of W_ih
//         (BrgemmFusedStep::attach_input): the product runs at the step's
//         rate and its result stays in the cache
// Which is faster depends on the CPU and the shape (bench/NOTES.md v18).
//
// Choice per (B, I, gate columns, threads): pinned
// (lstm_fused.set_cpu_input_projection / LSTM_FUSED_CPU_INPUT_PROJECTION);
// gemm under torch.use_deterministic_algorithms(True) (the large GEMM may
// sum in another order); otherwise timed on the first call of its kind:
// a few steps of a sequence each way, the GEMM included (tens of ms). The
// choice is kept for the process, so every call of a kind runs the same
// arithmetic.
#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace lstm_fused {

enum class InputProjection : int { Auto = 0, Gemm, Step, kCount };

inline constexpr std::array<const char*, static_cast<int>(InputProjection::kCount)>
    kInputProjectionNames = {"auto", "gemm", "step"};

// The choice for a call of B rows, I inputs and G gate columns when it is
// settled without timing (pinned, deterministic algorithms, or timed before).
std::optional<InputProjection> settled_input_projection(int64_t B, int64_t I, int64_t G);

// Times `gemm` (the large GEMM of the projection, of which `share` counts),
// `plain` (steps reading its result), `step` (the same steps computing the
// projection) and `attach` (laying W_ih out for them, of which
// `attach_share` counts), remembers the faster way for (B, I, G) and
// returns it.
InputProjection timed_input_projection(int64_t B, int64_t I, int64_t G,
                                       const std::function<void()>& gemm, double share,
                                       const std::function<void()>& plain,
                                       const std::function<void()>& step,
                                       const std::function<void()>& attach, double attach_share);

// Counts a call that could have run the projection in its steps.
void count_input_projection(bool in_step);

// The timed choices so far, one line each; and forgetting them.
std::vector<std::string> input_projection_choices();
void clear_input_projection_choices();

}  // namespace lstm_fused
