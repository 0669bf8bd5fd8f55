// CPU attribute interpolation over a rasterized image (nvdiffrast's interpolate) and its
// backward pass; the contract is in kernels/interpolate.h.
#include "kernels/interpolate.h"

#include "kernels/raster_common.h"
#include "kernels/raster_scratch.h"

#include <algorithm>

namespace morph3d_raster {
namespace {

// Pixels [lo, hi) of d loss / d (u, v): g . (a0 - a2), g . (a1 - a2); rows written in full.
template <typename scalar_t>
void rast_grad_range(const scalar_t* a, const scalar_t* r, const int32_t* f, const scalar_t* g, int64_t A, int64_t N,
                     int64_t C, int64_t HW, int64_t F, int64_t lo, int64_t hi, scalar_t* gr) {
  for (int64_t q = lo; q < hi; ++q) {
    scalar_t* out = gr + q * 4;
    out[0] = out[1] = out[2] = out[3] = (scalar_t)0;
    const int64_t t = rast_triangle(r + q * 4, F);
    if (t < 0) continue;
    const scalar_t* ab = a + (A == 1 ? 0 : q / HW) * N * C;
    const scalar_t* a0 = ab + (int64_t)f[t * 3 + 0] * C;
    const scalar_t* a1 = ab + (int64_t)f[t * 3 + 1] * C;
    const scalar_t* a2 = ab + (int64_t)f[t * 3 + 2] * C;
    const scalar_t* gq = g + q * C;
    double du = 0.0, dv = 0.0;
    for (int64_t c = 0; c < C; ++c) {
      du += (double)gq[c] * ((double)a0[c] - (double)a2[c]);
      dv += (double)gq[c] * ((double)a1[c] - (double)a2[c]);
    }
    out[0] = (scalar_t)du;
    out[1] = (scalar_t)dv;
  }
}

// Attribute gradients of rows [vlo, vhi) of every attribute set, summed in pixel order over all
// P pixels (owner-computes: the caller splits the rows among workers).
template <typename scalar_t>
void attr_grad_rows(const scalar_t* r, const int32_t* f, const scalar_t* g, int64_t A, int64_t N, int64_t C,
                    int64_t P, int64_t HW, int64_t F, int64_t vlo, int64_t vhi, double* acc) {
  for (int64_t base = 0; base < A * N; base += N) std::fill(acc + (base + vlo) * C, acc + (base + vhi) * C, 0.0);
  for (int64_t q = 0; q < P; ++q) {
    const int64_t t = rast_triangle(r + q * 4, F);
    if (t < 0) continue;
    const int32_t* ft = f + t * 3;
    const bool mine = (ft[0] >= vlo && ft[0] < vhi) || (ft[1] >= vlo && ft[1] < vhi) || (ft[2] >= vlo && ft[2] < vhi);
    if (!mine) continue;
    const double u = (double)r[q * 4 + 0], v = (double)r[q * 4 + 1];
    const double w[3] = {u, v, 1.0 - u - v};
    const scalar_t* gq = g + q * C;
    const int64_t base = (A == 1 ? 0 : q / HW) * N;
    for (int i = 0; i < 3; ++i) {
      const int64_t vi = ft[i];
      if (vi < vlo || vi >= vhi) continue;
      double* dst = acc + (base + vi) * C;
      for (int64_t c = 0; c < C; ++c) dst[c] += w[i] * (double)gq[c];
    }
  }
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
  const int64_t HW = H * W, P = B * HW;
  if (grad_attr == nullptr) {
    if (gr != nullptr)
      parallel_for(threads, P, kCheapGrain, [&](int64_t lo, int64_t hi) {
        rast_grad_range(a, r, f, g, A, N, C, HW, F, lo, hi, gr);
      });
    return;
  }
  // One pass of `workers` threads: worker w takes a share of the pixels for the (u, v)
  // gradients and a slice of the vertices for the attribute gradients.
  const int workers = workers_for(threads, P, 16384);
  Scratch<double> acc(A * N * C);
  run_workers(workers, [&](int w) {
    if (gr != nullptr) rast_grad_range(a, r, f, g, A, N, C, HW, F, P * w / workers, P * (w + 1) / workers, gr);
    int64_t vlo, vhi;
    owner_slice(N, w, workers, vlo, vhi);
    attr_grad_rows(r, f, g, A, N, C, P, HW, F, vlo, vhi, acc.get());
    for (int64_t base = 0; base < A * N; base += N)
      for (int64_t i = (base + vlo) * C; i < (base + vhi) * C; ++i) grad_attr[i] = (scalar_t)acc[i];
  });
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
