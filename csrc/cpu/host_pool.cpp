#include "host_pool.h"

#include <c10/core/impl/alloc_cpu.h>

#include <cstdlib>
#include <map>
#include <mutex>

namespace lstm_fused {
namespace {

// Below this, the system allocator already reuses memory without page faults.
constexpr size_t kMinPooled = size_t(1) << 20;
constexpr size_t kGranule = size_t(1) << 16;

class HostPool {
 public:
  static HostPool& get() {
    static HostPool* pool = new HostPool();  // never destroyed: deleters may run at exit
    return *pool;
  }

  void* take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(bytes);
      if (it != free_.end()) {
        void* p = it->second;
        free_.erase(it);
        cached_ -= bytes;
        return p;
      }
    }
    return c10::alloc_cpu(bytes);
  }

  void give(void* p, size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_ + bytes <= limit_) {
        free_.emplace(bytes, p);
        cached_ += bytes;
        return;
      }
    }
    c10::free_cpu(p);
  }

  size_t limit() const { return limit_; }

 private:
  HostPool() {
    const char* v = std::getenv("LSTM_FUSED_CPU_CACHE_MB");
    limit_ = (v != nullptr ? static_cast<size_t>(std::strtoull(v, nullptr, 10)) : 1024) << 20;
  }

  std::mutex mutex_;
  std::multimap<size_t, void*> free_;
  size_t cached_ = 0;
  size_t limit_ = 0;
};

}  // namespace

at::Tensor pooled_empty(at::IntArrayRef sizes, const at::TensorOptions& opts) {
  int64_t numel = 1;
  for (auto s : sizes) numel *= s;
  const size_t raw = static_cast<size_t>(numel) * opts.dtype().itemsize();
  auto& pool = HostPool::get();
  if (raw < kMinPooled || pool.limit() == 0) return at::empty(sizes, opts);
  const size_t bytes = (raw + kGranule - 1) / kGranule * kGranule;
  void* data = pool.take(bytes);
  auto deleter = [bytes](void* p) { HostPool::get().give(p, bytes); };
  return at::from_blob(data, sizes, deleter, opts);
}

}  // namespace lstm_fused
