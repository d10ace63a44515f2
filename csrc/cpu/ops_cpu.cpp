// CPU kernels: the device-generic drivers instantiated with the CPU pointwise
// policy. lstm_cell is registered beside its kernel (cell_cpu.cpp).
#include <torch/library.h>

#include "../driver.h"
#include "pointwise_cpu.h"

namespace lstm_fused {

TORCH_LIBRARY_IMPL(lstm_fused, CPU, m) {
  m.impl("lstm_cell_backward", &cell_backward<CpuPointwise>);
  m.impl("lstm_layer", &layer_forward<CpuPointwise>);
  m.impl("lstm_layer_backward", &layer_backward<CpuPointwise>);
}

}  // namespace lstm_fused
