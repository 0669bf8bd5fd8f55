// CPU attribute interpolation over a rasterized image (nvdiffrast's interpolate) and its
// backward pass; the contract is in kernels/interpolate.h.
#include "kernels/interpolate.h"

#include "kernels/raster_common.h"

#include <vector>

namespace morph3d_raster {
namespace {

// Attribute gradients: owner-computes scatter in pixel order (deterministic).
template <typename scalar_t>
void scatter_attr_grad(const scalar_t* r, const scalar_t* g, const int32_t* f, int64_t A, int64_t N, int64_t C,
                       int64_t P, int64_t HW, int64_t F, scalar_t* grad_attr, int threads) {
  std::vector<double> acc(A * N * C, 0.0);
  const int workers = workers_for(threads, P, 2 * kCheapGrain);
  run_workers(workers, [&](int worker) {
    int64_t vlo, vhi;
    owner_slice(N, worker, workers, vlo, vhi);
    for (int64_t q = 0; q < P; ++q) {
      const int64_t t = rast_triangle(r + q * 4, F);
      if (t < 0) continue;
      const double u = (double)r[q * 4 + 0], v = (double)r[q * 4 + 1];
      const double w[3] = {u, v, 1.0 - u - v};
      const scalar_t* gq = g + q * C;
      const int64_t base = (A == 1 ? 0 : q / HW) * N;
      for (int i = 0; i < 3; ++i) {
        const int64_t vi = f[t * 3 + i];
        if (vi < vlo || vi >= vhi) continue;
        double* dst = acc.data() + (base + vi) * C;
        for (int64_t c = 0; c < C; ++c) dst[c] += w[i] * (double)gq[c];
      }
    }
  });
  for (int64_t i = 0; i < A * N * C; ++i) grad_attr[i] = (scalar_t)acc[i];
}

}  // namespace

template <typename scalar_t>
void interpolate_forward(const scalar_t* a, const scalar_t* r, const int32_t* f, int64_t A, int64_t N, int64_t C,
                         int64_t B, int64_t H, int64_t W, int64_t F, scalar_t* o, int threads) {
  parallel_for(threads, B * H * W, kCheapGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t q = lo; q < hi; ++q) {
      scalar_t* dst = o + q * C;
      const int64_t t = rast_triangle(r + q * 4, F);
      if (t < 0) {
        for (int64_t c = 0; c < C; ++c) dst[c] = 0;
        continue;
      }
      const scalar_t u = r[q * 4 + 0], v = r[q * 4 + 1], w = (scalar_t)1 - u - v;
      const scalar_t* ab = a + (A == 1 ? 0 : q / (H * W)) * N * C;
      const scalar_t* a0 = ab + (int64_t)f[t * 3 + 0] * C;
      const scalar_t* a1 = ab + (int64_t)f[t * 3 + 1] * C;
      const scalar_t* a2 = ab + (int64_t)f[t * 3 + 2] * C;
      for (int64_t c = 0; c < C; ++c) dst[c] = u * a0[c] + v * a1[c] + w * a2[c];
    }
  });
}

template <typename scalar_t>
void interpolate_backward(const scalar_t* a, const scalar_t* r, const int32_t* f, const scalar_t* g, int64_t A,
                          int64_t N, int64_t C, int64_t B, int64_t H, int64_t W, int64_t F, scalar_t* grad_attr,
                          scalar_t* gr, int threads) {
  // d/du = g . (a0 - a2), d/dv = g . (a1 - a2): independent per pixel.
  parallel_for(threads, B * H * W, kCheapGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t q = lo; q < hi; ++q) {
      const int64_t t = rast_triangle(r + q * 4, F);
      if (t < 0) continue;
      const scalar_t* ab = a + (A == 1 ? 0 : q / (H * W)) * N * C;
      const scalar_t* a0 = ab + (int64_t)f[t * 3 + 0] * C;
      const scalar_t* a1 = ab + (int64_t)f[t * 3 + 1] * C;
      const scalar_t* a2 = ab + (int64_t)f[t * 3 + 2] * C;
      const scalar_t* gq = g + q * C;
      double du = 0.0, dv = 0.0;
      for (int64_t c = 0; c < C; ++c) {
        du += (double)gq[c] * ((double)a0[c] - (double)a2[c]);
        dv += (double)gq[c] * ((double)a1[c] - (double)a2[c]);
      }
      gr[q * 4 + 0] = (scalar_t)du;
      gr[q * 4 + 1] = (scalar_t)dv;
    }
  });
  scatter_attr_grad(r, g, f, A, N, C, B * H * W, H * W, F, grad_attr, threads);
}

template void interpolate_forward<float>(const float*, const float*, const int32_t*, int64_t, int64_t, int64_t,
                                         int64_t, int64_t, int64_t, int64_t, float*, int);
template void interpolate_forward<double>(const double*, const double*, const int32_t*, int64_t, int64_t, int64_t,
                                          int64_t, int64_t, int64_t, int64_t, double*, int);
template void interpolate_backward<float>(const float*, const float*, const int32_t*, const float*, int64_t, int64_t,
                                          int64_t, int64_t, int64_t, int64_t, int64_t, float*, float*, int);
template void interpolate_backward<double>(const double*, const double*, const int32_t*, const double*, int64_t,
                                           int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, double*, double*,
                                           int);

}  // namespace morph3d_raster
