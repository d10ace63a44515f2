// Launch planning of the persistent kernels: the hidden units per block, the
// warp grid and the shared memory, checked against the device (shared memory
// per block, co-residency of the whole grid for the cooperative launch).
// Plans are cached per (device, mode, direction, B, H, cell).
#include <map>
#include <mutex>
#include <tuple>

#include "persistent_common.cuh"

namespace lstm_fused {
namespace cuda {

namespace {

using persistent::kThreads;
using persistent::no_plan;

struct DeviceFacts {
  bool ok = false;
  int sms = 0;
  int optin_smem = 0;  // bytes of shared memory one block may opt in to
};

DeviceFacts device_facts(int device, bool* definitive) {
  DeviceFacts f;
  int major = 0, coop = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&f.sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&f.optin_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) !=
          cudaSuccess) {
    (void)cudaGetLastError();
    *definitive = false;
    return f;
  }
  f.ok = major >= 8 && coop != 0 && f.sms > 0;  // mma.sync bf16/tf32 needs sm_80
  return f;
}

// Prepares a kernel for up to `optin` bytes of dynamic shared memory on the
// current device; false if the kernel has no image for it (built for another
// architecture: a definitive no) or refuses.
// Any other failure is recorded in *error and the outcome is not definitive
// (not cached: the next call asks again).
bool prepare_kernel(const void* kernel, int optin, int* dyn_limit, int* error,
                    bool* definitive) {
  cudaFuncAttributes attr;
  if (kernel == nullptr) return false;
  cudaError_t e = cudaFuncGetAttributes(&attr, kernel);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    if (e != cudaErrorInvalidDeviceFunction && e != cudaErrorNoKernelImageForDevice) {
      *error = static_cast<int>(e);
      *definitive = false;
    }
    return false;
  }
  *dyn_limit = optin - static_cast<int>(attr.sharedSizeBytes);
  if (*dyn_limit <= 0) return false;
  e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, *dyn_limit);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    *error = static_cast<int>(e);
    *definitive = false;
    return false;
  }
  return true;
}

// *definitive is set false when a runtime call failed (for instance inside a
// stream capture that forbids it): such an outcome is not cached.
PersistentPlan make_plan(int device, MmaMode mode, bool backward, int B, int H, CellKind cell,
                         bool* definitive) {
  *definitive = true;
  const DeviceFacts f = device_facts(device, definitive);
  int prepared_ntcm = 0, dyn_limit = 0, error = 0;
  auto per_sm = [&](int ntcm, size_t smem) -> int {
    const void* kernel = backward ? persistent::backward_kernel(mode, ntcm, cell)
                                  : persistent::forward_kernel(mode, ntcm, cell);
    if (ntcm != prepared_ntcm) {
      if (!prepare_kernel(kernel, f.optin_smem, &dyn_limit, &error, definitive)) return -1;
      prepared_ntcm = ntcm;
    }
    if (smem > static_cast<size_t>(dyn_limit)) return 0;
    int fit = 0;
    const cudaError_t e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit, kernel, kThreads, smem);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      error = static_cast<int>(e);
      *definitive = false;
      return -1;
    }
    return fit;
  };
  if (!f.ok) {
    return no_plan(mode, backward, B, H, cell);
  }
  PersistentPlan p = persistent::plan_shape(mode, backward, B, H, cell, f.sms,
                                            static_cast<size_t>(f.optin_smem), per_sm);
  if (!p.ok) p.error = error;
  return p;
}

}  // namespace

PersistentPlan plan_persistent(int device, MmaMode mode, bool backward, int B, int H,
                               CellKind cell) {
  using Key = std::tuple<int, int, bool, int, int, int, bool>;
  static std::mutex mu;
  static std::map<Key, PersistentPlan> cache;
  const Key key{device, static_cast<int>(mode), backward, B, H, static_cast<int>(cell.variant),
                cell.peephole};
  {
    std::lock_guard<std::mutex> lock(mu);
    const auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  // Planning calls the runtime on the current device: the caller's device guard
  // has made `device` current.
  int current = -1;
  if (cudaGetDevice(&current) != cudaSuccess || current != device) {
    (void)cudaGetLastError();
    return no_plan(mode, backward, B, H, cell);
  }
  bool definitive = true;
  const PersistentPlan p = make_plan(device, mode, backward, B, H, cell, &definitive);
  if (definitive) {
    std::lock_guard<std::mutex> lock(mu);
    cache.emplace(key, p);
  }
  return p;
}

}  // namespace cuda
}  // namespace lstm_fused
