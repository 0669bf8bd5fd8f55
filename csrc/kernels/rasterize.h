// Contract of the CPU rasterizer kernels (kernels/rasterize.cpp), called by glue/rasterize.cpp.
// All arrays are contiguous; scalar_t is float or double; tri holds vertex ids in [0, N).
// `threads` is the number of OpenMP threads to use (torch.get_num_threads()); the results do
// not depend on it.
#pragma once

#include <cstdint>

namespace morph3d_raster {

// pos: (B, N, 4) clip positions (X, Y, Z, W); tri: (F, 3), F >= 1.
// rast: (B, H, W, 4) written in full with (u, v, z/w, triangle id + 1), zeros where uncovered.
template <typename scalar_t>
void rasterize_forward(const scalar_t* pos, const int32_t* tri, int64_t B, int64_t N, int64_t F, int64_t H,
                       int64_t W, scalar_t* rast, int threads);

// grad_rast: (B, H, W, 4), gradient of the loss w.r.t. rast (channel 3 ignored).
// grad_pos: (B, N, 4) written in full.
template <typename scalar_t>
void rasterize_backward(const scalar_t* pos, const int32_t* tri, const scalar_t* rast, const scalar_t* grad_rast,
                        int64_t B, int64_t N, int64_t F, int64_t H, int64_t W, scalar_t* grad_pos, int threads);

}  // namespace morph3d_raster
