// The persistent backward kernels of the 32-bit modes, for every cell. Each
// mode group and direction is a file of its own so that the build compiles
// them in parallel.
#include "persistent_bwd.cuh"

namespace lstm_fused {
namespace cuda {
namespace persistent {

template const void* backward_kernel_of<static_cast<int>(MmaMode::kTF32)>(int, CellKind);
template const void* backward_kernel_of<static_cast<int>(MmaMode::k3xTF32)>(int, CellKind);

}  // namespace persistent
}  // namespace cuda
}  // namespace lstm_fused
