// CPU analytic antialiasing of silhouette edges (the method of nvdiffrast's antialias op,
// Laine et al. 2020, "Modular Primitives for High-Performance Differentiable Rendering").
// The contract (array shapes) is in kernels/antialias.h; glue/antialias.cpp wraps it for torch.
//
// antialias_topology(tri (F,3) int32) -> adj (F,3) int32
//   For edge k of triangle t (corners k+1, k+2): adj = 2 * u + flip, where u is the other
//   triangle using that edge and flip = 1 when u runs along the edge in the same direction
//   (inconsistent winding); adj = -1 when the edge has one triangle or more than two (it is
//   then always a silhouette candidate). Triangles with a repeated vertex are ignored.
// antialias_fwd(color (B,H,W,C), rast (B,H,W,4), pos (B,N,4), tri, adj)
//   -> (out (B,H,W,C), facing (B,F) int8, alpha (B,H,W,2)); facing and alpha (the blend weight
//   of the pair to the right / below each pixel) are kept for the backward pass.
// antialias_bwd(color, rast, pos, tri, adj, facing, alpha, grad_out) -> (grad_color, grad_pos)
//
// For every horizontally or vertically adjacent pixel pair whose triangle ids differ, start
// from the triangle of the pixel in front (smaller z/w; a covered pixel beats background) and
// follow the segment between the two pixel centres towards the other pixel: leave the
// triangle through the edge the segment crosses; if that edge is not a silhouette, continue
// in the neighbouring triangle (nvdiffrast stops here, so it misses silhouettes of triangles
// too thin to cover a pixel centre, common on finely tessellated meshes). A silhouette edge
// has no neighbour, or a neighbour facing the other way as seen from the eye (or one that is
// edge-on or crosses W = 0). If the first silhouette edge met is steeper than 45 degrees
// relative to the pair axis, its crossing point d (0 = front pixel centre, 1 = other centre)
// sets a box-filter blend: with alpha = +-(0.5 - d), one pixel moves towards the other's colour,
//   out[target] += alpha * (color[p1] - color[p0]),  target = alpha > 0 ? p0 : p1.
// d moves with the edge's vertices, which gives gradients w.r.t. clip positions; they are
// zero where d is clamped to [0, 1]. Triangles with a vertex at W <= 0 are not antialiased.
//
// Speed: only pairs touching a pixel within 2 px of some silhouette edge are analysed (every
// edge the walk can stop at lies within 1.07 px of the front pixel centre), so interior pairs
// of finely tessellated meshes cost nothing. All passes are race-free and deterministic.
#include "kernels/antialias.h"

#include "kernels/raster_common.h"
#include "kernels/raster_scratch.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

namespace morph3d_raster {
namespace {

// ---------------------------------------------------------------------------------------
// Per-call preparation: facing of every triangle and the silhouette neighbourhood mask.

inline double det3(const double* a, const double* b, const double* c) {
  return a[0] * (b[1] * c[2] - b[2] * c[1]) - a[1] * (b[0] * c[2] - b[2] * c[0]) + a[2] * (b[0] * c[1] - b[1] * c[0]);
}

struct Prepared {
  Prepared(int64_t BF, int64_t BHW) : facing(BF), near(BHW) {}
  Scratch<int8_t> facing;  // (B, F): sign of det[P0 P1 P2] (X, Y, W); 0 if edge-on or a W <= 0
  Scratch<uint8_t> near;   // (B, H, W): pixel within 2 px of a silhouette edge
};

// Is edge k of triangle t (image b) a silhouette? facing points at image b's row.
inline bool is_silhouette(const int8_t* facing, const int32_t* adj, int64_t t, int k) {
  const int32_t code = adj[t * 3 + k];
  if (code < 0) return true;
  const int8_t fu = facing[code >> 1];
  if (fu == 0) return true;
  const bool same = fu == facing[t];
  return (code & 1) ? same : !same;  // a flipped neighbour faces the same way when its det differs
}

template <typename scalar_t>
void prepare(const Image& im, const scalar_t* pos, const int32_t* tri, const int32_t* adj, int threads,
             Prepared& prep) {
  const int64_t BF = im.B * im.F, HW = im.H * im.W;
  parallel_for(threads, BF, 16384, [&](int64_t lo, int64_t hi) {
    for (int64_t it = lo; it < hi; ++it) {
      const int64_t b = it / im.F, t = it % im.F;
      double P[3][3];
      bool ok = true;
      for (int k = 0; k < 3; ++k) {
        const scalar_t* v = pos + (b * im.N + tri[t * 3 + k]) * 4;
        P[k][0] = (double)v[0];
        P[k][1] = (double)v[1];
        P[k][2] = (double)v[3];
        ok = ok && P[k][2] > 0.0;
      }
      const double d = ok ? det3(P[0], P[1], P[2]) : 0.0;
      prep.facing[it] = d > 0.0 ? 1 : (d < 0.0 ? -1 : 0);
    }
  });
  // Mark 2 px around every usable silhouette edge; one mask per thread, OR-ed afterwards.
  const int workers = workers_for(threads, BF, 16384);
  Scratch<uint8_t> masks(workers * im.B * HW);
  std::fill(masks.get(), masks.get() + workers * im.B * HW, 0);
  const double hw = 0.5 * (double)im.W, hh = 0.5 * (double)im.H;
  const int64_t grain = 2048, chunks = (BF + grain - 1) / grain;
  std::atomic<int64_t> next{0};
  run_workers(workers, [&](int worker) {
    uint8_t* mask = masks.get() + (size_t)worker * im.B * HW;
    for (int64_t chunk = next++; chunk < chunks; chunk = next++) {
      for (int64_t it = chunk * grain; it < std::min(BF, (chunk + 1) * grain); ++it) {
        const int64_t b = it / im.F, t = it % im.F;
        const int8_t* fb = prep.facing.get() + b * im.F;
        if (fb[t] == 0) continue;
        for (int k = 0; k < 3; ++k) {
          if (!is_silhouette(fb, adj, t, k)) continue;
          double xs[2], ys[2];
          for (int e = 0; e < 2; ++e) {
            const scalar_t* v = pos + (b * im.N + tri[t * 3 + (k + 1 + e) % 3]) * 4;
            xs[e] = ((double)v[0] / (double)v[3] + 1.0) * hw - 0.5;
            ys[e] = ((double)v[1] / (double)v[3] + 1.0) * hh - 0.5;
          }
          const double x0 = std::max(0.0, std::floor(std::min(xs[0], xs[1]) - 2.0));
          const double x1 = std::min((double)(im.W - 1), std::ceil(std::max(xs[0], xs[1]) + 2.0));
          const double y0 = std::max(0.0, std::floor(std::min(ys[0], ys[1]) - 2.0));
          const double y1 = std::min((double)(im.H - 1), std::ceil(std::max(ys[0], ys[1]) + 2.0));
          if (!(x0 <= x1 && y0 <= y1)) continue;
          for (int64_t y = (int64_t)y0; y <= (int64_t)y1; ++y)
            for (int64_t x = (int64_t)x0; x <= (int64_t)x1; ++x) mask[(b * im.H + y) * im.W + x] = 1;
        }
      }
    }
  });
  parallel_for(threads, im.B * HW, kCheapGrain, [&](int64_t lo, int64_t hi) {
    std::copy(masks.get() + lo, masks.get() + hi, prep.near.get() + lo);
    for (int c = 1; c < workers; ++c) {
      const uint8_t* mask = masks.get() + (size_t)c * im.B * HW;
      for (int64_t q = lo; q < hi; ++q) prep.near[q] |= mask[q];
    }
  });
}

// ---------------------------------------------------------------------------------------
// Pair analysis.

struct Hit {
  double alpha = 0.0;        // signed blend weight; 0 = no effect
  bool active = false;       // d strictly inside (0, 1): alpha depends on the vertices
  int64_t q0 = -1, q1 = -1;  // the pair's pixels (flat indices)
  int64_t va = -1, vc = -1;  // edge vertex indices
  double ga[3] = {0, 0, 0};  // d alpha / d (X, Y, W) of va
  double gc[3] = {0, 0, 0};  // same for vc
};

// Corners of triangle t relative to the front pixel centre, in the pair's frame: s along the
// pair axis, tt across it (pixels). False if a corner has W <= 0.
struct Corners {
  double P[3][3];  // (X, Y, W)
  double s[3], tt[3];
  int64_t v[3];    // vertex indices
};

template <typename scalar_t>
inline bool load_corners(const scalar_t* pb, const int32_t* tri, int64_t t, double fx, double fy, double hw,
                         double hh, int dir, Corners& c) {
  for (int k = 0; k < 3; ++k) {
    c.v[k] = tri[t * 3 + k];
    const scalar_t* v = pb + 4 * c.v[k];
    c.P[k][0] = (double)v[0];
    c.P[k][1] = (double)v[1];
    c.P[k][2] = (double)v[3];
    if (!(c.P[k][2] > 0.0)) return false;
    const double sx = (c.P[k][0] / c.P[k][2] + 1.0) * hw - 0.5 - fx;
    const double sy = (c.P[k][1] / c.P[k][2] + 1.0) * hh - 0.5 - fy;
    c.s[k] = dir == 0 ? sx : sy;
    c.tt[k] = dir == 0 ? sy : sx;
  }
  return true;
}

// Analyse the pair (x, y) -> (x + 1, y) (dir 0) or (x, y + 1) (dir 1) of image b.
// near (may be null) marks the pixels worth analysing; facing is (B, F).
template <typename scalar_t>
bool analyse_pair(const Image& im, const int8_t* facing_all, const uint8_t* near, const scalar_t* rast,
                  const scalar_t* pos, const int32_t* tri, const int32_t* adj, int64_t b, int64_t x, int64_t y, int dir,
                  bool want_grad, Hit& hit) {
  const int64_t q0 = (b * im.H + y) * im.W + x, q1 = q0 + (dir == 0 ? 1 : im.W);
  if (near && !near[q0] && !near[q1]) return false;
  const scalar_t* r0 = rast + q0 * 4;
  const scalar_t* r1 = rast + q1 * 4;
  const int64_t t0 = rast_triangle(r0, im.F), t1 = rast_triangle(r1, im.F);
  if (t0 == t1) return false;
  int front;
  if (t0 >= 0 && t1 >= 0)
    front = (r0[2] < r1[2]) ? 0 : 1;
  else
    front = (t0 >= 0) ? 0 : 1;
  const double ds = front ? -1.0 : 1.0;
  const double fx = (double)(x + (front && dir == 0 ? 1 : 0)), fy = (double)(y + (front && dir == 1 ? 1 : 0));
  const double hw = 0.5 * (double)im.W, hh = 0.5 * (double)im.H;
  const double eps = 1.0 / 16.0;  // tolerated inaccuracy of the crossing point, in pixels
  const scalar_t* pb = pos + b * im.N * 4;
  const int8_t* facing = facing_all + b * im.F;

  // Walk from the front triangle towards the other pixel until a silhouette edge.
  int64_t t = front ? t1 : t0;
  if (facing[t] == 0) return false;
  int entry = -1;  // edge of t we came in through
  Corners c;
  if (!load_corners(pb, tri, t, fx, fy, hw, hh, dir, c)) return false;
  int kb = -1;
  double best = -INFINITY;
  bool found = false;
  for (int step = 0; step < 64 && !found; ++step) {
    kb = -1;
    best = -INFINITY;
    for (int k = 0; k < 3; ++k) {  // the edge crossing the pair axis furthest towards the other pixel
      if (k == entry) continue;
      const int a = (k + 1) % 3, e = (k + 2) % 3;
      if ((c.tt[a] < 0.0) == (c.tt[e] < 0.0)) continue;
      const double d = ds * (c.s[a] * c.tt[e] - c.s[e] * c.tt[a]) / (c.tt[e] - c.tt[a]);
      if (d > best) {
        best = d;
        kb = k;
      }
    }
    if (kb < 0 || !(best < 1.0 + eps)) return false;
    if (is_silhouette(facing, adj, t, kb)) {
      found = true;
      break;
    }
    // Same-facing neighbour: the surface goes on, follow it.
    const int64_t u = adj[t * 3 + kb] >> 1;
    entry = -1;
    for (int m = 0; m < 3; ++m) {
      const int64_t vm = tri[u * 3 + m];
      if (vm != c.v[(kb + 1) % 3] && vm != c.v[(kb + 2) % 3]) entry = m;
    }
    t = u;
    if (entry < 0 || !load_corners(pb, tri, t, fx, fy, hw, hh, dir, c)) return false;
  }
  if (!found) return false;
  const int a = (kb + 1) % 3, e = (kb + 2) % 3;
  if (std::fabs(c.tt[e] - c.tt[a]) < std::fabs(c.s[e] - c.s[a])) return false;  // the other direction handles it
  if (!(best > -eps)) return false;
  const double dc = std::min(1.0, std::max(0.0, best));
  const double alpha = ds * (0.5 - dc);
  if (alpha == 0.0) return false;
  hit.alpha = alpha;
  hit.q0 = q0;
  hit.q1 = q1;
  hit.active = best > 0.0 && best < 1.0;
  hit.va = c.v[a];
  hit.vc = c.v[e];
  if (want_grad && hit.active) {
    // alpha = 0.5 ds - cross, cross = (s_a tt_e - s_e tt_a) / (tt_e - tt_a).
    const double* s = c.s;
    const double* tt = c.tt;
    const double den = tt[e] - tt[a];
    const double d_sa = -tt[e] / den, d_se = tt[a] / den;
    const double d_ta = -tt[e] * (s[a] - s[e]) / (den * den), d_te = -tt[a] * (s[e] - s[a]) / (den * den);
    auto to_clip = [&](const double* Pk, double d_s, double d_t, double* g) {
      const double gx = dir == 0 ? d_s : d_t, gy = dir == 0 ? d_t : d_s;  // d alpha / d pixel x, y
      const double iw = 1.0 / Pk[2];
      g[0] = gx * hw * iw;
      g[1] = gy * hh * iw;
      g[2] = -(gx * hw * Pk[0] + gy * hh * Pk[1]) * iw * iw;
    };
    to_clip(c.P[a], d_sa, d_ta, hit.ga);
    to_clip(c.P[e], d_se, d_te, hit.gc);
  }
  return true;
}

// Blend weights of all pairs: alpha[q, 0] for (x,y)-(x+1,y), alpha[q, 1] for (x,y)-(x,y+1).
template <typename scalar_t>
void analyse_all(const Image& im, const Prepared& prep, const scalar_t* rast, const scalar_t* pos,
                 const int32_t* tri, const int32_t* adj, scalar_t* alpha, int threads) {
  parallel_for(threads, im.B * im.H, 16, [&](int64_t lo, int64_t hi) {
    for (int64_t row = lo; row < hi; ++row) {
      const int64_t b = row / im.H, y = row % im.H;
      for (int dir = 0; dir < 2; ++dir) {
        const int64_t xend = dir == 0 ? im.W - 1 : im.W;
        if (dir == 1 && y == im.H - 1) continue;
        for (int64_t x = 0; x < xend; ++x) {
          Hit hit;
          if (analyse_pair(im, prep.facing.get(), prep.near.get(), rast, pos, tri, adj, b, x, y, dir, false, hit))
            alpha[((row * im.W) + x) * 2 + dir] = (scalar_t)hit.alpha;
        }
      }
    }
  });
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Edge topology: half-edges bucketed by their smaller vertex (counting sort), then matched
// within each bucket. Linear time, deterministic.

bool antialias_topology(const int32_t* f, int64_t F, int32_t* o) {
  int64_t nv = 0;
  for (int64_t i = 0; i < 3 * F; ++i) {
    if (f[i] < 0) return false;
    nv = std::max<int64_t>(nv, (int64_t)f[i] + 1);
  }
  std::fill(o, o + 3 * F, -1);
  auto degenerate = [&](int64_t t) {
    return f[t * 3] == f[t * 3 + 1] || f[t * 3 + 1] == f[t * 3 + 2] || f[t * 3 + 2] == f[t * 3];
  };
  auto lo_vertex = [&](int64_t h) {  // half-edge h = t * 3 + k
    const int64_t t = h / 3, k = h % 3;
    return std::min(f[t * 3 + (k + 1) % 3], f[t * 3 + (k + 2) % 3]);
  };
  auto hi_vertex = [&](int64_t h) {
    const int64_t t = h / 3, k = h % 3;
    return std::max(f[t * 3 + (k + 1) % 3], f[t * 3 + (k + 2) % 3]);
  };
  std::vector<int64_t> start(nv + 1, 0);
  for (int64_t h = 0; h < 3 * F; ++h)
    if (!degenerate(h / 3)) ++start[lo_vertex(h) + 1];
  for (int64_t v = 0; v < nv; ++v) start[v + 1] += start[v];
  std::vector<int64_t> bucket(start[nv]);
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t h = 0; h < 3 * F; ++h)
      if (!degenerate(h / 3)) bucket[fill[lo_vertex(h)]++] = h;
  }
  for (int64_t v = 0; v < nv; ++v) {
    // Sort the bucket by the other vertex; an edge used by exactly two triangles is a run of 2.
    int64_t* first = bucket.data() + start[v];
    int64_t* last = bucket.data() + start[v + 1];
    std::sort(first, last, [&](int64_t x, int64_t y) {
      const int32_t hx = hi_vertex(x), hy = hi_vertex(y);
      return hx != hy ? hx < hy : x < y;
    });
    for (int64_t* run = first; run < last;) {
      int64_t* end = run + 1;
      while (end < last && hi_vertex(*end) == hi_vertex(*run)) ++end;
      if (end - run == 2) {
        for (int side = 0; side < 2; ++side) {
          const int64_t h = run[side], other = run[1 - side];
          const int64_t t = h / 3, k = h % 3, u = other / 3, m = other % 3;
          const bool same_direction = f[t * 3 + (k + 1) % 3] == f[u * 3 + (m + 1) % 3];
          o[h] = (int32_t)(2 * u + (same_direction ? 1 : 0));
        }
      }
      run = end;
    }
  }
  return true;
}


template <typename scalar_t>
void antialias_forward(const Image& im, const scalar_t* c, const scalar_t* rast, const scalar_t* p,
                       const int32_t* tri, const int32_t* adj, scalar_t* o, int8_t* facing, scalar_t* alpha,
                       int threads) {
  Prepared prep(im.B * im.F, im.B * im.H * im.W);
  prepare(im, p, tri, adj, threads, prep);
  std::copy(prep.facing.get(), prep.facing.get() + im.B * im.F, facing);
  const scalar_t* al = alpha;
  analyse_all(im, prep, rast, p, tri, adj, alpha, threads);
  const int64_t C = im.C, W = im.W, H = im.H;
  parallel_for(threads, im.B * H * W, kCheapGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t q = lo; q < hi; ++q) {
      const int64_t x = q % W, y = (q / W) % H;
      const scalar_t* cq = c + q * C;
      scalar_t* oq = o + q * C;
      for (int64_t k = 0; k < C; ++k) oq[k] = cq[k];
      // The four pairs this pixel belongs to; each adds alpha * (c[p1] - c[p0]) if it targets q.
      auto add = [&](double a, int64_t p0, int64_t p1) {
        for (int64_t k = 0; k < C; ++k) oq[k] += (scalar_t)(a * ((double)c[p1 * C + k] - (double)c[p0 * C + k]));
      };
      if (x + 1 < W && al[q * 2] > 0) add(al[q * 2], q, q + 1);
      if (x > 0 && al[(q - 1) * 2] < 0) add(al[(q - 1) * 2], q - 1, q);
      if (y + 1 < H && al[q * 2 + 1] > 0) add(al[q * 2 + 1], q, q + W);
      if (y > 0 && al[(q - W) * 2 + 1] < 0) add(al[(q - W) * 2 + 1], q - W, q);
    }
  });
}

template <typename scalar_t>
void antialias_backward(const Image& im, const scalar_t* c, const scalar_t* rast, const scalar_t* p,
                        const int32_t* tri, const int32_t* adj, const int8_t* facing, const scalar_t* al,
                        const scalar_t* g, scalar_t* gc, scalar_t* gp, int threads) {
  const int64_t C = im.C, W = im.W, H = im.H;
  // Colour gradients, gathered per pixel: out[T] = c[T] + alpha (c[p1] - c[p0]).
  if (gc != nullptr) {
    parallel_for(threads, im.B * H * W, kCheapGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t q = lo; q < hi; ++q) {
        const int64_t x = q % W, y = (q / W) % H;
        const double ar = x + 1 < W ? (double)al[q * 2] : 0.0, al_ = x > 0 ? (double)al[(q - 1) * 2] : 0.0;
        const double ad = y + 1 < H ? (double)al[q * 2 + 1] : 0.0, au = y > 0 ? (double)al[(q - W) * 2 + 1] : 0.0;
        for (int64_t k = 0; k < C; ++k) {
          double acc = (double)g[q * C + k];
          if (ar != 0.0) acc -= ar * (double)g[(ar > 0.0 ? q : q + 1) * C + k];
          if (al_ != 0.0) acc += al_ * (double)g[(al_ > 0.0 ? q - 1 : q) * C + k];
          if (ad != 0.0) acc -= ad * (double)g[(ad > 0.0 ? q : q + W) * C + k];
          if (au != 0.0) acc += au * (double)g[(au > 0.0 ? q - W : q) * C + k];
          gc[q * C + k] = (scalar_t)acc;
        }
      }
    });
  }
  if (gp == nullptr) return;
  // Position gradients: redo the analysis of the pairs that blended, with derivatives.
  std::vector<std::vector<Hit>> rows(im.B * H);
  parallel_for(threads, im.B * H, 32, [&](int64_t lo, int64_t hi) {
    for (int64_t row = lo; row < hi; ++row) {
      const int64_t b = row / H, y = row % H;
      for (int dir = 0; dir < 2; ++dir)
        for (int64_t x = 0; x < W; ++x) {
          if (al[(row * W + x) * 2 + dir] == 0) continue;
          Hit hit;
          if (analyse_pair(im, facing, (const uint8_t*)nullptr, rast, p, tri, adj, b, x, y, dir, true, hit) &&
              hit.active)
            rows[row].push_back(hit);
        }
    }
  });
  // Scatter in row order (deterministic), one image at a time.
  Scratch<double> acc(im.N * 4);
  for (int64_t b = 0; b < im.B; ++b) {
    std::fill(acc.get(), acc.get() + im.N * 4, 0.0);
    for (int64_t row = b * H; row < (b + 1) * H; ++row) {
      for (const Hit& hit : rows[row]) {
        const int64_t T = hit.alpha > 0.0 ? hit.q0 : hit.q1;
        double dl = 0.0;  // d loss / d alpha
        for (int64_t k = 0; k < C; ++k)
          dl += (double)g[T * C + k] * ((double)c[hit.q1 * C + k] - (double)c[hit.q0 * C + k]);
        double* ga = acc.get() + hit.va * 4;
        double* gv = acc.get() + hit.vc * 4;
        ga[0] += dl * hit.ga[0];
        ga[1] += dl * hit.ga[1];
        ga[3] += dl * hit.ga[2];
        gv[0] += dl * hit.gc[0];
        gv[1] += dl * hit.gc[1];
        gv[3] += dl * hit.gc[2];
      }
    }
    scalar_t* gpb = gp + b * im.N * 4;
    for (int64_t i = 0; i < im.N * 4; ++i) gpb[i] = (scalar_t)acc[i];
  }
}

template void antialias_forward<float>(const Image&, const float*, const float*, const float*, const int32_t*,
                                       const int32_t*, float*, int8_t*, float*, int);
template void antialias_forward<double>(const Image&, const double*, const double*, const double*, const int32_t*,
                                        const int32_t*, double*, int8_t*, double*, int);
template void antialias_backward<float>(const Image&, const float*, const float*, const float*, const int32_t*,
                                        const int32_t*, const int8_t*, const float*, const float*, float*, float*,
                                        int);
template void antialias_backward<double>(const Image&, const double*, const double*, const double*, const int32_t*,
                                         const int32_t*, const int8_t*, const double*, const double*, double*,
                                         double*, int);

}  // namespace morph3d_raster
