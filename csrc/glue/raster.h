// The torch glue of the rasterizer ops (rasterize, interpolate, antialias): argument checks,
// tensor allocation and dtype dispatch around the plain C++ kernels in csrc/kernels.
// register.cpp registers these functions as torch.ops.morph3d.<op>; the schemas there list the
// arguments, and the kernel headers their shapes.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>
#include <vector>

namespace morph3d_glue {

at::Tensor rasterize_fwd(const at::Tensor& pos, const at::Tensor& tri, int64_t height, int64_t width);
at::Tensor rasterize_bwd(const at::Tensor& pos, const at::Tensor& tri, const at::Tensor& rast,
                         const at::Tensor& grad_rast);

at::Tensor interpolate_fwd(const at::Tensor& attr, const at::Tensor& rast, const at::Tensor& tri);
std::tuple<at::Tensor, at::Tensor> interpolate_bwd(const at::Tensor& attr, const at::Tensor& rast,
                                                   const at::Tensor& tri, const at::Tensor& grad_out);

at::Tensor antialias_topology(const at::Tensor& tri);
std::tuple<at::Tensor, at::Tensor, at::Tensor> antialias_fwd(const at::Tensor& color, const at::Tensor& rast,
                                                             const at::Tensor& pos, const at::Tensor& tri,
                                                             const at::Tensor& adj);
std::tuple<at::Tensor, at::Tensor> antialias_bwd(const at::Tensor& color, const at::Tensor& rast,
                                                 const at::Tensor& pos, const at::Tensor& tri, const at::Tensor& adj,
                                                 const at::Tensor& facing, const at::Tensor& alpha,
                                                 const at::Tensor& grad_out);

}  // namespace morph3d_glue
