// The torch glue of the rasterizer ops (rasterize, interpolate, antialias): argument checks,
// tensor allocation and dtype dispatch around the plain C++ kernels in csrc/kernels.
// register.cpp registers these functions as torch.ops.morph3d.<op>; the schemas there list the
// arguments, and the kernel headers their shapes.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>
#include <vector>

namespace morph3d_glue {

// A new uninitialised tensor of `like`'s dtype for a per-pixel output. On Linux a large one is
// advised to use transparent huge pages: its first touch, most of the cost of a fresh output at
// high resolution, then faults 2 MiB at a time instead of 4 KiB.
at::Tensor pixel_buffer(const at::Tensor& like, at::IntArrayRef sizes);

at::Tensor rasterize_fwd(const at::Tensor& pos, const at::Tensor& tri, int64_t height, int64_t width);
at::Tensor rasterize_bwd(const at::Tensor& pos, const at::Tensor& tri, const at::Tensor& rast,
                         const at::Tensor& grad_rast);

at::Tensor interpolate_fwd(const at::Tensor& attr, const at::Tensor& rast, const at::Tensor& tri);
// attr_grad / rast_grad: which gradients to compute; the other comes back undefined (None).
std::tuple<std::optional<at::Tensor>, std::optional<at::Tensor>> interpolate_bwd(
    const at::Tensor& attr, const at::Tensor& rast, const at::Tensor& tri, const at::Tensor& grad_out,
    bool attr_grad, bool rast_grad);

// The kernels' scratch cache (kernels/raster_scratch.h): free it, set its limit, read its state.
int64_t raster_scratch_release();
int64_t raster_scratch_set_limit(int64_t bytes);
std::vector<int64_t> raster_scratch_stats();

at::Tensor antialias_topology(const at::Tensor& tri);
std::tuple<at::Tensor, at::Tensor, at::Tensor> antialias_fwd(const at::Tensor& color, const at::Tensor& rast,
                                                             const at::Tensor& pos, const at::Tensor& tri,
                                                             const at::Tensor& adj);
// color_grad / pos_grad: which gradients to compute; the other comes back undefined (None).
std::tuple<std::optional<at::Tensor>, std::optional<at::Tensor>> antialias_bwd(
    const at::Tensor& color, const at::Tensor& rast, const at::Tensor& pos, const at::Tensor& tri,
    const at::Tensor& adj, const at::Tensor& facing, const at::Tensor& alpha, const at::Tensor& grad_out,
    bool color_grad, bool pos_grad);

}  // namespace morph3d_glue
