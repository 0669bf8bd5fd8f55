// Helpers shared by the CPU rasterization kernels (rasterize.cpp, interpolate.cpp,
// antialias.cpp); plain C++ and OpenMP, no torch headers. Conventions: clip positions are
// (X, Y, Z, W) as in nvdiffrast; the pixel in column i has its centre at NDC
// x = (2 i + 1) / width - 1 (same for rows).
//
// Threading: OpenMP (the runtime torch itself uses, so its idle workers are reused) with
// dynamic chunking from an atomic counter, and cheap passes kept on the calling thread. The
// thread count `threads` is torch's intra-op setting (torch.set_num_threads), passed in by the
// torch glue.
#pragma once

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <vector>

namespace morph3d_raster {

// Cheap per-element passes (pixels, vertices) use chunks this big, so small problems run on
// the calling thread: waking threads costs more than it saves below ~0.1 ms of work.
constexpr int64_t kCheapGrain = 65536;

// How many of `threads` workers an owner-computes pass over n elements deserves.
inline int workers_for(int threads, int64_t n, int64_t per_worker) {
  return (int)std::max<int64_t>(1, std::min<int64_t>(threads, (n + per_worker - 1) / per_worker));
}

// Run work(w) for every w in [0, workers), on up to that many OpenMP threads.
template <typename Work>
void run_workers(int workers, const Work& work) {
  if (workers <= 1) {
    work(0);
    return;
  }
  std::exception_ptr error;
  std::mutex error_mutex;
#pragma omp parallel num_threads(workers)
  {
    // Fewer threads than asked (nesting, limits): each covers several worker ids.
    for (int w = omp_get_thread_num(); w < workers; w += omp_get_num_threads()) {
      try {
        work(w);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

// body(lo, hi) over [0, n) in chunks of `grain`, handed out dynamically to up to `threads` threads.
template <typename Body>
void parallel_for(int threads, int64_t n, int64_t grain, const Body& body) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t chunks = (n + grain - 1) / grain;
  const int workers = (int)std::min<int64_t>(std::max(1, threads), chunks);
  std::atomic<int64_t> next{0};
  run_workers(workers, [&](int) {
    for (int64_t c = next.fetch_add(1); c < chunks; c = next.fetch_add(1))
      body(c * grain, std::min(n, (c + 1) * grain));
  });
}

// NDC coordinate of the centre of pixel i along an axis of n pixels.
inline double pixel_ndc(int64_t i, int64_t n) { return (2.0 * (double)i + 1.0) / (double)n - 1.0; }

// [lo, hi) slice of n items owned by worker w of nw. Scatter-adds use owner-computes: every
// worker walks all contributions in one fixed order and keeps those landing in its own
// slice, so each sum is formed in the same order whatever the thread count.
inline void owner_slice(int64_t n, int w, int nw, int64_t& lo, int64_t& hi) {
  lo = n * w / nw;
  hi = n * (w + 1) / nw;
}

// Triangle id stored in channel 3 of a rast pixel (id + 1, 0 = background) -> id or -1.
template <typename scalar_t>
inline int64_t rast_triangle(const scalar_t* px, int64_t num_triangles) {
  const int64_t t = (int64_t)px[3] - 1;
  return (t >= 0 && t < num_triangles) ? t : -1;
}

}  // namespace morph3d_raster
