// The torch glue of the vertex-normal ops: entry points (CPU in glue/vertex_normals.cpp, CUDA in
// cuda/vertex_normals.cu; registered by register.cpp) and their shared argument checks. The
// Python wrapper (morph3d/model/geometry.py) validates the triangles once per topology; these
// checks keep direct torch.ops calls from reaching a kernel with inconsistent arguments.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <tuple>

namespace morph3d {
namespace vertex_normals {

// vertices: (B, N, 3) float32/float64; offsets: (N + 1,) int64 and others: (E, 2) int32, the
// adjacency from vertex_normals_topology; all on the vertices' device.
inline void check_mesh(const at::Tensor& vertices, const at::Tensor& offsets, const at::Tensor& others) {
  TORCH_CHECK(vertices.dim() == 3 && vertices.size(2) == 3, "vertex_normals: vertices must be (B, N, 3), got ",
              vertices.sizes());
  TORCH_CHECK(vertices.scalar_type() == at::kFloat || vertices.scalar_type() == at::kDouble,
              "vertex_normals: vertices must be float32 or float64");
  TORCH_CHECK(offsets.dim() == 1 && offsets.size(0) == vertices.size(1) + 1 && offsets.scalar_type() == at::kLong,
              "vertex_normals: offsets must be (N + 1,) int64 from vertex_normals_topology");
  TORCH_CHECK(others.dim() == 2 && others.size(1) == 2 && others.scalar_type() == at::kInt,
              "vertex_normals: others must be (E, 2) int32 from vertex_normals_topology");
  TORCH_CHECK(offsets.device() == vertices.device() && others.device() == vertices.device(),
              "vertex_normals: all tensors must be on the vertices' device");
}

// grad, normals: (B, N, 3) and norms: (B, N), like the vertices.
inline void check_saved(const at::Tensor& vertices, const at::Tensor& grad, const at::Tensor& normals,
                        const at::Tensor& norms) {
  TORCH_CHECK(grad.sizes() == vertices.sizes() && normals.sizes() == vertices.sizes(),
              "vertex_normals_bwd: grad and normals must be (B, N, 3) like the vertices");
  TORCH_CHECK(norms.dim() == 2 && norms.size(0) == vertices.size(0) && norms.size(1) == vertices.size(1),
              "vertex_normals_bwd: norms must be (B, N)");
  TORCH_CHECK(grad.scalar_type() == vertices.scalar_type() && normals.scalar_type() == vertices.scalar_type() &&
                  norms.scalar_type() == vertices.scalar_type(),
              "vertex_normals_bwd: grad, normals and norms must have the vertices' dtype");
  TORCH_CHECK(grad.device() == vertices.device() && normals.device() == vertices.device() &&
                  norms.device() == vertices.device(),
              "vertex_normals_bwd: all tensors must be on the vertices' device");
}

}  // namespace vertex_normals
}  // namespace morph3d

namespace morph3d_glue {

// tri: (F, 3) int64 CPU -> (offsets (N + 1,) int64, others (3F, 2) int32), the CSR adjacency of
// kernels/vertex_normals.h. The kernels trust it (the CPU glue only checks that offsets end at E):
// pass what this returned for the same triangles.
std::tuple<at::Tensor, at::Tensor> vertex_normals_topology(const at::Tensor& tri, int64_t num_vertices);

// -> (normals (B, N, 3), norms (B, N))
std::tuple<at::Tensor, at::Tensor> vertex_normals_fwd_cpu(const at::Tensor& vertices, const at::Tensor& offsets,
                                                          const at::Tensor& others, double eps);
// -> grad_vertices (B, N, 3)
at::Tensor vertex_normals_bwd_cpu(const at::Tensor& grad, const at::Tensor& vertices, const at::Tensor& offsets,
                                  const at::Tensor& others, const at::Tensor& normals, const at::Tensor& norms,
                                  double eps);

#ifdef MORPH3D_WITH_CUDA
// csrc/cuda/vertex_normals.cu (all tensors on one CUDA device)
std::tuple<at::Tensor, at::Tensor> vertex_normals_fwd_cuda(const at::Tensor& vertices, const at::Tensor& offsets,
                                                           const at::Tensor& others, double eps);
at::Tensor vertex_normals_bwd_cuda(const at::Tensor& grad, const at::Tensor& vertices, const at::Tensor& offsets,
                                   const at::Tensor& others, const at::Tensor& normals, const at::Tensor& norms,
                                   double eps);
#endif

}  // namespace morph3d_glue
