// A minimal float32 rasterizer + attribute interpolation + fused backward, written only as a
// performance floor for benchmarks/bench_raster_floor.py (compiled there with
// torch.utils.cpp_extension.load). It does the least work that produces the same images and
// gradients as morph3d's rasterize + interpolate on an ordinary scene, and nothing else:
//   - every vertex in front of the eye (w > 0), no clipping, no exact edge tests, no tie rules
//     beyond "lower triangle id wins equal depths";
//   - screen-space edge functions in float32, perspective-correct barycentrics, z-buffer;
//   - forward: each of `threads` threads owns a band of rows and walks every triangle;
//   - backward: gradients w.r.t. the attributes and the clip positions (through the
//     perspective-correct barycentrics) in one pass per band, each band summing into its own
//     buffers, added up at the end.
// Not part of morph3d: no input checks beyond shapes, no determinism across thread counts.
#include <torch/extension.h>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

struct Vert {
  float sx, sy, zw, iw;  // pixel coordinates, z/w, 1/w
};

std::vector<Vert> project(const float* pos, int64_t N, int64_t H, int64_t W) {
  std::vector<Vert> v(N);
  for (int64_t i = 0; i < N; ++i) {
    const float* p = pos + 4 * i;
    const float iw = 1.0f / p[3];
    v[i] = {((p[0] * iw + 1.0f) * W - 1.0f) * 0.5f, ((p[1] * iw + 1.0f) * H - 1.0f) * 0.5f, p[2] * iw, iw};
  }
  return v;
}

}  // namespace

// pos (N, 4), tri (F, 3) int32, attr (N, C) -> ids (H, W) int32 (-1 background), uv (H, W, 2), img (H, W, C).
std::vector<torch::Tensor> forward(torch::Tensor pos, torch::Tensor tri, torch::Tensor attr, int64_t H, int64_t W,
                                   int64_t threads) {
  const int64_t N = pos.size(0), F = tri.size(0), C = attr.size(1);
  const float* P = pos.data_ptr<float>();
  const int32_t* T = tri.data_ptr<int32_t>();
  const float* A = attr.data_ptr<float>();
  auto ids = torch::empty({H, W}, torch::kInt32);
  auto uv = torch::empty({H, W, 2});
  auto img = torch::empty({H, W, C});
  int32_t* id = ids.data_ptr<int32_t>();
  float* UV = uv.data_ptr<float>();
  float* out = img.data_ptr<float>();
  const std::vector<Vert> v = project(P, N, H, W);
  std::vector<float> zbuf(H * W);
#pragma omp parallel num_threads(threads)
  {
    const int nt = omp_get_num_threads(), me = omp_get_thread_num();
    const int64_t r0 = H * me / nt, r1 = H * (me + 1) / nt;
    std::fill(zbuf.begin() + r0 * W, zbuf.begin() + r1 * W, INFINITY);
    std::fill(id + r0 * W, id + r1 * W, -1);
    for (int64_t t = 0; t < F; ++t) {
      const Vert &a = v[T[3 * t]], &b = v[T[3 * t + 1]], &c = v[T[3 * t + 2]];
      const int64_t y0 = std::max<int64_t>(r0, (int64_t)std::ceil(std::min({a.sy, b.sy, c.sy})));
      const int64_t y1 = std::min<int64_t>(r1 - 1, (int64_t)std::floor(std::max({a.sy, b.sy, c.sy})));
      if (y0 > y1) continue;
      const int64_t x0 = std::max<int64_t>(0, (int64_t)std::ceil(std::min({a.sx, b.sx, c.sx})));
      const int64_t x1 = std::min<int64_t>(W - 1, (int64_t)std::floor(std::max({a.sx, b.sx, c.sx})));
      if (x0 > x1) continue;
      const float area = (b.sx - a.sx) * (c.sy - a.sy) - (b.sy - a.sy) * (c.sx - a.sx);
      if (area == 0.0f) continue;
      const float inv = 1.0f / area;
      for (int64_t y = y0; y <= y1; ++y)
        for (int64_t x = x0; x <= x1; ++x) {
          // Screen-space barycentrics of a (l0), b (l1), c (l2).
          const float l0 = ((b.sx - x) * (c.sy - y) - (b.sy - y) * (c.sx - x)) * inv;
          const float l1 = ((c.sx - x) * (a.sy - y) - (c.sy - y) * (a.sx - x)) * inv;
          const float l2 = 1.0f - l0 - l1;
          if (l0 < 0.0f || l1 < 0.0f || l2 < 0.0f) continue;
          const float z = l0 * a.zw + l1 * b.zw + l2 * c.zw;
          const int64_t k = y * W + x;
          if (z < -1.0f || z > 1.0f || !(z < zbuf[k])) continue;
          zbuf[k] = z;
          id[k] = (int32_t)t;
          const float p0 = l0 * a.iw, p1 = l1 * b.iw, p2 = l2 * c.iw, s = 1.0f / (p0 + p1 + p2);
          UV[2 * k] = p0 * s;
          UV[2 * k + 1] = p1 * s;
        }
    }
    // Interpolate the attributes of this band.
    for (int64_t k = r0 * W; k < r1 * W; ++k) {
      float* o = out + k * C;
      const int32_t t = id[k];
      if (t < 0) {
        UV[2 * k] = UV[2 * k + 1] = 0.0f;
        for (int64_t ch = 0; ch < C; ++ch) o[ch] = 0.0f;
        continue;
      }
      const float u = UV[2 * k], w = UV[2 * k + 1], r = 1.0f - u - w;
      const float *a0 = A + T[3 * t] * C, *a1 = A + T[3 * t + 1] * C, *a2 = A + T[3 * t + 2] * C;
      for (int64_t ch = 0; ch < C; ++ch) o[ch] = u * a0[ch] + w * a1[ch] + r * a2[ch];
    }
  }
  return {ids, uv, img};
}

// Fused backward of forward(): grad_img (H, W, C) -> grad_pos (N, 4), grad_attr (N, C).
std::vector<torch::Tensor> backward(torch::Tensor pos, torch::Tensor tri, torch::Tensor attr, torch::Tensor ids,
                                    torch::Tensor uv, torch::Tensor grad_img, int64_t threads) {
  const int64_t N = pos.size(0), C = attr.size(1), H = ids.size(0), W = ids.size(1);
  const float* P = pos.data_ptr<float>();
  const int32_t* T = tri.data_ptr<int32_t>();
  const float* A = attr.data_ptr<float>();
  const int32_t* id = ids.data_ptr<int32_t>();
  const float* UV = uv.data_ptr<float>();
  const float* G = grad_img.data_ptr<float>();
  std::vector<std::vector<float>> gp(threads), ga(threads);
#pragma omp parallel num_threads(threads)
  {
    const int nt = omp_get_num_threads(), me = omp_get_thread_num();
    std::vector<float>& gpos = gp[me];
    std::vector<float>& gatt = ga[me];
    gpos.assign(N * 4, 0.0f);
    gatt.assign(N * C, 0.0f);
    const int64_t k0 = H * W * me / nt, k1 = H * W * (me + 1) / nt;
    for (int64_t k = k0; k < k1; ++k) {
      const int32_t t = id[k];
      if (t < 0) continue;
      const int32_t vi[3] = {T[3 * t], T[3 * t + 1], T[3 * t + 2]};
      const float* g = G + k * C;
      const float b[3] = {UV[2 * k], UV[2 * k + 1], 1.0f - UV[2 * k] - UV[2 * k + 1]};
      float db[3] = {0.0f, 0.0f, 0.0f};  // d loss / d b_i
      for (int i = 0; i < 3; ++i) {
        const float* a = A + vi[i] * C;
        float* d = gatt.data() + vi[i] * C;
        for (int64_t ch = 0; ch < C; ++ch) {
          d[ch] += b[i] * g[ch];
          db[i] += g[ch] * a[ch];
        }
      }
      // b_i = e_i / S, e_i = (P_j x P_k) . p with P = (X, Y, W), p = (x, y, 1) in NDC.
      const float x = (2.0f * (k % W) + 1.0f) / W - 1.0f, y = (2.0f * (k / W) + 1.0f) / H - 1.0f;
      float Q[3][3];
      for (int i = 0; i < 3; ++i) {
        const float* p = P + 4 * vi[i];
        Q[i][0] = p[0];
        Q[i][1] = p[1];
        Q[i][2] = p[3];
      }
      float e[3];
      for (int i = 0; i < 3; ++i) {
        const float *q = Q[(i + 1) % 3], *r = Q[(i + 2) % 3];
        e[i] = (q[1] * r[2] - q[2] * r[1]) * x + (q[2] * r[0] - q[0] * r[2]) * y + (q[0] * r[1] - q[1] * r[0]);
      }
      const float S = e[0] + e[1] + e[2];
      const float mean = db[0] * b[0] + db[1] * b[1] + db[2] * b[2];
      for (int i = 0; i < 3; ++i) {
        const float de = (db[i] - mean) / S;  // d loss / d e_i
        const int j = (i + 1) % 3, l = (i + 2) % 3;
        // d e_i / d P_j = P_l x p, d e_i / d P_l = p x P_j
        const float* Pl = Q[l];
        const float* Pj = Q[j];
        float* gj = gpos.data() + 4 * vi[j];
        float* gl = gpos.data() + 4 * vi[l];
        gj[0] += de * (Pl[1] - Pl[2] * y);
        gj[1] += de * (Pl[2] * x - Pl[0]);
        gj[3] += de * (Pl[0] * y - Pl[1] * x);
        gl[0] += de * (y * Pj[2] - Pj[1]);
        gl[1] += de * (Pj[0] - x * Pj[2]);
        gl[3] += de * (x * Pj[1] - y * Pj[0]);
      }
    }
  }
  auto grad_pos = torch::zeros({N, 4});
  auto grad_attr = torch::zeros({N, C});
  float* op = grad_pos.data_ptr<float>();
  float* oa = grad_attr.data_ptr<float>();
  for (auto& part : gp)
    for (int64_t i = 0; i < (int64_t)part.size(); ++i) op[i] += part[i];
  for (auto& part : ga)
    for (int64_t i = 0; i < (int64_t)part.size(); ++i) oa[i] += part[i];
  return {grad_pos, grad_attr};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "rasterize + interpolate (float32 floor)");
  m.def("backward", &backward, "fused backward of forward() (float32 floor)");
}
