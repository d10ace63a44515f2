// Linked only in builds without CUDA sources.
namespace lstm_fused {
bool cuda_compiled() { return false; }
}  // namespace lstm_fused
