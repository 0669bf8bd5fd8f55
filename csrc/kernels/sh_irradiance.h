// Contract of the CPU SH irradiance kernels (kernels/sh_irradiance.cpp), called by
// glue/sh_irradiance.cpp. Second-order SH irradiance is a quadratic polynomial in the normal
// n = (x, y, z): E_c(n) = sum_m w_cm mono_m(n) over the ten monomials
// mono = (1, x, y, z, xy, yz, xz, xx, yy, zz); the Python side maps SH lighting to the weights w.
// T is float or double; arrays are contiguous. Results are bit-identical for any thread count.
#pragma once

#include <cstdint>

#include "kernels/threads.h"

namespace morph3d {
namespace sh_irradiance {

constexpr int64_t kMonomials = 10;

// normals: (B, N, 3); weights: (B, 3, kMonomials) -> out: (B, N, 3), written in full.
template <typename T>
void forward(const T* normals, const T* weights, int64_t B, int64_t N, T* out, const morph3d_kernels::Threads& threads);

// Gradients of <grad, forward(normals, weights)>, grad: (B, N, 3). grad_normals: (B, N, 3) and
// grad_weights: (B, 3, kMonomials), written in full; the weight gradients are sums over the N
// points, formed in fixed blocks and in double precision.
template <typename T>
void backward(const T* grad, const T* normals, const T* weights, int64_t B, int64_t N, T* grad_normals,
              T* grad_weights, const morph3d_kernels::Threads& threads);

}  // namespace sh_irradiance
}  // namespace morph3d
