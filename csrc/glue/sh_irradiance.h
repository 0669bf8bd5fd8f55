// The torch glue of the SH irradiance ops (CPU, glue/sh_irradiance.cpp; registered by
// register.cpp). The Python wrapper (morph3d/model/lighting.py) builds the monomial weights.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace morph3d_glue {

// normals: (B, N, 3); weights: (B, 3, 10) -> irradiance (B, N, 3).
at::Tensor sh_irradiance_fwd(const at::Tensor& normals, const at::Tensor& weights);
// -> (grad_normals (B, N, 3), grad_weights (B, 3, 10)).
std::tuple<at::Tensor, at::Tensor> sh_irradiance_bwd(const at::Tensor& grad, const at::Tensor& normals,
                                                     const at::Tensor& weights);

}  // namespace morph3d_glue
