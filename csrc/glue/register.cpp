// The one registration unit: defines every torch.ops.morph3d op and registers the CPU (and, in
// CUDA builds, the CUDA) implementations from glue/ops.h. Loading morph3d._C runs it.
#include <torch/library.h>

#include "glue/pixel_sample.h"
#include "glue/raster.h"

TORCH_LIBRARY(morph3d, m) {
  m.def("rasterize_fwd(Tensor pos, Tensor tri, int height, int width) -> Tensor");
  m.def("rasterize_bwd(Tensor pos, Tensor tri, Tensor rast, Tensor grad_rast) -> Tensor");
  m.def("interpolate_fwd(Tensor attr, Tensor rast, Tensor tri) -> Tensor");
  m.def(
      "interpolate_bwd(Tensor attr, Tensor rast, Tensor tri, Tensor grad_out, bool attr_grad=True, "
      "bool rast_grad=True) -> (Tensor?, Tensor?)");
  m.def("raster_scratch_release() -> int", &morph3d_glue::raster_scratch_release);
  m.def("raster_scratch_set_limit(int bytes) -> int", &morph3d_glue::raster_scratch_set_limit);
  m.def("raster_scratch_stats() -> int[]", &morph3d_glue::raster_scratch_stats);
  m.def("antialias_topology(Tensor tri) -> Tensor");
  m.def("antialias_fwd(Tensor color, Tensor rast, Tensor pos, Tensor tri, Tensor adj) -> (Tensor, Tensor, Tensor)");
  m.def(
      "antialias_bwd(Tensor color, Tensor rast, Tensor pos, Tensor tri, Tensor adj, Tensor facing, Tensor alpha, "
      "Tensor grad_out, bool color_grad=True, bool pos_grad=True) -> (Tensor?, Tensor?)");
  m.def("pixel_sample_forward(Tensor[] inputs, Tensor grid, int mode, int padding, bool align_corners) -> Tensor[]");
  m.def(
      "pixel_sample_backward(Tensor[] grad_outputs, Tensor[] inputs, Tensor grid, int mode, int padding, "
      "bool align_corners, bool[] input_needs_grad, bool grid_needs_grad) -> (Tensor[], Tensor)");
}

TORCH_LIBRARY_IMPL(morph3d, CPU, m) {
  m.impl("rasterize_fwd", &morph3d_glue::rasterize_fwd);
  m.impl("rasterize_bwd", &morph3d_glue::rasterize_bwd);
  m.impl("interpolate_fwd", &morph3d_glue::interpolate_fwd);
  m.impl("interpolate_bwd", &morph3d_glue::interpolate_bwd);
  m.impl("antialias_topology", &morph3d_glue::antialias_topology);
  m.impl("antialias_fwd", &morph3d_glue::antialias_fwd);
  m.impl("antialias_bwd", &morph3d_glue::antialias_bwd);
  m.impl("pixel_sample_forward", &morph3d_glue::pixel_sample_forward_cpu);
  m.impl("pixel_sample_backward", &morph3d_glue::pixel_sample_backward_cpu);
}

#ifdef MORPH3D_WITH_CUDA
TORCH_LIBRARY_IMPL(morph3d, CUDA, m) {
  m.impl("pixel_sample_forward", &morph3d_glue::pixel_sample_forward_cuda);
  m.impl("pixel_sample_backward", &morph3d_glue::pixel_sample_backward_cuda);
}
#endif
