// Contract of the CPU antialiasing kernels (kernels/antialias.cpp, where the method is
// described), called by glue/antialias.cpp. All arrays are contiguous; scalar_t is float or
// double; tri holds vertex ids in [0, N). Results do not depend on `threads`.
#pragma once

#include <cstdint>

namespace morph3d_raster {

// Sizes of one antialias call: color (B, H, W, C), pos (B, N, 4), tri (F, 3).
struct Image {
  int64_t B, H, W, C, N, F;
};

// tri: (F, 3) -> adj: (F, 3) written in full (edge neighbours, encoding in antialias.cpp).
// Returns false, with adj unspecified, when tri holds a negative vertex id.
bool antialias_topology(const int32_t* tri, int64_t F, int32_t* adj);

// color, rast (B, H, W, 4), pos, tri, adj -> out (B, H, W, C) and facing (B, F) written in
// full; alpha (B, H, W, 2) must be zero on entry and receives the pair blend weights.
template <typename scalar_t>
void antialias_forward(const Image& im, const scalar_t* color, const scalar_t* rast, const scalar_t* pos,
                       const int32_t* tri, const int32_t* adj, scalar_t* out, int8_t* facing, scalar_t* alpha,
                       int threads);

// facing and alpha from antialias_forward; grad_out (B, H, W, C) -> grad_color (B, H, W, C) and
// grad_pos (B, N, 4), each written in full, or skipped when null (a gradient nobody asked for).
template <typename scalar_t>
void antialias_backward(const Image& im, const scalar_t* color, const scalar_t* rast, const scalar_t* pos,
                        const int32_t* tri, const int32_t* adj, const int8_t* facing, const scalar_t* alpha,
                        const scalar_t* grad_out, scalar_t* grad_color, scalar_t* grad_pos, int threads);

}  // namespace morph3d_raster
