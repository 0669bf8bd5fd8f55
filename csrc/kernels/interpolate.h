// Contract of the CPU attribute interpolation kernels (kernels/interpolate.cpp), called by
// glue/interpolate.cpp. All arrays are contiguous; scalar_t is float or double. attr has A = 1
// (shared by the batch) or A = B sets of attributes; rast is the rasterizer's output.
#pragma once

#include <cstdint>

namespace morph3d_raster {

// attr: (A, N, C); rast: (B, H, W, 4); tri: (F, 3) -> out: (B, H, W, C) written in full
// (u * attr[t0] + v * attr[t1] + (1 - u - v) * attr[t2] on covered pixels, 0 elsewhere).
template <typename scalar_t>
void interpolate_forward(const scalar_t* attr, const scalar_t* rast, const int32_t* tri, int64_t A, int64_t N,
                         int64_t C, int64_t B, int64_t H, int64_t W, int64_t F, scalar_t* out, int threads);

// grad_out: (B, H, W, C). grad_attr: (A, N, C) written in full, or null when not wanted;
// grad_rast: (B, H, W, 4) written in full (d/du and d/dv in channels 0 and 1 of covered pixels,
// zeros elsewhere), or null when not wanted. Deterministic.
template <typename scalar_t>
void interpolate_backward(const scalar_t* attr, const scalar_t* rast, const int32_t* tri, const scalar_t* grad_out,
                          int64_t A, int64_t N, int64_t C, int64_t B, int64_t H, int64_t W, int64_t F,
                          scalar_t* grad_attr, scalar_t* grad_rast, int threads);

}  // namespace morph3d_raster
