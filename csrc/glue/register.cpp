// The one registration unit: defines every torch.ops.morph3d op and registers the CPU (and, in
// CUDA builds, the CUDA) implementations from glue/ops.h. Loading morph3d._C runs it.
#include <torch/library.h>

#include "glue/pixel_sample.h"
#include "glue/raster.h"
#include "glue/sh_irradiance.h"
#include "glue/vertex_normals.h"

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
  // model geometry and shading (glue/vertex_normals.h, glue/sh_irradiance.h)
  m.def("vertex_normals_topology(Tensor tri, int num_vertices) -> (Tensor, Tensor)");
  m.def("vertex_normals_fwd(Tensor vertices, Tensor offsets, Tensor others, float eps) -> (Tensor, Tensor)");
  m.def(
      "vertex_normals_bwd(Tensor grad, Tensor vertices, Tensor offsets, Tensor others, Tensor normals, "
      "Tensor norms, float eps) -> Tensor");
  m.def("sh_irradiance_fwd(Tensor normals, Tensor weights) -> Tensor");
  m.def("sh_irradiance_bwd(Tensor grad, Tensor normals, Tensor weights) -> (Tensor, Tensor)");
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
  // model geometry and shading
  m.impl("vertex_normals_topology", &morph3d_glue::vertex_normals_topology);
  m.impl("vertex_normals_fwd", &morph3d_glue::vertex_normals_fwd_cpu);
  m.impl("vertex_normals_bwd", &morph3d_glue::vertex_normals_bwd_cpu);
  m.impl("sh_irradiance_fwd", &morph3d_glue::sh_irradiance_fwd);
  m.impl("sh_irradiance_bwd", &morph3d_glue::sh_irradiance_bwd);
}

#ifdef MORPH3D_WITH_CUDA
TORCH_LIBRARY_IMPL(morph3d, CUDA, m) {
  m.impl("pixel_sample_forward", &morph3d_glue::pixel_sample_forward_cuda);
  m.impl("pixel_sample_backward", &morph3d_glue::pixel_sample_backward_cuda);
  // vertex normals
  m.impl("vertex_normals_fwd", &morph3d_glue::vertex_normals_fwd_cuda);
  m.impl("vertex_normals_bwd", &morph3d_glue::vertex_normals_bwd_cuda);
}
#endif
