// CPU triangle rasterizer with nvdiffrast's output format, and its backward pass.
//
// rasterize_fwd(pos (B,N,4), tri (F,3) int32, H, W) -> rast (B,H,W,4) = (u, v, z/w, id+1)
// rasterize_bwd(pos, tri, rast, grad_rast) -> grad_pos (B,N,4)
//
// Method: homogeneous 2D rasterization. Each edge function e_i(p) = (P_j x P_k) . p with
// P = (X, Y, W) and p = (x_ndc, y_ndc, 1) is evaluated in double precision at every pixel
// centre; the perspective-correct barycentrics are b_i = e_i / sum(e). Normalising the
// edge functions by the sign of det[P0 P1 P2] makes "inside" mean e_i >= 0 for all i, which
// also handles vertices with W <= 0 exactly: only the part of the triangle in front of the
// eye (W > 0) is drawn. Fragments with z/w outside [-1, 1] are discarded, which is the same
// as clipping to the near and far planes (nvdiffrast clips to the whole frustum too).
//
// Shared edges: the edge coefficients of two triangles sharing an edge are exact negatives
// of each other (products of the same numbers, one rounding), and every pixel evaluates
// e = a*x + (b*y + c) in the same order, so the values are exact negatives too. Ties
// (e == 0) go to the triangle whose edge has a > 0, or a == 0 and b > 0: the rule of a
// sample point nudged by (+eps, +eps^2). No pixel is covered twice or missed along a
// shared edge or at a shared vertex. No backface culling.
//
// Parallelism: triangles are binned into 32x32 screen tiles (bins keep ascending triangle
// order); each thread rasterizes whole tiles, so no locks or atomics on pixels. Depth test: smallest z/w wins,
// equal depths keep the lower triangle id. Results do not depend on the thread count.
#pragma GCC optimize("fp-contract=off")  // keep e = a*x + r bit-identical on every path

#include "kernels/rasterize.h"

#include "kernels/raster_common.h"

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

namespace {

using morph3d_raster::parallel_for;
using morph3d_raster::pixel_ndc;
using morph3d_raster::run_workers;

constexpr int kTile = 32;

// ---------------------------------------------------------------------------------------
// Exact signs (expansion arithmetic, Dekker products): used only when a value computed in
// double precision is too close to zero for its sign to be trusted.

inline void two_sum(double a, double b, double& s, double& e) {
  s = a + b;
  const double bv = s - a, av = s - bv;
  e = (a - av) + (b - bv);
}

inline void split(double a, double& hi, double& lo) {
  const double c = 134217729.0 * a;  // 2^27 + 1
  hi = c - (c - a);
  lo = a - hi;
}

inline void two_prod(double a, double b, double& p, double& e) {
  p = a * b;
  double ah, al, bh, bl;
  split(a, ah, al);
  split(b, bh, bl);
  e = ((ah * bh - p) + ah * bl + al * bh) + al * bl;
}

// Sign of the exact sum of n doubles (grow-expansion; the largest component has the sign).
inline int exact_sum_sign(const double* terms, int n) {
  double h[32];
  int m = 0;
  for (int i = 0; i < n; ++i) {
    double q = terms[i];
    for (int k = 0; k < m; ++k) two_sum(q, h[k], q, h[k]);
    h[m++] = q;
  }
  for (int k = m - 1; k >= 0; --k)
    if (h[k] != 0.0) return h[k] > 0.0 ? 1 : -1;
  return 0;
}

// Exact sign of p*q - r*t.
inline int sign_diff_prod(double p, double q, double r, double t) {
  const double pq = p * q, rt = r * t, d = pq - rt;
  if (std::fabs(d) > 1e-15 * (std::fabs(pq) + std::fabs(rt))) return d > 0.0 ? 1 : -1;
  double terms[4];
  two_prod(p, q, terms[0], terms[1]);
  two_prod(-r, t, terms[2], terms[3]);
  return exact_sum_sign(terms, 4);
}

// Exact sign of det[u; v; w] (rows).
inline int exact_det3_sign(const double* u, const double* v, const double* w) {
  const double f[6][3] = {{u[0], v[1], w[2]},  {-u[0], v[2], w[1]}, {-u[1], v[0], w[2]},
                          {u[1], v[2], w[0]},  {u[2], v[0], w[1]},  {-u[2], v[1], w[0]}};
  double terms[24];
  for (int i = 0; i < 6; ++i) {
    double h, l;
    two_prod(f[i][0], f[i][1], h, l);
    two_prod(h, f[i][2], terms[4 * i], terms[4 * i + 1]);
    two_prod(l, f[i][2], terms[4 * i + 2], terms[4 * i + 3]);
  }
  return exact_sum_sign(terms, 24);
}

// ---------------------------------------------------------------------------------------
// Per-vertex data, computed once per image.

enum : uint8_t {  // outcode bits: which frustum planes a vertex lies outside of
  kRight = 1, kLeft = 2, kBottom = 4, kTop = 8, kFar = 16, kNear = 32, kBehind = 64
};

struct VertexInfo {
  double px, py;  // pixel coordinates (centres at integers), valid when W > 0
  double l1;      // |X| + |Y| + |W|, for error bounds
  uint8_t out;    // outcode
};

template <typename scalar_t>
inline void vertex_info(const scalar_t* v, int64_t H, int64_t W, VertexInfo& vi) {
  const double X = (double)v[0], Y = (double)v[1], Z = (double)v[2], Wc = (double)v[3];
  vi.out = (X > Wc ? kRight : 0) | (X < -Wc ? kLeft : 0) | (Y > Wc ? kBottom : 0) | (Y < -Wc ? kTop : 0) |
           (Z > Wc ? kFar : 0) | (Z < -Wc ? kNear : 0) | (Wc <= 0.0 ? kBehind : 0);
  vi.l1 = std::fabs(X) + std::fabs(Y) + std::fabs(Wc);
  if (Wc > 0.0) {
    vi.px = ((X / Wc + 1.0) * (double)W - 1.0) * 0.5;
    vi.py = ((Y / Wc + 1.0) * (double)H - 1.0) * 0.5;
  } else {
    vi.px = vi.py = 0.0;
  }
}

// ---------------------------------------------------------------------------------------
// Per-triangle setup in double precision.

struct TriSetup {
  double a[3], b[3], c[3];  // normalised edge functions e_i = a x + b y + c (NDC x, y)
  double bound[3];          // |computed e_i| <= bound: decide the sign exactly
  double za, zb, zc;        // z/w = za x + zb y + zc
  double P[3][3];           // (X, Y, W) of the corners, for exact decisions
  int sign;                 // sign of det[P0 P1 P2] (the normalisation)
};

// Build the setup of triangle (v0, v1, v2), each pointing at (X, Y, Z, W); l1 are the
// corners' |X| + |Y| + |W|. Returns false when the triangle is degenerate as seen from the
// eye (det == 0).
template <typename scalar_t>
inline bool setup_triangle(const scalar_t* v0, const scalar_t* v1, const scalar_t* v2, const double l1[3],
                           TriSetup& s) {
  const scalar_t* v[3] = {v0, v1, v2};
  double Z[3];
  for (int i = 0; i < 3; ++i) {
    s.P[i][0] = (double)v[i][0];
    s.P[i][1] = (double)v[i][1];
    s.P[i][2] = (double)v[i][3];
    Z[i] = (double)v[i][2];
  }
  const auto& P = s.P;
  for (int i = 0; i < 3; ++i) {
    const int j = (i + 1) % 3, k = (i + 2) % 3;
    s.a[i] = P[j][1] * P[k][2] - P[j][2] * P[k][1];
    s.b[i] = P[j][2] * P[k][0] - P[j][0] * P[k][2];
    s.c[i] = P[j][0] * P[k][1] - P[j][1] * P[k][0];
    // Rounding error of a x + b y + c for |x|, |y| <= 1 is a few ulps of
    // sum |products| <= l1_j l1_k; the factor leaves a wide margin.
    s.bound[i] = 1e-14 * l1[j] * l1[k];
  }
  double det = s.a[0] * P[0][0] + s.b[0] * P[0][1] + s.c[0] * P[0][2];
  if (!std::isfinite(det)) return false;
  s.sign = std::fabs(det) > 1e-14 * l1[0] * l1[1] * l1[2] ? (det > 0.0 ? 1 : -1) : exact_det3_sign(P[0], P[1], P[2]);
  if (s.sign == 0) return false;
  if (s.sign < 0) {
    for (int i = 0; i < 3; ++i) {
      s.a[i] = -s.a[i];
      s.b[i] = -s.b[i];
      s.c[i] = -s.c[i];
    }
    det = -det;
  }
  if (!(det > 0.0)) return false;  // exact sign and rounded value disagree: degenerate in practice
  const double inv = 1.0 / det;
  s.za = (s.a[0] * Z[0] + s.a[1] * Z[1] + s.a[2] * Z[2]) * inv;
  s.zb = (s.b[0] * Z[0] + s.b[1] * Z[1] + s.b[2] * Z[2]) * inv;
  s.zc = (s.c[0] * Z[0] + s.c[1] * Z[1] + s.c[2] * Z[2]) * inv;
  return std::isfinite(s.za) && std::isfinite(s.zb) && std::isfinite(s.zc);
}

// Is the centre of pixel (ix, iy) on the inner side of edge i? e is the edge function
// computed in double; near zero its sign is decided exactly at the pixel centre, written in
// integer homogeneous coordinates ((2 ix + 1 - W) H, (2 iy + 1 - H) W, W H). On the edge
// itself the pixel goes to the triangle whose normalised (a, b) is > 0 lexicographically,
// i.e. the side of a sample point nudged by (+eps, +eps^2).
inline bool inside_edge(const TriSetup& s, int i, double e, int64_t ix, int64_t iy, int64_t W, int64_t H) {
  if (e > s.bound[i]) return true;
  if (e < -s.bound[i]) return false;
  const double* Pj = s.P[(i + 1) % 3];
  const double* Pk = s.P[(i + 2) % 3];
  const double p[3] = {(double)((2 * ix + 1 - W) * H), (double)((2 * iy + 1 - H) * W), (double)(W * H)};
  const int sign = s.sign * exact_det3_sign(Pj, Pk, p);
  if (sign != 0) return sign > 0;
  const int sa = s.sign * sign_diff_prod(Pj[1], Pk[2], Pj[2], Pk[1]);
  if (sa != 0) return sa > 0;
  return s.sign * sign_diff_prod(Pj[2], Pk[0], Pj[0], Pk[2]) > 0;
}

// Pixel bounding box of a triangle, clamped to the image.
struct BBox {
  int16_t x0, y0, x1, y1;
};

// Clip the triangle to the frustum side planes (|X|, |Y| <= W, W > 0) in homogeneous
// space and return the pixel extent of what remains. Used for triangles with a vertex
// at W <= 0, whose projected vertices do not bound them.
inline bool clipped_extent(const double P[3][4], int64_t H, int64_t W, double& xmin, double& xmax, double& ymin,
                           double& ymax) {
  double poly[2][12][4];
  int n = 3;
  for (int i = 0; i < 3; ++i)
    for (int c = 0; c < 4; ++c) poly[0][i][c] = P[i][c];
  int cur = 0;
  for (int plane = 0; plane < 5; ++plane) {
    auto dist = [plane](const double* v) {
      switch (plane) {
        case 0: return v[3] - v[0];
        case 1: return v[3] + v[0];
        case 2: return v[3] - v[1];
        case 3: return v[3] + v[1];
        default: return v[3] - 1e-30;
      }
    };
    int m = 0;
    for (int i = 0; i < n; ++i) {
      const double* A = poly[cur][i];
      const double* Bv = poly[cur][(i + 1) % n];
      const double da = dist(A), db = dist(Bv);
      if (da >= 0.0) {
        for (int c = 0; c < 4; ++c) poly[1 - cur][m][c] = A[c];
        ++m;
      }
      if ((da >= 0.0) != (db >= 0.0)) {
        const double t = da / (da - db);
        for (int c = 0; c < 4; ++c) poly[1 - cur][m][c] = A[c] + t * (Bv[c] - A[c]);
        ++m;
      }
    }
    n = m;
    cur = 1 - cur;
    if (n == 0) return false;
  }
  xmin = ymin = std::numeric_limits<double>::infinity();
  xmax = ymax = -std::numeric_limits<double>::infinity();
  for (int i = 0; i < n; ++i) {
    const double x = ((poly[cur][i][0] / poly[cur][i][3] + 1.0) * (double)W - 1.0) * 0.5;
    const double y = ((poly[cur][i][1] / poly[cur][i][3] + 1.0) * (double)H - 1.0) * 0.5;
    xmin = std::min(xmin, x);
    xmax = std::max(xmax, x);
    ymin = std::min(ymin, y);
    ymax = std::max(ymax, y);
  }
  return true;
}

template <typename scalar_t>
inline bool triangle_bbox(const scalar_t* pb, const VertexInfo* vi, const int32_t* f, int64_t H, int64_t W,
                          BBox& box) {
  const VertexInfo &v0 = vi[f[0]], &v1 = vi[f[1]], &v2 = vi[f[2]];
  if (v0.out & v1.out & v2.out) return false;  // all three outside one plane (or behind the eye)
  double xmin, xmax, ymin, ymax;
  if (!((v0.out | v1.out | v2.out) & kBehind)) {
    xmin = std::min(v0.px, std::min(v1.px, v2.px));
    xmax = std::max(v0.px, std::max(v1.px, v2.px));
    ymin = std::min(v0.py, std::min(v1.py, v2.py));
    ymax = std::max(v0.py, std::max(v1.py, v2.py));
  } else {
    double P[3][4];
    for (int i = 0; i < 3; ++i)
      for (int c = 0; c < 4; ++c) P[i][c] = (double)pb[4 * (int64_t)f[i] + c];
    if (!clipped_extent(P, H, W, xmin, xmax, ymin, ymax)) return false;
  }
  // Pixel centres (integers) within the extent; the margin keeps centres lying exactly on a
  // vertex (rounding moves them by far less than 1e-3 px). Most tiny triangles contain none.
  const double margin = 1e-3;
  const double fx0 = std::ceil(xmin - margin), fx1 = std::floor(xmax + margin);
  const double fy0 = std::ceil(ymin - margin), fy1 = std::floor(ymax + margin);
  if (!(fx0 <= fx1 && fy0 <= fy1)) return false;
  if (!(fx1 >= 0.0 && fy1 >= 0.0 && fx0 <= (double)(W - 1) && fy0 <= (double)(H - 1))) return false;
  box.x0 = (int16_t)std::max(0.0, fx0);
  box.y0 = (int16_t)std::max(0.0, fy0);
  box.x1 = (int16_t)std::min((double)(W - 1), fx1);
  box.y1 = (int16_t)std::min((double)(H - 1), fy1);
  return true;
}

template <typename scalar_t>
void rasterize_kernel(const scalar_t* pos, const int32_t* tri, int64_t B, int64_t N, int64_t F, int64_t H,
                      int64_t W, scalar_t* out, int nt) {
  const int64_t tiles_x = (W + kTile - 1) / kTile, tiles_y = (H + kTile - 1) / kTile;
  const int64_t tiles_per_image = tiles_x * tiles_y, num_tiles = B * tiles_per_image;
  const int64_t items = B * F;  // item = b * F + t

  std::vector<double> xs(W), ys(H);
  for (int64_t i = 0; i < W; ++i) xs[i] = pixel_ndc(i, W);
  for (int64_t j = 0; j < H; ++j) ys[j] = pixel_ndc(j, H);

  std::unique_ptr<VertexInfo[]> verts(new VertexInfo[B * N]);
  parallel_for(nt, B * N, morph3d_raster::kCheapGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) vertex_info(pos + 4 * i, H, W, verts[i]);
  });

  // 1. Bounding boxes and tile counts per chunk of items (chunks in item order).
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(items / 16384, 4 * (int64_t)nt));
  auto chunk_range = [&](int64_t c, int64_t& lo, int64_t& hi) {
    lo = items * c / chunks;
    hi = items * (c + 1) / chunks;
  };
  std::unique_ptr<BBox[]> boxes(new BBox[items]);
  std::unique_ptr<uint8_t[]> valid(new uint8_t[items]);
  std::vector<int64_t> counts((size_t)chunks * num_tiles, 0);
  parallel_for(nt, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      int64_t lo, hi;
      chunk_range(c, lo, hi);
      int64_t* cnt = counts.data() + (size_t)c * num_tiles;
      for (int64_t it = lo; it < hi; ++it) {
        const int64_t b = it / F, t = it % F;
        BBox box;
        const bool ok = triangle_bbox(pos + b * N * 4, verts.get() + b * N, tri + t * 3, H, W, box);
        valid[it] = ok;
        if (!ok) continue;
        boxes[it] = box;
        const int64_t base = b * tiles_per_image;
        for (int64_t ty = box.y0 / kTile; ty <= box.y1 / kTile; ++ty)
          for (int64_t tx = box.x0 / kTile; tx <= box.x1 / kTile; ++tx) ++cnt[base + ty * tiles_x + tx];
      }
    }
  });
  // 2. Offsets: tile-major, then chunk order, so each bin lists triangles in ascending id.
  std::vector<int64_t> tile_start(num_tiles + 1, 0), cursor((size_t)chunks * num_tiles);
  int64_t total = 0;
  for (int64_t tile = 0; tile < num_tiles; ++tile) {
    tile_start[tile] = total;
    for (int64_t c = 0; c < chunks; ++c) {
      cursor[(size_t)c * num_tiles + tile] = total;
      total += counts[(size_t)c * num_tiles + tile];
    }
  }
  tile_start[num_tiles] = total;
  std::unique_ptr<int32_t[]> bins(new int32_t[std::max<int64_t>(total, 1)]);
  parallel_for(nt, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      int64_t lo, hi;
      chunk_range(c, lo, hi);
      int64_t* cur = cursor.data() + (size_t)c * num_tiles;
      for (int64_t it = lo; it < hi; ++it) {
        if (!valid[it]) continue;
        const int64_t b = it / F, t = it % F;
        const BBox& box = boxes[it];
        const int64_t base = b * tiles_per_image;
        for (int64_t ty = box.y0 / kTile; ty <= box.y1 / kTile; ++ty)
          for (int64_t tx = box.x0 / kTile; tx <= box.x1 / kTile; ++tx)
            bins[cur[base + ty * tiles_x + tx]++] = (int32_t)t;
      }
    }
  });

  // 3. Rasterize tiles; each thread owns whole tiles.
  parallel_for(nt, num_tiles, 1, [&](int64_t tile_lo, int64_t tile_hi) {
    double zbuf[kTile * kTile], ubuf[kTile * kTile], vbuf[kTile * kTile];
    int32_t idbuf[kTile * kTile];
    for (int64_t tile = tile_lo; tile < tile_hi; ++tile) {
      const int64_t b = tile / tiles_per_image, local = tile % tiles_per_image;
      const int64_t tx0 = (local % tiles_x) * kTile, ty0 = (local / tiles_x) * kTile;
      const int64_t tx1 = std::min(tx0 + kTile, W) - 1, ty1 = std::min(ty0 + kTile, H) - 1;
      for (int i = 0; i < kTile * kTile; ++i) {
        zbuf[i] = std::numeric_limits<double>::infinity();
        idbuf[i] = -1;
      }
      const scalar_t* pb = pos + b * N * 4;
      const VertexInfo* vb = verts.get() + b * N;
      for (int64_t e = tile_start[tile]; e < tile_start[tile + 1]; ++e) {
        const int64_t t = bins[e];
        const int32_t* f = tri + t * 3;
        const double l1[3] = {vb[f[0]].l1, vb[f[1]].l1, vb[f[2]].l1};
        TriSetup s;
        if (!setup_triangle(pb + 4 * (int64_t)f[0], pb + 4 * (int64_t)f[1], pb + 4 * (int64_t)f[2], l1, s)) continue;
        const BBox& box = boxes[b * F + t];
        const int64_t x0 = std::max<int64_t>(box.x0, tx0), x1 = std::min<int64_t>(box.x1, tx1);
        const int64_t y0 = std::max<int64_t>(box.y0, ty0), y1 = std::min<int64_t>(box.y1, ty1);
        for (int64_t py = y0; py <= y1; ++py) {
          const double y = ys[py];
          const double r0 = s.b[0] * y + s.c[0], r1 = s.b[1] * y + s.c[1], r2 = s.b[2] * y + s.c[2];
          const double zr = s.zb * y + s.zc;
          const int64_t row = (py - ty0) * kTile - tx0;
          for (int64_t px = x0; px <= x1; ++px) {
            const double x = xs[px];
            const double e0 = s.a[0] * x + r0, e1 = s.a[1] * x + r1, e2 = s.a[2] * x + r2;
            if (!(inside_edge(s, 0, e0, px, py, W, H) && inside_edge(s, 1, e1, px, py, W, H) &&
                  inside_edge(s, 2, e2, px, py, W, H)))
              continue;
            const double z = s.za * x + zr;
            const int64_t k = row + px;
            if (!(z >= -1.0 && z <= 1.0 && z < zbuf[k])) continue;
            const double sum = e0 + e1 + e2;
            zbuf[k] = z;
            idbuf[k] = (int32_t)t;
            // sum <= 0 only for a triangle too small for double precision: use its centre.
            ubuf[k] = sum > 0.0 ? e0 / sum : 1.0 / 3.0;
            vbuf[k] = sum > 0.0 ? e1 / sum : 1.0 / 3.0;
          }
        }
      }
      for (int64_t py = ty0; py <= ty1; ++py) {
        scalar_t* o = out + ((b * H + py) * W + tx0) * 4;
        const int64_t row = (py - ty0) * kTile;
        for (int64_t px = 0; px <= tx1 - tx0; ++px, o += 4) {
          const int64_t k = row + px;
          if (idbuf[k] < 0) {
            o[0] = o[1] = o[2] = o[3] = (scalar_t)0;
          } else {
            o[0] = (scalar_t)ubuf[k];
            o[1] = (scalar_t)vbuf[k];
            o[2] = (scalar_t)zbuf[k];
            o[3] = (scalar_t)(idbuf[k] + 1);
          }
        }
      }
    }
  });
}

// Gradient of (u, v, z/w) at pixel p = (x, y, 1) with respect to the triangle's clip
// positions. With P_i = (X_i, Y_i, W_i): e_i = [P_j, P_k, p], b_i = e_i / sum(e),
// z/w = sum(b_i Z_i) / sum(b_i W_i). Writes d(loss)/d(X, Y, Z, W) of the 3 corners.
template <typename scalar_t>
inline void pixel_gradient(const scalar_t* v0, const scalar_t* v1, const scalar_t* v2, double x, double y,
                           double gu, double gv, double gz, double out[3][4]) {
  const scalar_t* v[3] = {v0, v1, v2};
  double P[3][3], Z[3];
  for (int i = 0; i < 3; ++i) {
    P[i][0] = (double)v[i][0];
    P[i][1] = (double)v[i][1];
    P[i][2] = (double)v[i][3];
    Z[i] = (double)v[i][2];
  }
  const double p[3] = {x, y, 1.0};
  auto cross = [](const double* a, const double* b, double* r) {
    r[0] = a[1] * b[2] - a[2] * b[1];
    r[1] = a[2] * b[0] - a[0] * b[2];
    r[2] = a[0] * b[1] - a[1] * b[0];
  };
  double e[3];
  for (int i = 0; i < 3; ++i) {
    double E[3];
    cross(P[(i + 1) % 3], P[(i + 2) % 3], E);
    e[i] = E[0] * p[0] + E[1] * p[1] + E[2] * p[2];
  }
  for (int i = 0; i < 3; ++i)
    for (int c = 0; c < 4; ++c) out[i][c] = 0.0;
  const double S = e[0] + e[1] + e[2];
  if (!(S != 0.0) || !std::isfinite(S)) return;
  const double bc[3] = {e[0] / S, e[1] / S, e[2] / S};
  const double D = bc[0] * P[0][2] + bc[1] * P[1][2] + bc[2] * P[2][2];  // W at the pixel
  if (!(D != 0.0)) return;
  const double zw = (bc[0] * Z[0] + bc[1] * Z[1] + bc[2] * Z[2]) / D;
  const double gb[3] = {gu, gv, 0.0};
  double G[3], Gbar = 0.0;
  for (int i = 0; i < 3; ++i) {
    G[i] = gb[i] + gz * (Z[i] - zw * P[i][2]) / D;
    Gbar += G[i] * bc[i];
  }
  for (int i = 0; i < 3; ++i) {
    const int j = (i + 1) % 3, k = (i + 2) % 3;
    const double de = (G[i] - Gbar) / S;
    double dj[3], dk[3];
    cross(P[k], p, dj);  // d e_i / d P_j
    cross(p, P[j], dk);  // d e_i / d P_k
    out[j][0] += de * dj[0];
    out[j][1] += de * dj[1];
    out[j][3] += de * dj[2];
    out[k][0] += de * dk[0];
    out[k][1] += de * dk[1];
    out[k][3] += de * dk[2];
    out[i][2] += gz * bc[i] / D;         // z/w through Z_i
    out[i][3] -= gz * zw * bc[i] / D;    // z/w through W_i in the denominator
  }
}

template <typename scalar_t>
void rasterize_backward_kernel(const scalar_t* pos, const int32_t* tri, const scalar_t* rast, const scalar_t* grad,
                               int64_t B, int64_t N, int64_t F, int64_t H, int64_t W, scalar_t* grad_pos, int nt) {
  const int64_t HW = H * W, P = B * HW;
  std::vector<double> xs(W), ys(H);
  for (int64_t i = 0; i < W; ++i) xs[i] = pixel_ndc(i, W);
  for (int64_t j = 0; j < H; ++j) ys[j] = pixel_ndc(j, H);

  // Gradient of pixel q; returns its triangle or -1 when it contributes nothing.
  auto pixel = [&](int64_t q, double out[3][4]) -> int64_t {
    const int64_t t = morph3d_raster::rast_triangle(rast + q * 4, F);
    const scalar_t* g = grad + q * 4;
    if (t < 0 || (g[0] == 0 && g[1] == 0 && g[2] == 0)) return -1;
    const int64_t b = q / HW, py = (q / W) % H, px = q % W;
    const scalar_t* pb = pos + b * N * 4;
    const int32_t* f = tri + t * 3;
    pixel_gradient(pb + 4 * (int64_t)f[0], pb + 4 * (int64_t)f[1], pb + 4 * (int64_t)f[2], xs[px], ys[py],
                   (double)g[0], (double)g[1], (double)g[2], out);
    return t;
  };

  // Every vertex sums its contributions in pixel order, whichever branch runs, so the
  // result does not depend on the thread count.
  std::vector<double> acc(B * N * 4, 0.0);
  if (B >= nt) {
    // Whole images per thread: accumulate straight into that image's vertices.
    parallel_for(nt, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        for (int64_t q = b * HW; q < (b + 1) * HW; ++q) {
          double out[3][4];
          const int64_t t = pixel(q, out);
          if (t < 0) continue;
          for (int i = 0; i < 3; ++i) {
            double* a = acc.data() + (b * N + tri[t * 3 + i]) * 4;
            for (int c = 0; c < 4; ++c) a[c] += out[i][c];
          }
        }
      }
    });
  } else {
    // Fewer images than threads: compute per pixel in parallel, then owner-computes scatter.
    std::unique_ptr<int32_t[]> pix_tri(new int32_t[P]);
    std::unique_ptr<double[]> contrib(new double[P * 12]);
    parallel_for(nt, P, 8192, [&](int64_t lo, int64_t hi) {
      for (int64_t q = lo; q < hi; ++q) {
        double out[3][4];
        const int64_t t = pixel(q, out);
        pix_tri[q] = (int32_t)t;
        if (t < 0) continue;
        double* dst = contrib.get() + q * 12;
        for (int i = 0; i < 3; ++i)
          for (int c = 0; c < 4; ++c) dst[i * 4 + c] = out[i][c];
      }
    });
    const int workers = morph3d_raster::workers_for(nt, P, 2 * morph3d_raster::kCheapGrain);
    run_workers(workers, [&](int w) {
      int64_t lo, hi;
      morph3d_raster::owner_slice(N, w, workers, lo, hi);
      for (int64_t q = 0; q < P; ++q) {
        const int32_t t = pix_tri[q];
        if (t < 0) continue;
        const int64_t b = q / HW;
        const double* src = contrib.get() + q * 12;
        for (int i = 0; i < 3; ++i) {
          const int64_t vi = tri[(int64_t)t * 3 + i];
          if (vi < lo || vi >= hi) continue;
          double* a = acc.data() + (b * N + vi) * 4;
          for (int c = 0; c < 4; ++c) a[c] += src[i * 4 + c];
        }
      }
    });
  }
  for (int64_t i = 0; i < B * N * 4; ++i) grad_pos[i] = (scalar_t)acc[i];
}


}  // namespace

namespace morph3d_raster {

template <typename scalar_t>
void rasterize_forward(const scalar_t* pos, const int32_t* tri, int64_t B, int64_t N, int64_t F, int64_t H,
                       int64_t W, scalar_t* rast, int threads) {
  rasterize_kernel<scalar_t>(pos, tri, B, N, F, H, W, rast, threads);
}

template <typename scalar_t>
void rasterize_backward(const scalar_t* pos, const int32_t* tri, const scalar_t* rast, const scalar_t* grad_rast,
                        int64_t B, int64_t N, int64_t F, int64_t H, int64_t W, scalar_t* grad_pos, int threads) {
  rasterize_backward_kernel<scalar_t>(pos, tri, rast, grad_rast, B, N, F, H, W, grad_pos, threads);
}

template void rasterize_forward<float>(const float*, const int32_t*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                       float*, int);
template void rasterize_forward<double>(const double*, const int32_t*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                        double*, int);
template void rasterize_backward<float>(const float*, const int32_t*, const float*, const float*, int64_t, int64_t,
                                        int64_t, int64_t, int64_t, float*, int);
template void rasterize_backward<double>(const double*, const int32_t*, const double*, const double*, int64_t,
                                         int64_t, int64_t, int64_t, int64_t, double*, int);

}  // namespace morph3d_raster
