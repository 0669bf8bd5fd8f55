// CPU second-order SH irradiance as a quadratic polynomial of the normal, and its backward pass;
// the contract is in kernels/sh_irradiance.h. One pass over the points each way, instead of
// building the nine basis functions as (B, N, 9) tensors. The weight gradients are reduced per
// batch item over fixed blocks of points whose partial sums are added in block order, so the
// result does not depend on the number of threads.
#include "kernels/sh_irradiance.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace morph3d {
namespace sh_irradiance {
namespace {

// Points per task: a few tens of microseconds of work. Also the reduction block of the weight
// gradients, so it must not depend on the thread count.
constexpr int64_t kBlock = 4096;

// The monomials (1, x, y, z, xy, yz, xz, xx, yy, zz) of one normal.
template <typename T>
inline void monomials(T x, T y, T z, T* m) {
  m[0] = T(1);
  m[1] = x;
  m[2] = y;
  m[3] = z;
  m[4] = x * y;
  m[5] = y * z;
  m[6] = x * z;
  m[7] = x * x;
  m[8] = y * y;
  m[9] = z * z;
}

}  // namespace

template <typename T>
void forward(const T* normals, const T* weights, int64_t B, int64_t N, T* out,
             const morph3d_kernels::Threads& threads) {
  const int64_t blocks = (N + kBlock - 1) / kBlock;
  threads.parallel_for(B * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / blocks, lo = (task - b * blocks) * kBlock, hi = std::min(N, lo + kBlock);
      const T* w = weights + b * 3 * kMonomials;
      for (int64_t i = b * N + lo; i < b * N + hi; ++i) {
        T m[kMonomials];
        monomials(normals[i * 3], normals[i * 3 + 1], normals[i * 3 + 2], m);
        for (int c = 0; c < 3; ++c) {
          T e = T(0);
          for (int k = 0; k < kMonomials; ++k) e += w[c * kMonomials + k] * m[k];
          out[i * 3 + c] = e;
        }
      }
    }
  });
}

template <typename T>
void backward(const T* grad, const T* normals, const T* weights, int64_t B, int64_t N, T* grad_normals,
              T* grad_weights, const morph3d_kernels::Threads& threads) {
  const int64_t blocks = (N + kBlock - 1) / kBlock;
  std::vector<double> partial(B * blocks * 3 * kMonomials, 0.0);
  threads.parallel_for(B * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / blocks, lo = (task - b * blocks) * kBlock, hi = std::min(N, lo + kBlock);
      const T* w = weights + b * 3 * kMonomials;
      double* acc = partial.data() + task * 3 * kMonomials;
      for (int64_t i = b * N + lo; i < b * N + hi; ++i) {
        const T x = normals[i * 3], y = normals[i * 3 + 1], z = normals[i * 3 + 2];
        // No gradient at a finite point (a renderer's background pixels): nothing to add.
        if (grad[i * 3] == T(0) && grad[i * 3 + 1] == T(0) && grad[i * 3 + 2] == T(0) && std::isfinite(x) &&
            std::isfinite(y) && std::isfinite(z)) {
          grad_normals[i * 3] = grad_normals[i * 3 + 1] = grad_normals[i * 3 + 2] = T(0);
          continue;
        }
        T m[kMonomials];
        monomials(x, y, z, m);
        T gx = T(0), gy = T(0), gz = T(0);
        for (int c = 0; c < 3; ++c) {
          const T g = grad[i * 3 + c];
          const T* wc = w + c * kMonomials;
          for (int k = 0; k < kMonomials; ++k) acc[c * kMonomials + k] += static_cast<double>(g * m[k]);
          // d E_c / d(x, y, z)
          gx += g * (wc[1] + wc[4] * y + wc[6] * z + T(2) * wc[7] * x);
          gy += g * (wc[2] + wc[4] * x + wc[5] * z + T(2) * wc[8] * y);
          gz += g * (wc[3] + wc[5] * y + wc[6] * x + T(2) * wc[9] * z);
        }
        grad_normals[i * 3] = gx;
        grad_normals[i * 3 + 1] = gy;
        grad_normals[i * 3 + 2] = gz;
      }
    }
  });
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t j = 0; j < 3 * kMonomials; ++j) {
      double s = 0.0;
      for (int64_t blk = 0; blk < blocks; ++blk) s += partial[((b * blocks) + blk) * 3 * kMonomials + j];
      grad_weights[b * 3 * kMonomials + j] = static_cast<T>(s);
    }
  }
}

template void forward<float>(const float*, const float*, int64_t, int64_t, float*, const morph3d_kernels::Threads&);
template void forward<double>(const double*, const double*, int64_t, int64_t, double*,
                              const morph3d_kernels::Threads&);
template void backward<float>(const float*, const float*, const float*, int64_t, int64_t, float*, float*,
                              const morph3d_kernels::Threads&);
template void backward<double>(const double*, const double*, const double*, int64_t, int64_t, double*, double*,
                               const morph3d_kernels::Threads&);

}  // namespace sh_irradiance
}  // namespace morph3d
