#pragma once
// Host-side mapping between c10's scalar types and the CUDA storage types the
// launch functions in kernels.h take (same size and bit layout).
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace lstm_fused {
namespace cuda {

template <typename S>
struct DeviceType {
  using type = S;
};
template <>
struct DeviceType<c10::Half> {
  using type = __half;
};
template <>
struct DeviceType<c10::BFloat16> {
  using type = __nv_bfloat16;
};
static_assert(sizeof(c10::Half) == sizeof(__half) && alignof(c10::Half) == alignof(__half),
              "c10::Half and __half must share a layout");
static_assert(sizeof(c10::BFloat16) == sizeof(__nv_bfloat16) &&
                  alignof(c10::BFloat16) == alignof(__nv_bfloat16),
              "c10::BFloat16 and __nv_bfloat16 must share a layout");

template <typename S>
using dev_t = typename DeviceType<S>::type;

template <typename S>
dev_t<S>* dev(S* p) {
  return reinterpret_cast<dev_t<S>*>(p);
}
template <typename S>
const dev_t<S>* dev(const S* p) {
  return reinterpret_cast<const dev_t<S>*>(p);
}

}  // namespace cuda
}  // namespace lstm_fused
