// The kept weight layouts of weight_layouts_cpu.h.
#include "weight_layouts_cpu.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <list>
#include <mutex>
#include <vector>

namespace lstm_fused {
namespace {

constexpr size_t kMaxBytes = size_t{256} << 20;
constexpr size_t kMaxEntries = 256;
// Entries not looked up in the latest kRecent lookups go: a model's calls look
// up each of its weights a few times per call, so what stays is what the
// recent calls used.
constexpr uint64_t kRecent = 256;
// A weight found changed at two lookups in a row (training) is not kept for
// the next kSkips of its lookups, which then lay it out without copying it.
constexpr int kSkips = 8;

struct Entry {
  const void* data;
  std::vector<int64_t> sizes, strides;
  at::ScalarType dtype;
  std::array<int64_t, 4> kind;
  at::Tensor copy;    // w's bytes when it was laid out; undefined in a skip record
  at::Tensor layout;  // what build() made from them
  int changes = 0;    // lookups in a row that found the weight changed
  int skips = 0;      // a skip record's lookups left before w is kept again
  uint64_t used = 0;  // the lookup that last found or made it
  size_t bytes() const {
    return (copy.defined() ? copy.nbytes() : 0) + (layout.defined() ? layout.nbytes() : 0);
  }
};

// Whether a and b (n bytes each) are equal, on the intra-op threads: a
// weight of several MB is read in a few hundred µs on one core.
bool same_bytes(const void* a, const void* b, size_t n) {
  constexpr int64_t kGrain = int64_t{1} << 20;
  std::atomic<bool> same{true};
  const auto* pa = static_cast<const char*>(a);
  const auto* pb = static_cast<const char*>(b);
  at::parallel_for(0, static_cast<int64_t>(n), kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1 && same.load(std::memory_order_relaxed); i += kGrain) {
      const int64_t len = std::min(kGrain, i1 - i);
      if (std::memcmp(pa + i, pb + i, static_cast<size_t>(len)) != 0) {
        same.store(false, std::memory_order_relaxed);
      }
    }
  });
  return same.load();
}

class Layouts {
 public:
  static Layouts& get() {
    static Layouts* layouts = new Layouts();  // never destroyed: tensors may outlive exit order
    return *layouts;
  }

  at::Tensor find_or_build(const at::Tensor& w, const std::array<int64_t, 4>& kind,
                           const std::function<at::Tensor()>& build) {
    if (cap_ == 0 || !w.is_contiguous() || w.numel() == 0) return build();
    std::lock_guard<std::mutex> lock(mutex_);
    ++lookups_;
    while (!entries_.empty() && entries_.back().used + kRecent < lookups_) {
      bytes_ -= entries_.back().bytes();
      entries_.pop_back();
    }
    const auto it = std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) {
      return e.data == w.const_data_ptr() && e.dtype == w.scalar_type() && e.kind == kind &&
             w.sizes() == at::IntArrayRef(e.sizes) && w.strides() == at::IntArrayRef(e.strides);
    });
    int changes = 0;  // the new entry's
    if (it == entries_.end()) {
      ++misses_;
    } else {
      it->used = lookups_;
      if (!it->copy.defined()) {  // a skip record
        ++misses_;
        if (it->skips-- > 0) {
          entries_.splice(entries_.begin(), entries_, it);  // most recent first
          return build();
        }
        changes = 1;  // kept again: one more change makes it a record again
      } else if (same_bytes(it->copy.const_data_ptr(), w.const_data_ptr(), w.nbytes())) {
        ++hits_;
        it->changes = 0;
        entries_.splice(entries_.begin(), entries_, it);
        return it->layout;
      } else {
        ++misses_;
        changes = it->changes + 1;
      }
      bytes_ -= it->bytes();
      entries_.erase(it);
    }
    Entry e{w.const_data_ptr(), w.sizes().vec(), w.strides().vec(), w.scalar_type(), kind};
    e.changes = changes;
    if (changes >= 2) {
      e.skips = kSkips;
      insert(std::move(e));
      return build();
    }
    e.copy = w.clone();
    e.layout = build();
    return insert(std::move(e));
  }

  WeightLayoutStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t kept = 0;
    for (const auto& e : entries_) kept += e.copy.defined();
    return {bytes_, kept, hits_, misses_};
  }

  void empty() {
    std::lock_guard<std::mutex> lock(mutex_);
    entries_.clear();
    bytes_ = 0;
  }

 private:
  Layouts() {
    const char* v = std::getenv("LSTM_FUSED_CPU_CACHE_MB");
    if (v != nullptr && v[0] != '\0') {
      cap_ = std::min(cap_, static_cast<size_t>(std::strtoull(v, nullptr, 10)) << 20);
    }
  }

  // Puts e first and returns its layout; least recently used entries out
  // past the bounds (e itself when it alone exceeds the bytes).
  at::Tensor insert(Entry e) {
    at::Tensor layout = e.layout;
    if (e.bytes() > cap_) return layout;
    e.used = lookups_;
    bytes_ += e.bytes();
    entries_.push_front(std::move(e));
    while (bytes_ > cap_ || entries_.size() > kMaxEntries) {
      bytes_ -= entries_.back().bytes();
      entries_.pop_back();
    }
    return layout;
  }

  std::mutex mutex_;
  std::list<Entry> entries_;
  size_t cap_ = kMaxBytes;
  size_t bytes_ = 0;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
  uint64_t lookups_ = 0;
};

}  // namespace

at::Tensor kept_layout(const at::Tensor& w, const std::array<int64_t, 4>& kind,
                       const std::function<at::Tensor()>& build) {
  return Layouts::get().find_or_build(w, kind, build);
}

WeightLayoutStats weight_layout_stats() { return Layouts::get().stats(); }

void weight_layouts_empty() { Layouts::get().empty(); }

}  // namespace lstm_fused
