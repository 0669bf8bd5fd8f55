// CPU attribute interpolation over a rasterized image (nvdiffrast's interpolate) and its
// backward pass.
//
// interpolate_fwd(attr (A,N,C), rast (B,H,W,4), tri (F,3) int32) -> out (B,H,W,C)
//   out = u * attr[t0] + v * attr[t1] + (1 - u - v) * attr[t2] on covered pixels, 0 elsewhere.
//   A is B, or 1 to share one set of attributes across the batch.
// interpolate_bwd(attr, rast, tri, grad_out) -> (grad_attr (A,N,C), grad_rast (B,H,W,4))
//   grad_rast holds d/du and d/dv in channels 0 and 1, zeros in channels 2 and 3.
#include "raster_common.h"

#include <tuple>
#include <vector>

namespace {

using morph3d_raster::parallel_for;
using morph3d_raster::rast_triangle;

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

at::Tensor interpolate_fwd(const at::Tensor& attr_in, const at::Tensor& rast_in, const at::Tensor& tri_in) {
  check_inputs(attr_in, rast_in, tri_in);
  const at::Tensor attr = attr_in.contiguous(), rast = rast_in.contiguous(), tri = tri_in.contiguous();
  const int64_t A = attr.size(0), N = attr.size(1), C = attr.size(2);
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2), F = tri.size(0);
  at::Tensor out = at::empty({B, H, W, C}, attr.options());
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_fwd", [&] {
    const scalar_t* a = attr.data_ptr<scalar_t>();
    const scalar_t* r = rast.data_ptr<scalar_t>();
    const int32_t* f = tri.data_ptr<int32_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    parallel_for(B * H * W, morph3d_raster::kCheapGrain, [&](int64_t lo, int64_t hi) {
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
  });
  return out;
}

// Attribute gradients: owner-computes scatter in pixel order (deterministic).
template <typename scalar_t>
void scatter_attr_grad(const scalar_t* r, const scalar_t* g, const int32_t* f, int64_t A, int64_t N, int64_t C,
                       int64_t P, int64_t HW, int64_t F, scalar_t* grad_attr) {
  std::vector<double> acc(A * N * C, 0.0);
  const int workers = morph3d_raster::workers_for(P, 2 * morph3d_raster::kCheapGrain);
  morph3d_raster::run_workers(workers, [&](int worker) {
    int64_t vlo, vhi;
    morph3d_raster::owner_slice(N, worker, workers, vlo, vhi);
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

std::tuple<at::Tensor, at::Tensor> interpolate_bwd(const at::Tensor& attr_in, const at::Tensor& rast_in,
                                                   const at::Tensor& tri_in, const at::Tensor& grad_in) {
  check_inputs(attr_in, rast_in, tri_in);
  const at::Tensor attr = attr_in.contiguous(), rast = rast_in.contiguous(), tri = tri_in.contiguous();
  const int64_t A = attr.size(0), N = attr.size(1), C = attr.size(2);
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2), F = tri.size(0);
  TORCH_CHECK(grad_in.dim() == 4 && grad_in.size(0) == B && grad_in.size(1) == H && grad_in.size(2) == W &&
                  grad_in.size(3) == C,
              "morph3d interpolate_bwd: grad must be (B, H, W, C)");
  const at::Tensor grad = grad_in.to(attr.scalar_type()).contiguous();
  at::Tensor grad_attr = at::empty_like(attr);
  at::Tensor grad_rast = at::zeros_like(rast);
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_bwd", [&] {
    const scalar_t* a = attr.data_ptr<scalar_t>();
    const scalar_t* r = rast.data_ptr<scalar_t>();
    const scalar_t* g = grad.data_ptr<scalar_t>();
    const int32_t* f = tri.data_ptr<int32_t>();
    scalar_t* gr = grad_rast.data_ptr<scalar_t>();
    // d/du = g . (a0 - a2), d/dv = g . (a1 - a2): independent per pixel.
    parallel_for(B * H * W, morph3d_raster::kCheapGrain, [&](int64_t lo, int64_t hi) {
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
    scatter_attr_grad(r, g, f, A, N, C, B * H * W, H * W, F, grad_attr.data_ptr<scalar_t>());
  });
  return {grad_attr, grad_rast};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(morph3d, m) {
  m.def("interpolate_fwd(Tensor attr, Tensor rast, Tensor tri) -> Tensor");
  m.def("interpolate_bwd(Tensor attr, Tensor rast, Tensor tri, Tensor grad_out) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(morph3d, CPU, m) {
  m.impl("interpolate_fwd", &interpolate_fwd);
  m.impl("interpolate_bwd", &interpolate_bwd);
}
