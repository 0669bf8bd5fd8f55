// Reusable scratch memory of the rasterizer kernels (rasterize, interpolate, antialias).
//
// A large scratch buffer that is freshly allocated on every call costs more than the work done
// in it: the system maps and zero-fills every page on first touch (about 0.4 ms per MiB). The
// kernels therefore lease their scratch from one process-wide cache of blocks:
//   - a lease is exclusive until it is destroyed, so concurrent calls (two Python threads) never
//     share memory; the cache itself is guarded by a mutex;
//   - leased memory is uninitialised: kernels write it before reading, or clear it themselves;
//   - returned blocks stay cached while the cached total is within the limit (default 256 MiB,
//     scratch_set_limit), and are freed otherwise; scratch_release() frees every cached block.
// Plain C++, no torch headers.
#pragma once

#include <cstddef>
#include <cstdint>

namespace morph3d_raster {

// An exclusive lease of at least `bytes` bytes of 64-byte aligned, uninitialised memory,
// returned to the cache by the destructor. Move-only.
class ScratchLease {
 public:
  explicit ScratchLease(size_t bytes);
  ~ScratchLease();
  ScratchLease(ScratchLease&& other) noexcept;
  ScratchLease& operator=(ScratchLease&& other) noexcept;
  ScratchLease(const ScratchLease&) = delete;
  ScratchLease& operator=(const ScratchLease&) = delete;

  void* data() const { return data_; }
  size_t capacity() const { return capacity_; }

 private:
  void* data_ = nullptr;
  size_t capacity_ = 0;
};

// A lease viewed as an array of n elements of a trivially copyable T.
template <typename T>
class Scratch {
 public:
  explicit Scratch(int64_t n) : lease_(sizeof(T) * (size_t)(n > 0 ? n : 1)) {}
  T* get() const { return static_cast<T*>(lease_.data()); }
  T& operator[](int64_t i) const { return get()[i]; }

 private:
  ScratchLease lease_;
};

struct ScratchStats {
  int64_t cached_bytes;  // held by the cache, free for the next lease
  int64_t leased_bytes;  // held by leases now
  int64_t limit_bytes;   // most bytes the cache keeps
};

// Frees every cached block (leases in use are untouched); returns the bytes freed.
int64_t scratch_release();
// Sets the most bytes the cache keeps (>= 0; 0 disables caching), frees what exceeds it, and
// returns the previous limit.
int64_t scratch_set_limit(int64_t bytes);
ScratchStats scratch_stats();

}  // namespace morph3d_raster
