#pragma once
// Process-wide settings read by the kernels, set from Python (lstm_fused.set_path)
// or from the environment variable LSTM_FUSED_PATH at import.
namespace lstm_fused {

enum class Path { Auto = 0, Persistent = 1, Step = 2 };

Path kernel_path();
void set_kernel_path(Path p);

}  // namespace lstm_fused
