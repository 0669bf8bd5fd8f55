// The scratch cache of the rasterizer kernels; the contract is in kernels/raster_scratch.h.
#include "kernels/raster_scratch.h"

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace morph3d_raster {
namespace {

constexpr size_t kAlign = 64;
constexpr size_t kPage = size_t(64) << 10;  // large blocks come in 64 KiB steps, so sizes repeat
constexpr size_t kHuge = size_t(2) << 20;

// A new block; one of 4 MiB or more is 2 MiB aligned and advised to use transparent huge pages
// (Linux), so its first touch faults 2 MiB at a time.
void* allocate(size_t bytes) {
  if (bytes < 2 * kHuge) return std::aligned_alloc(kAlign, bytes);
  void* data = std::aligned_alloc(kHuge, (bytes + kHuge - 1) / kHuge * kHuge);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (data != nullptr) madvise(data, bytes, MADV_HUGEPAGE);  // advice only
#endif
  return data;
}

struct Block {
  void* data;
  size_t capacity;
};

struct Cache {
  std::mutex mutex;
  std::vector<Block> free;  // cached blocks, any order
  size_t cached = 0, leased = 0;
  size_t limit = size_t(256) << 20;

  // Frees cached blocks, largest first, until at most `keep` bytes stay cached. Caller locks.
  size_t trim(size_t keep) {
    std::sort(free.begin(), free.end(), [](const Block& a, const Block& b) { return a.capacity < b.capacity; });
    size_t freed = 0;
    while (cached > keep && !free.empty()) {
      std::free(free.back().data);
      cached -= free.back().capacity;
      freed += free.back().capacity;
      free.pop_back();
    }
    return freed;
  }
};

Cache& cache() {
  static Cache* instance = new Cache();  // never destroyed: leases may outlive static destruction
  return *instance;
}

size_t rounded(size_t bytes) {
  const size_t step = bytes >= kPage ? kPage : kAlign;
  return (std::max<size_t>(bytes, 1) + step - 1) / step * step;
}

}  // namespace

ScratchLease::ScratchLease(size_t bytes) {
  const size_t want = rounded(bytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    // Smallest cached block that fits without wasting more than half of it (or 1 MiB).
    size_t best = c.free.size();
    for (size_t i = 0; i < c.free.size(); ++i) {
      const size_t cap = c.free[i].capacity;
      if (cap >= want && cap <= std::max(2 * want, want + (size_t(1) << 20)) &&
          (best == c.free.size() || cap < c.free[best].capacity))
        best = i;
    }
    if (best < c.free.size()) {
      data_ = c.free[best].data;
      capacity_ = c.free[best].capacity;
      c.free[best] = c.free.back();
      c.free.pop_back();
      c.cached -= capacity_;
      c.leased += capacity_;
      return;
    }
  }
  data_ = allocate(want);
  if (data_ == nullptr) throw std::bad_alloc();
  capacity_ = want;
  std::lock_guard<std::mutex> lock(c.mutex);
  c.leased += capacity_;
}

ScratchLease::~ScratchLease() {
  if (data_ == nullptr) return;
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.leased -= capacity_;
  if (capacity_ <= c.limit) {
    c.free.push_back({data_, capacity_});
    c.cached += capacity_;
    c.trim(c.limit);  // may free this block or older ones, largest first
  } else {
    std::free(data_);
  }
}

ScratchLease::ScratchLease(ScratchLease&& other) noexcept : data_(other.data_), capacity_(other.capacity_) {
  other.data_ = nullptr;
  other.capacity_ = 0;
}

ScratchLease& ScratchLease::operator=(ScratchLease&& other) noexcept {
  if (this != &other) {
    ScratchLease old(std::move(*this));
    data_ = other.data_;
    capacity_ = other.capacity_;
    other.data_ = nullptr;
    other.capacity_ = 0;
  }
  return *this;
}

int64_t scratch_release() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return (int64_t)c.trim(0);
}

int64_t scratch_set_limit(int64_t bytes) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  const size_t previous = c.limit;
  c.limit = (size_t)std::max<int64_t>(0, bytes);
  c.trim(c.limit);
  return (int64_t)previous;
}

ScratchStats scratch_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return {(int64_t)c.cached, (int64_t)c.leased, (int64_t)c.limit};
}

}  // namespace morph3d_raster
