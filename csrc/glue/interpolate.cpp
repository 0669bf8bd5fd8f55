// Torch glue of the CPU attribute interpolation (kernels/interpolate.h): interpolate_fwd,
// interpolate_bwd.
#include <ATen/Dispatch.h>

#include "glue/host_threads.h"
#include "glue/raster.h"
#include "kernels/interpolate.h"

namespace morph3d_glue {
namespace {

void check_inputs(const at::Tensor& attr, const at::Tensor& rast, const at::Tensor& tri) {
  TORCH_CHECK(attr.device().is_cpu() && rast.device().is_cpu() && tri.device().is_cpu(),
              "morph3d interpolate: CPU tensors expected");
  TORCH_CHECK(attr.dim() == 3, "morph3d interpolate: attr must be (A, N, C)");
  TORCH_CHECK(rast.dim() == 4 && rast.size(3) == 4, "morph3d interpolate: rast must be (B, H, W, 4)");
  TORCH_CHECK(attr.size(0) == 1 || attr.size(0) == rast.size(0),
              "morph3d interpolate: attr batch must be 1 or match rast");
  TORCH_CHECK(attr.scalar_type() == rast.scalar_type() &&
                  (attr.scalar_type() == at::kFloat || attr.scalar_type() == at::kDouble),
              "morph3d interpolate: attr and rast must share a float32 or float64 dtype");
  TORCH_CHECK(tri.dim() == 2 && tri.size(1) == 3 && tri.scalar_type() == at::kInt,
              "morph3d interpolate: tri must be (F, 3) int32");
}

}  // namespace

at::Tensor interpolate_fwd(const at::Tensor& attr_in, const at::Tensor& rast_in, const at::Tensor& tri_in) {
  check_inputs(attr_in, rast_in, tri_in);
  const at::Tensor attr = attr_in.contiguous(), rast = rast_in.contiguous(), tri = tri_in.contiguous();
  const int64_t A = attr.size(0), N = attr.size(1), C = attr.size(2);
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2), F = tri.size(0);
  at::Tensor out = pixel_buffer(attr, {B, H, W, C});
  const int threads = host_threads().count;
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_fwd", [&] {
    morph3d_raster::interpolate_forward<scalar_t>(attr.data_ptr<scalar_t>(), rast.data_ptr<scalar_t>(),
                                                  tri.data_ptr<int32_t>(), A, N, C, B, H, W, F,
                                                  out.data_ptr<scalar_t>(), threads);
  });
  return out;
}

std::tuple<std::optional<at::Tensor>, std::optional<at::Tensor>> interpolate_bwd(
    const at::Tensor& attr_in, const at::Tensor& rast_in, const at::Tensor& tri_in, const at::Tensor& grad_in,
    bool attr_grad, bool rast_grad) {
  check_inputs(attr_in, rast_in, tri_in);
  const at::Tensor attr = attr_in.contiguous(), rast = rast_in.contiguous(), tri = tri_in.contiguous();
  const int64_t A = attr.size(0), N = attr.size(1), C = attr.size(2);
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2), F = tri.size(0);
  TORCH_CHECK(grad_in.dim() == 4 && grad_in.size(0) == B && grad_in.size(1) == H && grad_in.size(2) == W &&
                  grad_in.size(3) == C,
              "morph3d interpolate_bwd: grad must be (B, H, W, C)");
  const at::Tensor grad = grad_in.to(attr.scalar_type()).contiguous();
  // Both are written in full by the kernel; a gradient nobody asked for is not computed (None).
  at::Tensor grad_attr = attr_grad ? attr.new_empty(attr.sizes()) : at::Tensor();
  at::Tensor grad_rast = rast_grad ? pixel_buffer(rast, rast.sizes()) : at::Tensor();
  auto result = [&]() -> std::tuple<std::optional<at::Tensor>, std::optional<at::Tensor>> {
    return {attr_grad ? std::optional<at::Tensor>(grad_attr) : std::nullopt,
            rast_grad ? std::optional<at::Tensor>(grad_rast) : std::nullopt};
  };
  if (!attr_grad && !rast_grad) return result();
  const int threads = host_threads().count;
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_bwd", [&] {
    morph3d_raster::interpolate_backward<scalar_t>(
        attr.data_ptr<scalar_t>(), rast.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(), grad.data_ptr<scalar_t>(), A,
        N, C, B, H, W, F, attr_grad ? grad_attr.data_ptr<scalar_t>() : nullptr,
        rast_grad ? grad_rast.data_ptr<scalar_t>() : nullptr, threads);
  });
  return result();
}

}  // namespace morph3d_glue
