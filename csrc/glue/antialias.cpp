// Torch glue of the CPU antialiasing kernels (kernels/antialias.h): antialias_topology,
// antialias_fwd, antialias_bwd.
#include <ATen/Dispatch.h>

#include "glue/host_threads.h"
#include "glue/raster.h"
#include "kernels/antialias.h"

namespace morph3d_glue {
namespace {

void check_inputs(const at::Tensor& color, const at::Tensor& rast, const at::Tensor& pos, const at::Tensor& tri,
                  const at::Tensor& adj) {
  for (const at::Tensor* t : {&color, &rast, &pos, &tri, &adj})
    TORCH_CHECK(t->device().is_cpu(), "morph3d antialias: CPU tensors expected");
  TORCH_CHECK(color.dim() == 4 && rast.dim() == 4 && rast.size(3) == 4 && color.size(0) == rast.size(0) &&
                  color.size(1) == rast.size(1) && color.size(2) == rast.size(2),
              "morph3d antialias: color (B,H,W,C) and rast (B,H,W,4) must match");
  TORCH_CHECK(pos.dim() == 3 && pos.size(2) == 4 && pos.size(0) == color.size(0),
              "morph3d antialias: pos must be (B, N, 4)");
  TORCH_CHECK(color.scalar_type() == rast.scalar_type() && color.scalar_type() == pos.scalar_type() &&
                  (color.scalar_type() == at::kFloat || color.scalar_type() == at::kDouble),
              "morph3d antialias: color, rast and pos must share a float32 or float64 dtype");
  TORCH_CHECK(tri.dim() == 2 && tri.size(1) == 3 && tri.scalar_type() == at::kInt && adj.sizes() == tri.sizes() &&
                  adj.scalar_type() == at::kInt,
              "morph3d antialias: tri and adj must be (F, 3) int32");
}

morph3d_raster::Image image_of(const at::Tensor& color, const at::Tensor& pos, const at::Tensor& tri) {
  return morph3d_raster::Image{color.size(0), color.size(1), color.size(2), color.size(3), pos.size(1), tri.size(0)};
}

}  // namespace

at::Tensor antialias_topology(const at::Tensor& tri_in) {
  TORCH_CHECK(tri_in.device().is_cpu(), "morph3d antialias_topology: CPU tensor expected");
  TORCH_CHECK(tri_in.dim() == 2 && tri_in.size(1) == 3 && tri_in.scalar_type() == at::kInt,
              "morph3d antialias_topology: tri must be (F, 3) int32");
  const at::Tensor tri = tri_in.contiguous();
  const int64_t F = tri.size(0);
  at::Tensor adj = tri.new_empty({F, 3});
  TORCH_CHECK(morph3d_raster::antialias_topology(tri.data_ptr<int32_t>(), F, adj.data_ptr<int32_t>()),
              "morph3d antialias_topology: negative vertex index");
  return adj;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> antialias_fwd(const at::Tensor& color_in, const at::Tensor& rast_in,
                                                             const at::Tensor& pos_in, const at::Tensor& tri_in,
                                                             const at::Tensor& adj_in) {
  check_inputs(color_in, rast_in, pos_in, tri_in, adj_in);
  const at::Tensor color = color_in.contiguous(), rast = rast_in.contiguous(), pos = pos_in.contiguous();
  const at::Tensor tri = tri_in.contiguous(), adj = adj_in.contiguous();
  const morph3d_raster::Image im = image_of(color, pos, tri);
  at::Tensor out = pixel_buffer(color, color.sizes());
  at::Tensor facing = tri.new_empty({im.B, im.F}, at::kChar);
  at::Tensor alpha = pixel_buffer(color, {im.B, im.H, im.W, 2}).zero_();
  const int threads = host_threads().count;
  AT_DISPATCH_FLOATING_TYPES(color.scalar_type(), "antialias_fwd", [&] {
    morph3d_raster::antialias_forward<scalar_t>(im, color.data_ptr<scalar_t>(), rast.data_ptr<scalar_t>(),
                                                pos.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(),
                                                adj.data_ptr<int32_t>(), out.data_ptr<scalar_t>(),
                                                facing.data_ptr<int8_t>(), alpha.data_ptr<scalar_t>(), threads);
  });
  return {out, facing, alpha};
}

std::tuple<std::optional<at::Tensor>, std::optional<at::Tensor>> antialias_bwd(
    const at::Tensor& color_in, const at::Tensor& rast_in, const at::Tensor& pos_in, const at::Tensor& tri_in,
    const at::Tensor& adj_in, const at::Tensor& facing_in, const at::Tensor& alpha_in, const at::Tensor& grad_in,
    bool color_grad, bool pos_grad) {
  check_inputs(color_in, rast_in, pos_in, tri_in, adj_in);
  TORCH_CHECK(grad_in.sizes() == color_in.sizes(), "morph3d antialias_bwd: grad must match color");
  const at::Tensor color = color_in.contiguous(), rast = rast_in.contiguous(), pos = pos_in.contiguous();
  const at::Tensor tri = tri_in.contiguous(), adj = adj_in.contiguous();
  const at::Tensor facing = facing_in.contiguous(), alpha = alpha_in.to(color.scalar_type()).contiguous();
  const morph3d_raster::Image im = image_of(color, pos, tri);
  TORCH_CHECK(facing.scalar_type() == at::kChar && facing.numel() == im.B * im.F,
              "morph3d antialias_bwd: facing must be (B, F) int8 from antialias_fwd");
  TORCH_CHECK(alpha.numel() == im.B * im.H * im.W * 2, "morph3d antialias_bwd: alpha must be (B, H, W, 2)");
  const at::Tensor grad = grad_in.to(color.scalar_type()).contiguous();
  // Written in full by the kernel; a gradient nobody asked for is not computed (None).
  at::Tensor grad_color = color_grad ? pixel_buffer(color, color.sizes()) : at::Tensor();
  at::Tensor grad_pos = pos_grad ? pos.new_empty(pos.sizes()) : at::Tensor();
  auto result = [&]() -> std::tuple<std::optional<at::Tensor>, std::optional<at::Tensor>> {
    return {color_grad ? std::optional<at::Tensor>(grad_color) : std::nullopt,
            pos_grad ? std::optional<at::Tensor>(grad_pos) : std::nullopt};
  };
  if (!color_grad && !pos_grad) return result();
  const int threads = host_threads().count;
  AT_DISPATCH_FLOATING_TYPES(color.scalar_type(), "antialias_bwd", [&] {
    morph3d_raster::antialias_backward<scalar_t>(im, color.data_ptr<scalar_t>(), rast.data_ptr<scalar_t>(),
                                                 pos.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(),
                                                 adj.data_ptr<int32_t>(), facing.data_ptr<int8_t>(),
                                                 alpha.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(),
                                                 color_grad ? grad_color.data_ptr<scalar_t>() : nullptr,
                                                 pos_grad ? grad_pos.data_ptr<scalar_t>() : nullptr, threads);
  });
  return result();
}

}  // namespace morph3d_glue
