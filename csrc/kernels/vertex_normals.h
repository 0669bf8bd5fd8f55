// Contract of the CPU vertex-normal kernels (kernels/vertex_normals.cpp), called by
// glue/vertex_normals.cpp: area-weighted unit vertex normals of a batch of meshes sharing one
// triangle list, and their backward pass. T is float or double; arrays are contiguous.
//
// Each vertex sums its incident triangles from a vertex -> triangle adjacency in CSR form, built
// once per topology, in one fixed order: no atomics, and results are bit-identical for any
// thread count.
#pragma once

#include <cstdint>

#include "kernels/threads.h"

namespace morph3d {
namespace vertex_normals {

// CSR adjacency of tri: (F, 3) in [0, N) (checked by the caller). offsets: (N + 1,); the entries
// offsets[v] .. offsets[v + 1] - 1 of others: (3F, 2) are vertex v's corners, in triangle order:
// for v at corner k of triangle (t0, t1, t2), the pair (t_{k+1}, t_{k+2}) (indices mod 3), so
// that (p_a - p_v) x (p_b - p_v) is the triangle's normal (p1 - p0) x (p2 - p0).
void build_adjacency(const int64_t* tri, int64_t F, int64_t N, int64_t* offsets, int32_t* others);

// vertices: (B, N, 3); offsets, others: the adjacency above.
// normals: (B, N, 3) = a / max(|a|, eps) with a = the sum of the normals of the vertex's
// triangles (length: twice their area); norms: (B, N) = |a|. Both written in full.
template <typename T>
void forward(const T* vertices, const int64_t* offsets, const int32_t* others, int64_t B, int64_t N, T eps,
             T* normals, T* norms, const morph3d_kernels::Threads& threads);

// Gradient of <grad, normals> with respect to the vertices, given forward's normals and norms.
// scratch: (B, N, 3) workspace; grad_vertices: (B, N, 3) written in full.
template <typename T>
void backward(const T* grad, const T* vertices, const int64_t* offsets, const int32_t* others, const T* normals,
              const T* norms, int64_t B, int64_t N, T eps, T* scratch, T* grad_vertices,
              const morph3d_kernels::Threads& threads);

}  // namespace vertex_normals
}  // namespace morph3d
