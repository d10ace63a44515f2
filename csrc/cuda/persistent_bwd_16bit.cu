// The persistent backward kernels of the 16-bit modes, for every cell. Each
// mode group and direction is a file of its own so that the build compiles
// them in parallel.
#include "persistent_bwd.cuh"

namespace lstm_fused {
namespace cuda {
namespace persistent {

template const void* backward_kernel_of<static_cast<int>(MmaMode::kBF16)>(int, CellKind);
template const void* backward_kernel_of<static_cast<int>(MmaMode::kF16)>(int, CellKind);

}  // namespace persistent
}  // namespace cuda
}  // namespace lstm_fused
