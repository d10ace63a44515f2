// Linked only in builds with CUDA sources; nvcc proves they compile.
namespace lstm_fused {
bool cuda_compiled() { return true; }
}  // namespace lstm_fused
