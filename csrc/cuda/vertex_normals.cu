// CUDA kernels of the area-weighted vertex normals (same method and contract as the CPU kernels
// in kernels/vertex_normals.cpp): one thread per (batch item, vertex) walks the vertex's corners
// in the adjacency's fixed CSR order, so the results are deterministic without atomics. The
// adjacency is built on the CPU (vertex_normals_topology) and copied over once per topology by
// the Python wrapper.
#if !__has_include(<c10/cuda/impl/cuda_cmake_macros.h>)
// CPU-only torch wheels ship c10/cuda headers without this generated file; it
// only carries a Windows export flag.
#define C10_CUDA_NO_CMAKE_CONFIGURE_FILE
#endif

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <tuple>

#include "glue/vertex_normals.h"

namespace morph3d {
namespace vertex_normals {
namespace {

constexpr int kThreads = 256;

int blocks_for(int64_t n) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, 1 << 20)));
}

// acc += (a - c) x (b - c)
template <typename T>
__device__ __forceinline__ void add_cross(const T* a, const T* b, const T* c, T* acc) {
  const T ax = a[0] - c[0], ay = a[1] - c[1], az = a[2] - c[2];
  const T bx = b[0] - c[0], by = b[1] - c[1], bz = b[2] - c[2];
  acc[0] += ay * bz - az * by;
  acc[1] += az * bx - ax * bz;
  acc[2] += ax * by - ay * bx;
}

template <typename T>
__global__ void forward_kernel(const T* __restrict__ vertices, const int64_t* __restrict__ offsets,
                               const int32_t* __restrict__ others, int64_t B, int64_t N, T eps,
                               T* __restrict__ normals, T* __restrict__ norms) {
  for (int64_t task = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; task < B * N;
       task += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t b = task / N, v = task - b * N;
    const T* P = vertices + b * N * 3;
    T a[3] = {T(0), T(0), T(0)};
    for (int64_t e = offsets[v]; e < offsets[v + 1]; ++e) {
      add_cross(P + others[2 * e] * int64_t(3), P + others[2 * e + 1] * int64_t(3), P + v * 3, a);
    }
    const T len = sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2]);
    const T d = len < eps ? eps : len;  // NaN stays NaN, as std::max on the CPU
    for (int c = 0; c < 3; ++c) normals[task * 3 + c] = a[c] / d;
    norms[task] = len;
  }
}

// g_a = (g - n (n . g)) / |a| where |a| >= eps, g / eps where the length was clamped.
template <typename T>
__global__ void normalise_grad_kernel(const T* __restrict__ grad, const T* __restrict__ normals,
                                      const T* __restrict__ norms, int64_t count, T eps, T* __restrict__ ga) {
  for (int64_t task = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; task < count;
       task += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const T* g = grad + task * 3;
    const T* n = normals + task * 3;
    const T len = norms[task];
    if (len >= eps) {
      const T ng = n[0] * g[0] + n[1] * g[1] + n[2] * g[2];
      for (int c = 0; c < 3; ++c) ga[task * 3 + c] = (g[c] - n[c] * ng) / len;
    } else {
      for (int c = 0; c < 3; ++c) ga[task * 3 + c] = g[c] / eps;
    }
  }
}

// Every vertex v gathers (p_a - p_b) x (g_a(v) + g_a(a) + g_a(b)) over its corners (a, b).
template <typename T>
__global__ void gather_grad_kernel(const T* __restrict__ vertices, const int64_t* __restrict__ offsets,
                                   const int32_t* __restrict__ others, const T* __restrict__ ga, int64_t B,
                                   int64_t N, T* __restrict__ grad_vertices) {
  for (int64_t task = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; task < B * N;
       task += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t b = task / N, v = task - b * N;
    const T* P = vertices + b * N * 3;
    const T* G = ga + b * N * 3;
    T acc[3] = {T(0), T(0), T(0)};
    for (int64_t e = offsets[v]; e < offsets[v + 1]; ++e) {
      const int64_t i = others[2 * e] * int64_t(3), j = others[2 * e + 1] * int64_t(3);
      // the triangle's g_a summed in ascending vertex order, as on the CPU: the same for all its corners
      int64_t s0 = v * 3, s1 = i, s2 = j, tmp;
      if (s0 > s1) tmp = s0, s0 = s1, s1 = tmp;
      if (s1 > s2) tmp = s1, s1 = s2, s2 = tmp;
      if (s0 > s1) tmp = s0, s0 = s1, s1 = tmp;
      T gn[3], edge[3];
      for (int c = 0; c < 3; ++c) {
        gn[c] = G[s0 + c] + G[s1 + c] + G[s2 + c];
        edge[c] = P[i + c] - P[j + c];
      }
      acc[0] += edge[1] * gn[2] - edge[2] * gn[1];
      acc[1] += edge[2] * gn[0] - edge[0] * gn[2];
      acc[2] += edge[0] * gn[1] - edge[1] * gn[0];
    }
    for (int c = 0; c < 3; ++c) grad_vertices[task * 3 + c] = acc[c];
  }
}

}  // namespace
}  // namespace vertex_normals
}  // namespace morph3d

std::tuple<at::Tensor, at::Tensor> morph3d_glue::vertex_normals_fwd_cuda(const at::Tensor& vertices_in,
                                                                         const at::Tensor& offsets_in,
                                                                         const at::Tensor& others_in, double eps) {
  using namespace morph3d::vertex_normals;
  check_mesh(vertices_in, offsets_in, others_in);
  const at::Tensor vertices = vertices_in.contiguous();
  const at::Tensor offsets = offsets_in.contiguous(), others = others_in.contiguous();
  const c10::cuda::CUDAGuard guard(vertices.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(vertices.device().index()).stream();
  const int64_t B = vertices.size(0), N = vertices.size(1);
  at::Tensor normals = at::empty(vertices.sizes(), vertices.options());
  at::Tensor norms = at::empty({B, N}, vertices.options());
  if (B * N == 0) return {normals, norms};
  AT_DISPATCH_FLOATING_TYPES(vertices.scalar_type(), "vertex_normals_fwd_cuda", [&] {
    forward_kernel<scalar_t><<<blocks_for(B * N), kThreads, 0, stream>>>(
        vertices.data_ptr<scalar_t>(), offsets.data_ptr<int64_t>(), others.data_ptr<int32_t>(), B, N,
        static_cast<scalar_t>(eps), normals.data_ptr<scalar_t>(), norms.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {normals, norms};
}

at::Tensor morph3d_glue::vertex_normals_bwd_cuda(const at::Tensor& grad_in, const at::Tensor& vertices_in,
                                                 const at::Tensor& offsets_in, const at::Tensor& others_in,
                                                 const at::Tensor& normals_in, const at::Tensor& norms_in,
                                                 double eps) {
  using namespace morph3d::vertex_normals;
  check_mesh(vertices_in, offsets_in, others_in);
  check_saved(vertices_in, grad_in, normals_in, norms_in);
  const at::Tensor vertices = vertices_in.contiguous();
  const at::Tensor offsets = offsets_in.contiguous(), others = others_in.contiguous();
  const at::Tensor grad = grad_in.contiguous(), normals = normals_in.contiguous(), norms = norms_in.contiguous();
  const c10::cuda::CUDAGuard guard(vertices.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(vertices.device().index()).stream();
  const int64_t B = vertices.size(0), N = vertices.size(1);
  at::Tensor ga = at::empty(vertices.sizes(), vertices.options());
  at::Tensor grad_vertices = at::empty(vertices.sizes(), vertices.options());
  if (B * N == 0) return grad_vertices;
  AT_DISPATCH_FLOATING_TYPES(vertices.scalar_type(), "vertex_normals_bwd_cuda", [&] {
    normalise_grad_kernel<scalar_t><<<blocks_for(B * N), kThreads, 0, stream>>>(
        grad.data_ptr<scalar_t>(), normals.data_ptr<scalar_t>(), norms.data_ptr<scalar_t>(), B * N,
        static_cast<scalar_t>(eps), ga.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    gather_grad_kernel<scalar_t><<<blocks_for(B * N), kThreads, 0, stream>>>(
        vertices.data_ptr<scalar_t>(), offsets.data_ptr<int64_t>(), others.data_ptr<int32_t>(),
        ga.data_ptr<scalar_t>(), B, N, grad_vertices.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_vertices;
}
