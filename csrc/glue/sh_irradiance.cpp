// Torch glue of the CPU SH irradiance kernels (kernels/sh_irradiance.h): sh_irradiance_fwd and
// sh_irradiance_bwd on CPU tensors.
#include "glue/sh_irradiance.h"

#include <ATen/Dispatch.h>

#include "glue/host_threads.h"
#include "kernels/sh_irradiance.h"

namespace morph3d_glue {
namespace {

using morph3d::sh_irradiance::kMonomials;

void check_inputs(const at::Tensor& normals, const at::Tensor& weights) {
  TORCH_CHECK(normals.device().is_cpu() && weights.device().is_cpu(), "sh_irradiance: CPU tensors expected");
  TORCH_CHECK(normals.dim() == 3 && normals.size(2) == 3, "sh_irradiance: normals must be (B, N, 3), got ",
              normals.sizes());
  TORCH_CHECK(weights.dim() == 3 && weights.size(0) == normals.size(0) && weights.size(1) == 3 &&
                  weights.size(2) == kMonomials,
              "sh_irradiance: weights must be (B, 3, 10) with the normals' batch, got ", weights.sizes());
  TORCH_CHECK(normals.scalar_type() == weights.scalar_type() &&
                  (normals.scalar_type() == at::kFloat || normals.scalar_type() == at::kDouble),
              "sh_irradiance: normals and weights must share a float32 or float64 dtype");
}

}  // namespace

at::Tensor sh_irradiance_fwd(const at::Tensor& normals_in, const at::Tensor& weights_in) {
  check_inputs(normals_in, weights_in);
  const at::Tensor normals = normals_in.contiguous(), weights = weights_in.contiguous();
  at::Tensor out = normals.new_empty(normals.sizes());
  const auto threads = host_threads();
  AT_DISPATCH_FLOATING_TYPES(normals.scalar_type(), "sh_irradiance_fwd", [&] {
    morph3d::sh_irradiance::forward<scalar_t>(normals.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(),
                                              normals.size(0), normals.size(1), out.data_ptr<scalar_t>(), threads);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> sh_irradiance_bwd(const at::Tensor& grad_in, const at::Tensor& normals_in,
                                                     const at::Tensor& weights_in) {
  check_inputs(normals_in, weights_in);
  TORCH_CHECK(grad_in.sizes() == normals_in.sizes() && grad_in.device().is_cpu(),
              "sh_irradiance_bwd: grad must be (B, N, 3) like the normals");
  const at::Tensor normals = normals_in.contiguous(), weights = weights_in.contiguous();
  const at::Tensor grad = grad_in.to(normals.scalar_type()).contiguous();
  at::Tensor grad_normals = normals.new_empty(normals.sizes());
  at::Tensor grad_weights = weights.new_empty(weights.sizes());
  const auto threads = host_threads();
  AT_DISPATCH_FLOATING_TYPES(normals.scalar_type(), "sh_irradiance_bwd", [&] {
    morph3d::sh_irradiance::backward<scalar_t>(grad.data_ptr<scalar_t>(), normals.data_ptr<scalar_t>(),
                                               weights.data_ptr<scalar_t>(), normals.size(0), normals.size(1),
                                               grad_normals.data_ptr<scalar_t>(), grad_weights.data_ptr<scalar_t>(),
                                               threads);
  });
  return {grad_normals, grad_weights};
}

}  // namespace morph3d_glue
