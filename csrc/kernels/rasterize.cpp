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
// Prefilter: a triangle whose box holds a single pixel centre (most triangles of a dense mesh)
// is tested there first with its corners' float pixel coordinates, under an error bound derived
// at misses_lone_pixel; when that proves the centre outside, the triangle is dropped before its
// double setup and binning. Undecided cases take the exact path, so results are unchanged.
//
// Parallelism: whole images per thread while the batch has enough of them; otherwise an image
// is rasterized by all threads: triangles are binned into 32x32 screen tiles (bins keep
// ascending triangle order) and each thread rasterizes whole tiles, so no locks or atomics on
// pixels. Depth test: smallest z/w wins, equal depths keep the lower triangle id. Results do
// not depend on the thread count.
//
// Memory: all scratch (vertex data, boxes and bins of one image; per-vertex sums and per-pixel
// gradients of the backward) is leased from the cache of kernels/raster_scratch.h, so its size
// follows one image, not the batch, and repeated calls do not pay for fresh pages.
#pragma GCC optimize("fp-contract=off")  // keep e = a*x + r bit-identical on every path

#include "kernels/rasterize.h"

#include "kernels/raster_common.h"
#include "kernels/raster_scratch.h"

#include <cmath>
#include <algorithm>
#include <limits>

namespace {

using morph3d_raster::parallel_for;
using morph3d_raster::pixel_ndc;
using morph3d_raster::run_workers;
using morph3d_raster::Scratch;

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

// ceil / floor of v clamped to [-1, n] (v not NaN). The clamp bounds are integers, so this
// equals clamping ceil(v) / floor(v), and it needs no libm call on the per-triangle path.
inline int64_t ceil_within(double v, int64_t n) {
  v = std::min(std::max(v, -1.0), (double)n);
  const int64_t i = (int64_t)v;
  return i + (v > (double)i ? 1 : 0);
}

inline int64_t floor_within(double v, int64_t n) {
  v = std::min(std::max(v, -1.0), (double)n);
  const int64_t i = (int64_t)v;
  return i - (v < (double)i ? 1 : 0);
}

// Pixel centres within a triangle's extent get a margin: it keeps centres lying exactly on a
// vertex (rounding moves them by far less than 1e-3 px).
constexpr double kMargin = 1e-3;

struct VertexInfo {
  double l1;               // |X| + |Y| + |W|, for error bounds
  float px, py;            // pixel coordinates (centres at integers), rounded to float; W > 0 only
  int16_t x0, x1, y0, y1;  // ceil(px - margin), floor(px + margin) (same for y) within [-1, size]; W > 0 only
  uint8_t out;             // outcode
};

// The bounds of a triangle's pixel centres are the min / max of its corners' (x0, y0) / (x1, y1):
// ceil, floor and the rounded margin are monotone, so the corners carry them exactly.
template <typename scalar_t>
inline void vertex_info(const scalar_t* v, int64_t H, int64_t W, VertexInfo& vi) {
  const double X = (double)v[0], Y = (double)v[1], Z = (double)v[2], Wc = (double)v[3];
  vi.out = (X > Wc ? kRight : 0) | (X < -Wc ? kLeft : 0) | (Y > Wc ? kBottom : 0) | (Y < -Wc ? kTop : 0) |
           (Z > Wc ? kFar : 0) | (Z < -Wc ? kNear : 0) | (Wc <= 0.0 ? kBehind : 0);
  vi.l1 = std::fabs(X) + std::fabs(Y) + std::fabs(Wc);
  vi.x0 = vi.x1 = vi.y0 = vi.y1 = 0;
  vi.px = vi.py = 0.0f;
  if (Wc > 0.0) {
    const double px = ((X / Wc + 1.0) * (double)W - 1.0) * 0.5;  // pixel coordinates, centres at integers
    const double py = ((Y / Wc + 1.0) * (double)H - 1.0) * 0.5;
    vi.px = (float)std::min(std::max(px, -1e30), 1e30);  // in float range (the prefilter needs |px| < size + 1)
    vi.py = (float)std::min(std::max(py, -1e30), 1e30);
    vi.x0 = (int16_t)ceil_within(px - kMargin, W);
    vi.x1 = (int16_t)floor_within(px + kMargin, W);
    vi.y0 = (int16_t)ceil_within(py - kMargin, H);
    vi.y1 = (int16_t)floor_within(py + kMargin, H);
  }
}

// ---------------------------------------------------------------------------------------
// Per-triangle setup in double precision.

struct TriSetup {
  double a[3], b[3], c[3];  // normalised edge functions e_i = a x + b y + c (NDC x, y)
  double bound[3];          // |computed e_i| <= bound: decide the sign exactly
  double za, zb, zc;        // z/w = za x + zb y + zc, set by setup_depth
  double P[3][3];           // (X, Y, W) of the corners, for exact decisions
  double Z[3];              // Z of the corners
  double det;               // det[P0 P1 P2] after normalisation (> 0)
  int sign;                 // sign of det[P0 P1 P2] (the normalisation)
};

// Build the edge functions of triangle (v0, v1, v2), each pointing at (X, Y, Z, W); l1 are the
// corners' |X| + |Y| + |W|. Returns false when the triangle is degenerate as seen from the
// eye (det == 0). The depth plane waits for setup_depth: most small triangles cover no pixel.
template <typename scalar_t>
inline bool setup_triangle(const scalar_t* v0, const scalar_t* v1, const scalar_t* v2, const double l1[3],
                           TriSetup& s) {
  const scalar_t* v[3] = {v0, v1, v2};
  for (int i = 0; i < 3; ++i) {
    s.P[i][0] = (double)v[i][0];
    s.P[i][1] = (double)v[i][1];
    s.P[i][2] = (double)v[i][3];
    s.Z[i] = (double)v[i][2];
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
  s.det = det;
  return true;
}

// The depth plane of a triangle set up by setup_triangle; false when it is not finite (the
// triangle is then skipped).
inline bool setup_depth(TriSetup& s) {
  const double inv = 1.0 / s.det;
  const double* Z = s.Z;
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

// Pixel bounding box of a triangle, clamped to the image (x0 <= x1, y0 <= y1 when it holds a
// pixel centre).
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

// Pixel-centre bounds of a triangle with a corner at W <= 0, from its clipped extent.
template <typename scalar_t>
__attribute__((noinline)) bool clipped_bounds(const scalar_t* pb, const int32_t* f, int64_t H, int64_t W,
                                              int64_t& x0, int64_t& x1, int64_t& y0, int64_t& y1) {
  double P[3][4], xmin, xmax, ymin, ymax;
  for (int i = 0; i < 3; ++i)
    for (int c = 0; c < 4; ++c) P[i][c] = (double)pb[4 * (int64_t)f[i] + c];
  if (!clipped_extent(P, H, W, xmin, xmax, ymin, ymax)) return false;
  if (!(xmin <= xmax && ymin <= ymax)) return false;
  x0 = ceil_within(xmin - kMargin, W);
  x1 = floor_within(xmax + kMargin, W);
  y0 = ceil_within(ymin - kMargin, H);
  y1 = floor_within(ymax + kMargin, H);
  return true;
}

// Prefilter for a triangle whose box holds a single pixel centre q (most triangles of a dense
// mesh): true when q is certainly outside, so the triangle covers no pixel and is dropped before
// its exact setup. All corners have W > 0. Then the exact edge function e_i at q has the sign of
// the 2D edge function E_i = (x_k - x_j)(q_y - y_j) - (y_k - y_j)(q_x - x_j) of the projected
// corners in pixel units (e_i = W_j W_k E_i times a positive scale), and a pixel with one e_i
// certainly > 0 and another certainly < 0 is outside whatever the orientation (the exact path
// rejects it too, or skips a degenerate triangle altogether).
//
// Bound: a single-pixel box puts every corner within 1 px of q (the box holds the centres
// within the corners' extent), so |q - corner| < 1 and |corner - corner| < 2 on each axis, and
// coordinates are below S + 1 with S = max(H, W). The stored float corners are off by at most
// 2^-24 (S + 1) from the double projection, itself a few ulps of S + 1 from the exact one:
// delta <= 1e-7 (S + 2) per coordinate. Each product of E_i then moves by at most
// 2 * delta + 1 * 2 delta + 2 delta^2, and the double arithmetic on values below 2 adds ~1e-15:
// |computed E_i - exact E_i| < 9e-7 (S + 2). prefilter_bound is 16e-6 (S + 2), a margin of
// more than 10x; E_i within it leaves the pixel to the exact path.
inline double prefilter_bound(int64_t H, int64_t W) { return 16e-6 * ((double)std::max(H, W) + 2.0); }

inline bool misses_lone_pixel(const VertexInfo* v[3], int64_t qx, int64_t qy, double bound) {
  bool pos = false, neg = false;
  for (int i = 0; i < 3; ++i) {
    const VertexInfo &j = *v[(i + 1) % 3], &k = *v[(i + 2) % 3];
    const double E = ((double)k.px - (double)j.px) * ((double)qy - (double)j.py) -
                     ((double)k.py - (double)j.py) * ((double)qx - (double)j.px);
    pos |= E > bound;
    neg |= E < -bound;
  }
  return pos & neg;
}

template <typename scalar_t>
__attribute__((always_inline)) inline bool triangle_bbox(const scalar_t* pb, const VertexInfo* vi, const int32_t* f,
                                                         int64_t H, int64_t W, double bound, BBox& box) {
  const VertexInfo &v0 = vi[f[0]], &v1 = vi[f[1]], &v2 = vi[f[2]];
  box = BBox{0, 0, 0, 0};
  if (v0.out & v1.out & v2.out) return false;  // all three outside one plane (or behind the eye)
  // Pixel centres (integers) within the extent. Most tiny triangles contain none.
  int64_t x0, x1, y0, y1;
  const bool behind = (v0.out | v1.out | v2.out) & kBehind;
  if (!behind) {
    x0 = std::min(v0.x0, std::min(v1.x0, v2.x0));
    x1 = std::max(v0.x1, std::max(v1.x1, v2.x1));
    y0 = std::min(v0.y0, std::min(v1.y0, v2.y0));
    y1 = std::max(v0.y1, std::max(v1.y1, v2.y1));
  } else if (!clipped_bounds(pb, f, H, W, x0, x1, y0, y1)) {
    return false;
  }
  // Decided without branches (about half of all small triangles fail), and the box stays
  // within the image either way.
  bool ok = (x0 <= x1) & (y0 <= y1) & (x1 >= 0) & (y1 >= 0) & (x0 <= W - 1) & (y0 <= H - 1);
  // Evaluated for every triangle (cheaper than a branch that goes either way half of the time);
  // the result counts only for a lone pixel centre.
  const VertexInfo* v[3] = {&v0, &v1, &v2};
  ok &= !((x0 == x1) & (y0 == y1) & !behind & misses_lone_pixel(v, x0, y0, bound));
  box.x0 = (int16_t)std::min<int64_t>(W - 1, std::max<int64_t>(0, x0));
  box.y0 = (int16_t)std::min<int64_t>(H - 1, std::max<int64_t>(0, y0));
  box.x1 = (int16_t)std::max<int64_t>(0, std::min<int64_t>(W - 1, x1));
  box.y1 = (int16_t)std::max<int64_t>(0, std::min<int64_t>(H - 1, y1));
  return ok;
}

// Scratch of the forward pass, sized for one image and reused for every image of a call.
struct ForwardScratch {
  ForwardScratch(int64_t N, int64_t F, int64_t tiles, int64_t chunks)
      : verts(N), boxes(F), live(F), live_count(chunks), counts(chunks * tiles), cursor(chunks * tiles),
        tile_start(tiles + 1) {}
  Scratch<VertexInfo> verts;    // (N)
  Scratch<BBox> boxes;          // (F)
  Scratch<int32_t> live;        // (F) per chunk from its first triangle: the ids whose box holds a pixel centre
  Scratch<int64_t> live_count;  // (chunks) how many
  Scratch<int64_t> counts;      // (chunks, tiles) triangles per tile and chunk
  Scratch<int64_t> cursor;      // (chunks, tiles) next free bin slot
  Scratch<int64_t> tile_start;  // (tiles + 1) bin offsets
};

// Rasterize one image: pb (N, 4) -> out (H, W, 4). xs, ys: NDC of the pixel centres.
template <typename scalar_t>
void rasterize_image(const scalar_t* pb, const int32_t* tri, int64_t N, int64_t F, int64_t H, int64_t W,
                     const double* xs, const double* ys, ForwardScratch& sc, int64_t chunks, scalar_t* out, int nt) {
  const int64_t tiles_x = (W + kTile - 1) / kTile, tiles_y = (H + kTile - 1) / kTile;
  const int64_t num_tiles = tiles_x * tiles_y;
  VertexInfo* verts = sc.verts.get();
  BBox* boxes = sc.boxes.get();
  // About 10 ns a vertex: worth a second thread from a few thousand vertices on.
  parallel_for(nt, N, 8192, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) vertex_info(pb + 4 * i, H, W, verts[i]);
  });

  // 1. Bounding boxes and tile counts per chunk of triangles (chunks in triangle order); the
  // triangles that may cover a pixel centre are listed, so later passes skip the others without
  // a branch that fails half of the time.
  auto chunk_range = [&](int64_t c, int64_t& lo, int64_t& hi) {
    lo = F * c / chunks;
    hi = F * (c + 1) / chunks;
  };
  const double bound = prefilter_bound(H, W);
  parallel_for(nt, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      int64_t lo, hi;
      chunk_range(c, lo, hi);
      int64_t* cnt = sc.counts.get() + c * num_tiles;
      int32_t* live = sc.live.get() + lo;
      std::fill(cnt, cnt + num_tiles, 0);
      int64_t n = 0;
      int64_t run_tile = 0, run = 0;  // consecutive triangles mostly share a tile: count them in a register
      for (int64_t t = lo; t < hi; ++t) {
        BBox box;
        const bool ok = triangle_bbox(pb, verts, tri + t * 3, H, W, bound, box);
        boxes[t] = box;
        live[n] = (int32_t)t;
        n += ok;
        const int64_t bx0 = box.x0 / kTile, bx1 = box.x1 / kTile, by0 = box.y0 / kTile, by1 = box.y1 / kTile;
        if (bx0 == bx1 && by0 == by1) {  // one tile: the usual case
          const int64_t tile = by0 * tiles_x + bx0;
          if (tile != run_tile) {
            cnt[run_tile] += run;
            run_tile = tile;
            run = 0;
          }
          run += ok;
        } else if (ok) {
          for (int64_t ty = by0; ty <= by1; ++ty)
            for (int64_t tx = bx0; tx <= bx1; ++tx) ++cnt[ty * tiles_x + tx];
        }
      }
      cnt[run_tile] += run;
      sc.live_count[c] = n;
    }
  });
  // 2. Offsets: tile-major, then chunk order, so each bin lists triangles in ascending id.
  int64_t* tile_start = sc.tile_start.get();
  int64_t total = 0;
  for (int64_t tile = 0; tile < num_tiles; ++tile) {
    tile_start[tile] = total;
    for (int64_t c = 0; c < chunks; ++c) {
      sc.cursor[c * num_tiles + tile] = total;
      total += sc.counts[c * num_tiles + tile];
    }
  }
  tile_start[num_tiles] = total;
  Scratch<int32_t> bins(total);
  parallel_for(nt, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      int64_t lo, hi;
      chunk_range(c, lo, hi);
      int64_t* cur = sc.cursor.get() + c * num_tiles;
      const int32_t* live = sc.live.get() + lo;
      int64_t run_tile = 0, slot = cur[0];  // the cursor of the current tile, kept in a register
      for (int64_t i = 0; i < sc.live_count[c]; ++i) {
        const int32_t t = live[i];
        const BBox& box = boxes[t];
        const int64_t bx0 = box.x0 / kTile, bx1 = box.x1 / kTile, by0 = box.y0 / kTile, by1 = box.y1 / kTile;
        if (bx0 == bx1 && by0 == by1) {
          const int64_t tile = by0 * tiles_x + bx0;
          if (tile != run_tile) {
            cur[run_tile] = slot;
            run_tile = tile;
            slot = cur[tile];
          }
          bins[slot++] = t;
        } else {
          cur[run_tile] = slot;
          for (int64_t ty = by0; ty <= by1; ++ty)
            for (int64_t tx = bx0; tx <= bx1; ++tx) bins[cur[ty * tiles_x + tx]++] = t;
          slot = cur[run_tile];
        }
      }
    }
  });

  // 3. Rasterize tiles; each thread owns whole tiles.
  parallel_for(nt, num_tiles, 1, [&](int64_t tile_lo, int64_t tile_hi) {
    double zbuf[kTile * kTile], ubuf[kTile * kTile], vbuf[kTile * kTile];
    int32_t idbuf[kTile * kTile];
    for (int64_t tile = tile_lo; tile < tile_hi; ++tile) {
      const int64_t tx0 = (tile % tiles_x) * kTile, ty0 = (tile / tiles_x) * kTile;
      const int64_t tx1 = std::min(tx0 + kTile, W) - 1, ty1 = std::min(ty0 + kTile, H) - 1;
      for (int i = 0; i < kTile * kTile; ++i) {
        zbuf[i] = std::numeric_limits<double>::infinity();
        idbuf[i] = -1;
      }
      for (int64_t e = tile_start[tile]; e < tile_start[tile + 1]; ++e) {
        const int64_t t = bins[e];
        const int32_t* f = tri + t * 3;
        const double l1[3] = {verts[f[0]].l1, verts[f[1]].l1, verts[f[2]].l1};
        TriSetup s;
        if (!setup_triangle(pb + 4 * (int64_t)f[0], pb + 4 * (int64_t)f[1], pb + 4 * (int64_t)f[2], l1, s)) continue;
        const BBox& box = boxes[t];
        const int64_t x0 = std::max<int64_t>(box.x0, tx0), x1 = std::min<int64_t>(box.x1, tx1);
        const int64_t y0 = std::max<int64_t>(box.y0, ty0), y1 = std::min<int64_t>(box.y1, ty1);
        int depth = 0;  // depth plane: 0 not set up yet, 1 ready, -1 not finite (skip the triangle)
        for (int64_t py = y0; py <= y1 && depth >= 0; ++py) {
          const double y = ys[py];
          const double r0 = s.b[0] * y + s.c[0], r1 = s.b[1] * y + s.c[1], r2 = s.b[2] * y + s.c[2];
          const int64_t row = (py - ty0) * kTile - tx0;
          for (int64_t px = x0; px <= x1; ++px) {
            const double x = xs[px];
            const double e0 = s.a[0] * x + r0, e1 = s.a[1] * x + r1, e2 = s.a[2] * x + r2;
            // The clear cases in one branch; exact tests only near an edge.
            if ((e0 < -s.bound[0]) | (e1 < -s.bound[1]) | (e2 < -s.bound[2])) continue;
            if (!((e0 > s.bound[0]) & (e1 > s.bound[1]) & (e2 > s.bound[2])) &&
                !(inside_edge(s, 0, e0, px, py, W, H) && inside_edge(s, 1, e1, px, py, W, H) &&
                  inside_edge(s, 2, e2, px, py, W, H)))
              continue;
            if (depth == 0) depth = setup_depth(s) ? 1 : -1;
            if (depth < 0) break;
            const double z = s.za * x + (s.zb * y + s.zc);
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
        scalar_t* o = out + (py * W + tx0) * 4;
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

// Whole images per thread while at least `nt` images remain, then the rest one after another,
// each by all threads. Either way the scratch (vertices, boxes, bins) is sized for one image and
// stays cache-resident whatever the batch size, and an image's result does not depend on how
// many threads rasterize it.
template <typename scalar_t>
void rasterize_kernel(const scalar_t* pos, const int32_t* tri, int64_t B, int64_t N, int64_t F, int64_t H,
                      int64_t W, scalar_t* out, int nt) {
  const int64_t tiles = ((W + kTile - 1) / kTile) * ((H + kTile - 1) / kTile);
  auto chunks_for = [F](int threads) { return std::max<int64_t>(1, std::min<int64_t>(F / 16384, 4 * threads)); };
  Scratch<double> xs(W), ys(H);
  for (int64_t i = 0; i < W; ++i) xs[i] = pixel_ndc(i, W);
  for (int64_t j = 0; j < H; ++j) ys[j] = pixel_ndc(j, H);
  auto image = [&](int64_t b, ForwardScratch& sc, int64_t chunks, int threads) {
    rasterize_image(pos + b * N * 4, tri, N, F, H, W, xs.get(), ys.get(), sc, chunks, out + b * H * W * 4, threads);
  };
  const int64_t whole = nt > 1 ? B / nt * nt : 0;
  parallel_for(nt, whole, 1, [&](int64_t b0, int64_t b1) {
    ForwardScratch sc(N, F, tiles, chunks_for(1));
    for (int64_t b = b0; b < b1; ++b) image(b, sc, chunks_for(1), 1);
  });
  if (whole == B) return;
  ForwardScratch sc(N, F, tiles, chunks_for(nt));
  for (int64_t b = whole; b < B; ++b) image(b, sc, chunks_for(nt), nt);
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
  const double iS = 1.0 / S;  // reciprocals: a division costs several multiplications
  const double bc[3] = {e[0] * iS, e[1] * iS, e[2] * iS};
  const double D = bc[0] * P[0][2] + bc[1] * P[1][2] + bc[2] * P[2][2];  // W at the pixel
  if (!(D != 0.0)) return;
  double G[3] = {gu, gv, 0.0};  // d loss / d b_i
  double zw = 0.0, iD = 0.0;
  if (gz != 0.0) {  // z/w = sum(b_i Z_i) / D depends on every b_i
    iD = 1.0 / D;
    zw = (bc[0] * Z[0] + bc[1] * Z[1] + bc[2] * Z[2]) * iD;
    for (int i = 0; i < 3; ++i) G[i] += gz * (Z[i] - zw * P[i][2]) * iD;
  }
  const double Gbar = G[0] * bc[0] + G[1] * bc[1] + G[2] * bc[2];
  for (int i = 0; i < 3; ++i) {
    const int j = (i + 1) % 3, k = (i + 2) % 3;
    const double de = (G[i] - Gbar) * iS;
    double dj[3], dk[3];
    cross(P[k], p, dj);  // d e_i / d P_j
    cross(p, P[j], dk);  // d e_i / d P_k
    out[j][0] += de * dj[0];
    out[j][1] += de * dj[1];
    out[j][3] += de * dj[2];
    out[k][0] += de * dk[0];
    out[k][1] += de * dk[1];
    out[k][3] += de * dk[2];
  }
  if (gz != 0.0)
    for (int i = 0; i < 3; ++i) {
      const double gzb = gz * bc[i] * iD;
      out[i][2] += gzb;       // z/w through Z_i
      out[i][3] -= gzb * zw;  // z/w through W_i in the denominator
    }
}

// Pixels per slab of the single-image backward: bounds its per-pixel scratch (100 bytes a pixel).
constexpr int64_t kSlab = 65536;

// Every vertex sums its contributions in pixel order, whichever path runs, so the result does
// not depend on the thread count. All scratch is per image (or per slab) and leased from the
// cache, so neither its size nor its first-touch cost grows with the batch or the resolution.
template <typename scalar_t>
void rasterize_backward_kernel(const scalar_t* pos, const int32_t* tri, const scalar_t* rast, const scalar_t* grad,
                               int64_t B, int64_t N, int64_t F, int64_t H, int64_t W, scalar_t* grad_pos, int nt) {
  const int64_t HW = H * W;
  Scratch<double> xs(W), ys(H);
  for (int64_t i = 0; i < W; ++i) xs[i] = pixel_ndc(i, W);
  for (int64_t j = 0; j < H; ++j) ys[j] = pixel_ndc(j, H);

  // Gradient of pixel q (flat over the batch); returns its triangle or -1 when it contributes nothing.
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
  auto store = [&](const double* acc, int64_t b) {
    scalar_t* gp = grad_pos + b * N * 4;
    for (int64_t i = 0; i < N * 4; ++i) gp[i] = (scalar_t)acc[i];
  };

  // While at least `nt` images remain: whole images per thread, accumulated straight into a
  // per-image buffer.
  const int64_t whole = nt > 1 ? B / nt * nt : B;
  parallel_for(nt, whole, 1, [&](int64_t b0, int64_t b1) {
    Scratch<double> acc(N * 4);
    for (int64_t b = b0; b < b1; ++b) {
      std::fill(acc.get(), acc.get() + N * 4, 0.0);
      for (int64_t q = b * HW; q < (b + 1) * HW; ++q) {
        double out[3][4];
        const int64_t t = pixel(q, out);
        if (t < 0) continue;
        for (int i = 0; i < 3; ++i) {
          double* a = acc.get() + (int64_t)tri[t * 3 + i] * 4;
          for (int c = 0; c < 4; ++c) a[c] += out[i][c];
        }
      }
      store(acc.get(), b);
    }
  });
  if (whole == B) return;

  // The rest one image at a time, in slabs of pixels: per-pixel gradients in parallel, then an
  // owner-computes scatter (each worker adds the contributions to its own vertex slice).
  const int64_t slab = std::min(HW, kSlab);
  Scratch<double> acc(N * 4), contrib(slab * 12);
  Scratch<int32_t> pix_tri(slab);
  for (int64_t b = whole; b < B; ++b) {
    std::fill(acc.get(), acc.get() + N * 4, 0.0);
    for (int64_t s0 = b * HW; s0 < (b + 1) * HW; s0 += slab) {
      const int64_t n = std::min(slab, (b + 1) * HW - s0);
      parallel_for(nt, n, 8192, [&](int64_t lo, int64_t hi) {
        for (int64_t k = lo; k < hi; ++k) {
          double out[3][4];
          const int64_t t = pixel(s0 + k, out);
          pix_tri[k] = (int32_t)t;
          if (t < 0) continue;
          double* dst = contrib.get() + k * 12;
          for (int i = 0; i < 3; ++i)
            for (int c = 0; c < 4; ++c) dst[i * 4 + c] = out[i][c];
        }
      });
      const int workers = morph3d_raster::workers_for(nt, n, 16384);
      run_workers(workers, [&](int w) {
        int64_t lo, hi;
        morph3d_raster::owner_slice(N, w, workers, lo, hi);
        for (int64_t k = 0; k < n; ++k) {
          const int32_t t = pix_tri[k];
          if (t < 0) continue;
          const double* src = contrib.get() + k * 12;
          for (int i = 0; i < 3; ++i) {
            const int64_t vi = tri[(int64_t)t * 3 + i];
            if (vi < lo || vi >= hi) continue;
            double* a = acc.get() + vi * 4;
            for (int c = 0; c < 4; ++c) a[c] += src[i * 4 + c];
          }
        }
      });
    }
    store(acc.get(), b);
  }
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
