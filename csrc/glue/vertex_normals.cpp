// Torch glue of the CPU vertex-normal kernels (kernels/vertex_normals.h): vertex_normals_topology,
// vertex_normals_fwd and vertex_normals_bwd on CPU tensors.
#include <ATen/Dispatch.h>

#include <limits>

#include "glue/host_threads.h"
#include "glue/vertex_normals.h"
#include "kernels/vertex_normals.h"

namespace morph3d_glue {
namespace {

void check_cpu_adjacency(const at::Tensor& offsets, const at::Tensor& others) {
  TORCH_CHECK(offsets.data_ptr<int64_t>()[offsets.size(0) - 1] == others.size(0),
              "vertex_normals: offsets and others are not one adjacency from vertex_normals_topology");
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> vertex_normals_topology(const at::Tensor& tri_in, int64_t num_vertices) {
  TORCH_CHECK(tri_in.device().is_cpu(), "vertex_normals_topology: tri must be a CPU tensor");
  TORCH_CHECK(tri_in.dim() == 2 && tri_in.size(1) == 3 && tri_in.scalar_type() == at::kLong,
              "vertex_normals_topology: tri must be (F, 3) int64, got ", tri_in.sizes());
  TORCH_CHECK(num_vertices >= 0 && num_vertices <= std::numeric_limits<int32_t>::max(),
              "vertex_normals_topology: num_vertices must be in [0, 2^31)");
  const at::Tensor tri = tri_in.contiguous();
  if (tri.numel() > 0) {
    TORCH_CHECK(tri.min().item<int64_t>() >= 0 && tri.max().item<int64_t>() < num_vertices,
                "vertex_normals_topology: triangle indices must be in [0, ", num_vertices, ")");
  }
  at::Tensor offsets = tri.new_empty({num_vertices + 1});
  at::Tensor others = tri.new_empty({tri.numel(), 2}, tri.options().dtype(at::kInt));
  morph3d::vertex_normals::build_adjacency(tri.data_ptr<int64_t>(), tri.size(0), num_vertices,
                                           offsets.data_ptr<int64_t>(), others.data_ptr<int32_t>());
  return {offsets, others};
}

std::tuple<at::Tensor, at::Tensor> vertex_normals_fwd_cpu(const at::Tensor& vertices_in, const at::Tensor& offsets_in,
                                                          const at::Tensor& others_in, double eps) {
  morph3d::vertex_normals::check_mesh(vertices_in, offsets_in, others_in);
  const at::Tensor vertices = vertices_in.contiguous();
  const at::Tensor offsets = offsets_in.contiguous(), others = others_in.contiguous();
  check_cpu_adjacency(offsets, others);
  const int64_t B = vertices.size(0), N = vertices.size(1);
  at::Tensor normals = vertices.new_empty(vertices.sizes());
  at::Tensor norms = vertices.new_empty({B, N});
  const auto threads = host_threads();
  AT_DISPATCH_FLOATING_TYPES(vertices.scalar_type(), "vertex_normals_fwd_cpu", [&] {
    morph3d::vertex_normals::forward<scalar_t>(vertices.data_ptr<scalar_t>(), offsets.data_ptr<int64_t>(),
                                               others.data_ptr<int32_t>(), B, N, static_cast<scalar_t>(eps),
                                               normals.data_ptr<scalar_t>(), norms.data_ptr<scalar_t>(), threads);
  });
  return {normals, norms};
}

at::Tensor vertex_normals_bwd_cpu(const at::Tensor& grad_in, const at::Tensor& vertices_in,
                                  const at::Tensor& offsets_in, const at::Tensor& others_in,
                                  const at::Tensor& normals_in, const at::Tensor& norms_in, double eps) {
  morph3d::vertex_normals::check_mesh(vertices_in, offsets_in, others_in);
  morph3d::vertex_normals::check_saved(vertices_in, grad_in, normals_in, norms_in);
  const at::Tensor vertices = vertices_in.contiguous();
  const at::Tensor offsets = offsets_in.contiguous(), others = others_in.contiguous();
  check_cpu_adjacency(offsets, others);
  const at::Tensor grad = grad_in.contiguous(), normals = normals_in.contiguous(), norms = norms_in.contiguous();
  const int64_t B = vertices.size(0), N = vertices.size(1);
  at::Tensor scratch = vertices.new_empty(vertices.sizes());
  at::Tensor grad_vertices = vertices.new_empty(vertices.sizes());
  const auto threads = host_threads();
  AT_DISPATCH_FLOATING_TYPES(vertices.scalar_type(), "vertex_normals_bwd_cpu", [&] {
    morph3d::vertex_normals::backward<scalar_t>(
        grad.data_ptr<scalar_t>(), vertices.data_ptr<scalar_t>(), offsets.data_ptr<int64_t>(),
        others.data_ptr<int32_t>(), normals.data_ptr<scalar_t>(), norms.data_ptr<scalar_t>(), B, N,
        static_cast<scalar_t>(eps), scratch.data_ptr<scalar_t>(), grad_vertices.data_ptr<scalar_t>(), threads);
  });
  return grad_vertices;
}

}  // namespace morph3d_glue
