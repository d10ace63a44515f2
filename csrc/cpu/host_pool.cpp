#include "host_pool.h"

#include <c10/core/impl/alloc_cpu.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace lstm_fused {
namespace {

// Below this, the system allocator already reuses memory without page faults.
constexpr size_t kMinPooled = size_t(1) << 20;
constexpr size_t kGranule = size_t(1) << 16;
// Periods remembered: the current one and those before it.
constexpr size_t kPeriods = 4;
// A period also ends once it has handed out this many times the bound, so the
// bound follows the work even when some pooled tensor stays alive throughout.
constexpr size_t kTrafficPerPeriod = 8;

class HostPool {
 public:
  static HostPool& get() {
    static HostPool* pool = new HostPool();  // never destroyed: deleters may run at exit
    return *pool;
  }

  bool enabled() const { return cap_ > 0; }

  void* take(size_t bytes) {
    std::vector<void*> release;
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      in_use_ += bytes;
      auto it = free_.find(bytes);
      if (it != free_.end()) {
        p = it->second.data;
        // cached in this period: it was in use in it, and counted then
        if (it->second.period != period_) used_now_ += bytes;
        free_.erase(it);
        cached_ -= bytes;
        ++hits_;
      } else {
        // A fresh block: room for it within the bound comes from the oldest cached blocks.
        used_now_ += bytes;
        ++misses_;
        trim_locked(bound() - in_use_, release);
      }
      taken_ += bytes;
      if (taken_ >= kTrafficPerPeriod * bound()) end_period_locked(release);
    }
    free_all(release);
    if (p != nullptr) return p;
    try {
      return c10::alloc_cpu(bytes);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      in_use_ -= bytes;
      throw;
    }
  }

  void give(void* p, size_t bytes) {
    std::vector<void*> release;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      in_use_ -= bytes;
      // in-use plus cached bytes stay the same when a block moves from one to the other
      if (cached_ + bytes <= cap_ && cached_ + in_use_ + bytes <= bound()) {
        free_.emplace(bytes, Block{p, period_});
        cached_ += bytes;
        p = nullptr;
      }
      if (in_use_ == 0) end_period_locked(release);
    }
    if (p != nullptr) c10::free_cpu(p);
    free_all(release);
  }

  void empty() {
    std::vector<void*> release;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      trim_locked(0, release);
    }
    free_all(release);
#if defined(__GLIBC__)
    // glibc keeps freed heap memory (blocks below its mmap threshold, which it
    // raises up to 32 MB as large blocks are freed) for later mallocs: hand the
    // free pages back to the system too.
    malloc_trim(0);
#endif
  }

  HostCacheStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    HostCacheStats s;
    s.cached_bytes = cached_;
    s.cached_blocks = free_.size();
    s.in_use_bytes = in_use_;
    s.recent_bytes = bound();
    s.limit_bytes = cap_;
    s.hits = hits_;
    s.misses = misses_;
    return s;
  }

 private:
  struct Block {
    void* data;
    uint64_t period;  // the period it was cached in (it was in use in that period)
  };

  HostPool() {
    const char* v = std::getenv("LSTM_FUSED_CPU_CACHE_MB");
    if (v != nullptr && v[0] != '\0') cap_ = static_cast<size_t>(std::strtoull(v, nullptr, 10)) << 20;
  }

  // The most that in-use and cached bytes together may hold: the largest of
  // the bytes used in the current period and in the kPeriods - 1 before it.
  // Never below in_use_: the blocks in use at a period's start count as used in it.
  size_t bound() const {
    return std::max(used_now_, *std::max_element(used_.begin(), used_.end()));
  }

  void end_period_locked(std::vector<void*>& release) {
    std::rotate(used_.rbegin(), used_.rbegin() + 1, used_.rend());
    used_[0] = used_now_;
    used_now_ = in_use_;
    taken_ = 0;
    ++period_;
    trim_locked(bound() - in_use_, release);
  }

  // Takes cached blocks out, oldest period first and the largest of a period
  // first, until at most `keep` cached bytes are left; the caller frees them
  // after unlocking.
  void trim_locked(size_t keep, std::vector<void*>& release) {
    while (cached_ > keep) {
      auto victim = free_.begin();
      for (auto it = free_.begin(); it != free_.end(); ++it) {
        if (it->second.period <= victim->second.period) victim = it;  // ties: the later key, the larger block
      }
      cached_ -= victim->first;
      release.push_back(victim->second.data);
      free_.erase(victim);
    }
  }

  static void free_all(std::vector<void*>& release) {
    for (void* p : release) c10::free_cpu(p);
    release.clear();
  }

  std::mutex mutex_;
  std::multimap<size_t, Block> free_;
  size_t cap_ = std::numeric_limits<size_t>::max();
  size_t cached_ = 0;
  size_t in_use_ = 0;
  // Bytes of the distinct blocks a period used: in use at its start, freshly
  // allocated, or taken from the cache having been cached before it.
  size_t used_now_ = 0;
  std::array<size_t, kPeriods - 1> used_{};  // the completed periods', latest first
  size_t taken_ = 0;                          // bytes handed out in the current period
  uint64_t period_ = 0;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
};

}  // namespace

at::Tensor pooled_empty(at::IntArrayRef sizes, const at::TensorOptions& opts) {
  int64_t numel = 1;
  for (auto s : sizes) numel *= s;
  const size_t raw = static_cast<size_t>(numel) * opts.dtype().itemsize();
  auto& pool = HostPool::get();
  if (raw < kMinPooled || !pool.enabled()) return at::empty(sizes, opts);
  const size_t bytes = (raw + kGranule - 1) / kGranule * kGranule;
  void* data = pool.take(bytes);
  auto deleter = [bytes](void* p) { HostPool::get().give(p, bytes); };
  return at::from_blob(data, sizes, deleter, opts);
}

HostCacheStats host_cache_stats() { return HostPool::get().stats(); }

void host_cache_empty() { HostPool::get().empty(); }

}  // namespace lstm_fused
