// Helpers shared by the CPU rasterization kernels (rasterize.cpp, interpolate.cpp,
// antialias.cpp). Conventions: clip positions are (X, Y, Z, W) as in nvdiffrast; the
// pixel in column i has its centre at NDC x = (2 i + 1) / width - 1 (same for rows).
#pragma once

#include <ATen/Parallel.h>
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

namespace morph3d_raster {

// Threads to use: torch's intra-op setting (torch.set_num_threads).
inline int num_threads() { return std::max(1, at::get_num_threads()); }

// NDC coordinate of the centre of pixel i along an axis of n pixels.
inline double pixel_ndc(int64_t i, int64_t n) { return (2.0 * (double)i + 1.0) / (double)n - 1.0; }

// [lo, hi) slice of n items owned by thread tid of nt. Scatter-adds use owner-computes:
// every thread walks all contributions in one fixed order and keeps those landing in its
// own slice, so each sum is formed in the same order whatever the thread count.
inline void owner_slice(int64_t n, int tid, int nt, int64_t& lo, int64_t& hi) {
  lo = n * tid / nt;
  hi = n * (tid + 1) / nt;
}

// Triangle id stored in channel 3 of a rast pixel (id + 1, 0 = background) -> id or -1.
template <typename scalar_t>
inline int64_t rast_triangle(const scalar_t* px, int64_t num_triangles) {
  const int64_t t = (int64_t)px[3] - 1;
  return (t >= 0 && t < num_triangles) ? t : -1;
}

}  // namespace morph3d_raster
