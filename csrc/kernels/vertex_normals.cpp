// CPU area-weighted vertex normals and their backward pass; the contract is in
// kernels/vertex_normals.h.
//
// Forward: every vertex v walks its corners (a, b) and adds (p_a - p_v) x (p_b - p_v), the
// triangle's unnormalised normal (a triangle is recomputed by each of its corners instead of
// being stored: cheaper than a pass writing and reading per-triangle normals). Backward: the
// gradient of the normalisation per vertex, g_a, then every vertex gathers the gradient of
// <g_n, n> with respect to its corner, g_n = g_a(v) + g_a(a) + g_a(b) being the triangle's
// normal gradient: (p_a - p_b) x g_n. Every output is written by the one task that owns its
// vertex and sums in the adjacency's order, so nothing depends on the threads.
#include "kernels/vertex_normals.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

namespace morph3d {
namespace vertex_normals {
namespace {

// (batch item, vertex) tasks per chunk: about 0.1 ms of work, so small meshes stay on one thread.
constexpr int64_t kGrain = 8192;

template <typename T>
struct Vec3 {
  T x, y, z;
};

template <typename T>
inline Vec3<T> load(const T* p) {
  return {p[0], p[1], p[2]};
}

template <typename T>
inline void store(T* p, const Vec3<T>& v) {
  p[0] = v.x;
  p[1] = v.y;
  p[2] = v.z;
}

template <typename T>
inline Vec3<T> add(const Vec3<T>& a, const Vec3<T>& b) {
  return {a.x + b.x, a.y + b.y, a.z + b.z};
}

template <typename T>
inline Vec3<T> sub(const Vec3<T>& a, const Vec3<T>& b) {
  return {a.x - b.x, a.y - b.y, a.z - b.z};
}

template <typename T>
inline Vec3<T> cross(const Vec3<T>& a, const Vec3<T>& b) {
  return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x};
}

// g[i] + g[j] + g[k] (offsets of three vectors), added in ascending offset order: every corner of a
// triangle gets the same sum, so the contributions of a repeated corner cancel exactly.
template <typename T>
inline Vec3<T> triangle_sum(const T* g, int64_t i, int64_t j, int64_t k) {
  if (i > j) std::swap(i, j);
  if (j > k) std::swap(j, k);
  if (i > j) std::swap(i, j);
  return add(add(load(g + i), load(g + j)), load(g + k));
}

}  // namespace

void build_adjacency(const int64_t* tri, int64_t F, int64_t N, int64_t* offsets, int32_t* others) {
  std::fill(offsets, offsets + N + 1, int64_t(0));
  for (int64_t i = 0; i < 3 * F; ++i) ++offsets[tri[i] + 1];
  for (int64_t v = 0; v < N; ++v) offsets[v + 1] += offsets[v];
  std::vector<int64_t> next(offsets, offsets + N);
  for (int64_t t = 0; t < F; ++t) {
    for (int k = 0; k < 3; ++k) {
      int32_t* pair = others + 2 * next[tri[3 * t + k]]++;
      pair[0] = static_cast<int32_t>(tri[3 * t + (k + 1) % 3]);
      pair[1] = static_cast<int32_t>(tri[3 * t + (k + 2) % 3]);
    }
  }
}

template <typename T>
void forward(const T* vertices, const int64_t* offsets, const int32_t* others, int64_t B, int64_t N, T eps,
             T* normals, T* norms, const morph3d_kernels::Threads& threads) {
  threads.parallel_for(B * N, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / N, v = task - b * N;
      const T* P = vertices + b * N * 3;
      const Vec3<T> pv = load(P + v * 3);
      Vec3<T> a{T(0), T(0), T(0)};
      for (int64_t e = offsets[v]; e < offsets[v + 1]; ++e) {
        const int32_t* pair = others + 2 * e;
        a = add(a, cross(sub(load(P + pair[0] * int64_t(3)), pv), sub(load(P + pair[1] * int64_t(3)), pv)));
      }
      const T len = std::sqrt(a.x * a.x + a.y * a.y + a.z * a.z);
      const T d = std::max(len, eps);
      store(normals + task * 3, {a.x / d, a.y / d, a.z / d});
      norms[task] = len;
    }
  });
}

template <typename T>
void backward(const T* grad, const T* vertices, const int64_t* offsets, const int32_t* others, const T* normals,
              const T* norms, int64_t B, int64_t N, T eps, T* scratch, T* grad_vertices,
              const morph3d_kernels::Threads& threads) {
  // g_a = (g - n (n . g)) / |a| where |a| >= eps, g / eps where the length was clamped.
  threads.parallel_for(B * N, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const Vec3<T> g = load(grad + task * 3), n = load(normals + task * 3);
      const T len = norms[task];
      if (len >= eps) {
        const T ng = n.x * g.x + n.y * g.y + n.z * g.z;
        store(scratch + task * 3, {(g.x - n.x * ng) / len, (g.y - n.y * ng) / len, (g.z - n.z * ng) / len});
      } else {
        store(scratch + task * 3, {g.x / eps, g.y / eps, g.z / eps});
      }
    }
  });
  threads.parallel_for(B * N, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / N, v = task - b * N;
      const T* P = vertices + b * N * 3;
      const T* GA = scratch + b * N * 3;
      Vec3<T> acc{T(0), T(0), T(0)};
      for (int64_t e = offsets[v]; e < offsets[v + 1]; ++e) {
        const int64_t i = others[2 * e] * int64_t(3), j = others[2 * e + 1] * int64_t(3);
        acc = add(acc, cross(sub(load(P + i), load(P + j)), triangle_sum(GA, v * 3, i, j)));
      }
      store(grad_vertices + task * 3, acc);
    }
  });
}

template void forward<float>(const float*, const int64_t*, const int32_t*, int64_t, int64_t, float, float*, float*,
                             const morph3d_kernels::Threads&);
template void forward<double>(const double*, const int64_t*, const int32_t*, int64_t, int64_t, double, double*,
                              double*, const morph3d_kernels::Threads&);
template void backward<float>(const float*, const float*, const int64_t*, const int32_t*, const float*, const float*,
                              int64_t, int64_t, float, float*, float*, const morph3d_kernels::Threads&);
template void backward<double>(const double*, const double*, const int64_t*, const int32_t*, const double*,
                               const double*, int64_t, int64_t, double, double*, double*,
                               const morph3d_kernels::Threads&);

}  // namespace vertex_normals
}  // namespace morph3d
