// CUDA kernels of morph3d.ops.pixel_sample: torch.nn.functional.grid_sample
// (bilinear | nearest, zeros | border padding, CUDA grid_sample's coordinate
// formulas) of several NCHW inputs that share one grid, in one fused pass.
//
// One thread per output pixel: the taps are computed once and used for every
// channel of every input. The backward pass is deterministic: grid gradients
// are per output pixel (a fixed loop over channels, no atomics) and input
// gradients are summed in 64-bit fixed point with integer atomics, whose sum
// does not depend on the order of the additions. Each (batch item, channel)
// plane gets the scale 2^k with k chosen from the largest finite |grad_output|
// of the plane so that no partial sum can overflow; non-finite contributions
// are recorded as flags and turned back into NaN / +-Inf at the end.
#if !__has_include(<c10/cuda/impl/cuda_cmake_macros.h>)
// CPU-only torch wheels ship c10/cuda headers without this generated file; it
// only carries a Windows export flag.
#define C10_CUDA_NO_CMAKE_CONFIGURE_FILE
#endif

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

#include "glue/pixel_sample.h"

namespace morph3d {
namespace pixel_sample {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxInputs = 8;  // inputs per launch; more are handled in several launches

// Pixel coordinate of a grid coordinate along an axis of `size` pixels, with
// CUDA grid_sample's formulas; *mult receives d pixel / d grid (0 where border
// padding clamps).
template <typename T, bool Border>
__device__ __forceinline__ T source_coord(T g, int size, bool align_corners, T* mult) {
  T x;
  if (align_corners) {
    x = ((g + T(1)) / 2) * (size - 1);
    *mult = T(size - 1) / 2;
  } else {
    x = ((g + T(1)) * size - 1) / 2;
    *mult = T(size) / 2;
  }
  if (Border) {
    if (!(x > T(0) && x < T(size - 1))) *mult = T(0);
    x = fmin(T(size - 1), fmax(x, T(0)));  // NaN -> 0
  }
  return x;
}

// Integer index of an integral coordinate; far outside (and NaN) -> -2 or size + 1.
template <typename T>
__device__ __forceinline__ int to_index(T f, int size) {
  f = f > T(-2) ? f : T(-2);
  f = f < T(size + 1) ? f : T(size + 1);
  return static_cast<int>(f);
}

// Bilinear taps of one output pixel.
template <typename T>
struct Taps {
  int64_t idx;  // y0 * W + x0 of the nw corner (or of the nearest pixel)
  bool in[4];   // nw, ne, sw, se inside the input
  T wt[4];      // corner weights
  T e, w, s, n;  // distances to the east / west / south / north neighbours
  T mx, my;      // d pixel coordinate / d grid coordinate
};

template <typename T, bool Bilinear, bool Border>
__device__ __forceinline__ Taps<T> make_taps(T gx, T gy, int H, int W, bool align_corners) {
  Taps<T> t;
  const T x = source_coord<T, Border>(gx, W, align_corners, &t.mx);
  const T y = source_coord<T, Border>(gy, H, align_corners, &t.my);
  if (Bilinear) {
    const T xf = floor(x), yf = floor(y);
    t.w = x - xf;
    t.e = (xf + 1) - x;
    t.n = y - yf;
    t.s = (yf + 1) - y;
    t.wt[0] = t.e * t.s;
    t.wt[1] = t.w * t.s;
    t.wt[2] = t.e * t.n;
    t.wt[3] = t.w * t.n;
    const int x0 = to_index(xf, W), y0 = to_index(yf, H);
    const bool in_w = x0 >= 0 && x0 < W, in_e = x0 + 1 >= 0 && x0 + 1 < W;
    const bool in_n = y0 >= 0 && y0 < H, in_s = y0 + 1 >= 0 && y0 + 1 < H;
    t.idx = static_cast<int64_t>(y0) * W + x0;
    t.in[0] = in_n && in_w;
    t.in[1] = in_n && in_e;
    t.in[2] = in_s && in_w;
    t.in[3] = in_s && in_e;
  } else {
    // Round half to even, as grid_sample.
    const int xi = to_index(nearbyint(x), W), yi = to_index(nearbyint(y), H);
    t.idx = static_cast<int64_t>(yi) * W + xi;
    t.in[0] = xi >= 0 && xi < W && yi >= 0 && yi < H;
  }
  return t;
}

__device__ __forceinline__ int64_t corner_offset(int q, int W) { return (q & 1) + (q >> 1) * static_cast<int64_t>(W); }

// Up to kMaxInputs inputs of one launch; all (B, C_i, H, W) contiguous.
template <typename T>
struct Inputs {
  const T* in[kMaxInputs];
  T* out[kMaxInputs];                  // forward: (B, C_i, Ho, Wo)
  const T* grad_out[kMaxInputs];       // backward: (B, C_i, Ho, Wo)
  unsigned long long* acc[kMaxInputs];  // backward: fixed-point input gradient, or nullptr
  int* flags[kMaxInputs];              // backward: 1 +Inf, 2 -Inf, 4 NaN seen
  const double* scale[kMaxInputs];     // backward: fixed-point scale per (b, c)
  int64_t channels[kMaxInputs];
  int count;
};

template <typename T, bool Bilinear, bool Border>
__global__ void forward_kernel(Inputs<T> io, const T* __restrict__ grid, int64_t B, int H, int W, int64_t HoWo,
                               bool align_corners) {
  const int64_t HW = static_cast<int64_t>(H) * W, total = B * HoWo;
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < total;
       p += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t b = p / HoWo, pix = p - b * HoWo;
    const Taps<T> t = make_taps<T, Bilinear, Border>(grid[2 * p], grid[2 * p + 1], H, W, align_corners);
    for (int i = 0; i < io.count; ++i) {
      const int64_t C = io.channels[i];
      for (int64_t c = 0; c < C; ++c) {
        const T* plane = io.in[i] + (b * C + c) * HW;
        // Outside corners add 0 * weight, so NaN coordinates give NaN as on the CPU.
        T v = T(0);
        if (Bilinear) {
          for (int q = 0; q < 4; ++q) v += (t.in[q] ? plane[t.idx + corner_offset(q, W)] : T(0)) * t.wt[q];
        } else if (t.in[0]) {
          v = plane[t.idx];
        }
        io.out[i][(b * C + c) * HoWo + pix] = v;
      }
    }
  }
}

// Adds v * scale, rounded to an integer, to the fixed-point accumulator.
template <typename T>
__device__ __forceinline__ void add_fixed(unsigned long long* acc, int* flags, int64_t e, T v, double scale) {
  if (isfinite(v)) {
    const long long q = __double2ll_rn(static_cast<double>(v) * scale);
    atomicAdd(acc + e, static_cast<unsigned long long>(q));
  } else {
    atomicOr(flags + e, isnan(v) ? 4 : (v > T(0) ? 1 : 2));
  }
}

// grad_grid: (B, Ho, Wo, 2) or nullptr; `accumulate`: add to it (second and later launches).
template <typename T, bool Bilinear, bool Border>
__global__ void backward_kernel(Inputs<T> io, const T* __restrict__ grid, int64_t B, int H, int W, int64_t HoWo,
                                bool align_corners, T* grad_grid, bool accumulate) {
  const int64_t HW = static_cast<int64_t>(H) * W, total = B * HoWo;
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < total;
       p += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t b = p / HoWo, pix = p - b * HoWo;
    const Taps<T> t = make_taps<T, Bilinear, Border>(grid[2 * p], grid[2 * p + 1], H, W, align_corners);
    T gx = T(0), gy = T(0);
    for (int i = 0; i < io.count; ++i) {
      const int64_t C = io.channels[i];
      for (int64_t c = 0; c < C; ++c) {
        const T g = io.grad_out[i][(b * C + c) * HoWo + pix];
        if (Bilinear && grad_grid) {
          const T* plane = io.in[i] + (b * C + c) * HW;
          T v[4];
          for (int q = 0; q < 4; ++q) v[q] = t.in[q] ? plane[t.idx + corner_offset(q, W)] : T(0);
          gx += ((v[1] - v[0]) * t.s + (v[3] - v[2]) * t.n) * g;
          gy += ((v[2] - v[0]) * t.e + (v[3] - v[1]) * t.w) * g;
        }
        if (io.acc[i]) {
          const int64_t base = (b * C + c) * HW + t.idx;
          const double scale = io.scale[i][b * C + c];
          for (int q = 0; q < (Bilinear ? 4 : 1); ++q) {
            if (!t.in[q]) continue;
            add_fixed(io.acc[i], io.flags[i], base + corner_offset(q, W), Bilinear ? t.wt[q] * g : g, scale);
          }
        }
      }
    }
    if (Bilinear && grad_grid) {
      T* gg = grad_grid + 2 * p;
      gg[0] = (accumulate ? gg[0] : T(0)) + gx * t.mx;
      gg[1] = (accumulate ? gg[1] : T(0)) + gy * t.my;
    }
  }
}

// scale[j] = 2^k with bound[j] * 2^k < 2^62: no partial sum of the plane can overflow int64.
__global__ void scale_kernel(const double* __restrict__ bound, int64_t n, double* __restrict__ scale) {
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < n;
       j += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    int e = 0;
    if (bound[j] > 0) frexp(bound[j], &e);  // bound < 2^e
    scale[j] = ldexp(1.0, min(1000, max(-1000, 62 - e)));
  }
}

// Fixed-point sums (and flags) of planes of hw elements -> gradient values.
template <typename T>
__global__ void finalize_kernel(const unsigned long long* __restrict__ acc, const int* __restrict__ flags,
                                const double* __restrict__ scale, int64_t hw, int64_t n, T* __restrict__ out) {
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < n;
       j += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int f = flags[j];
    T v;
    if ((f & 4) || (f & 3) == 3) {
      v = NAN;
    } else if (f) {
      v = (f & 1) ? T(INFINITY) : T(-INFINITY);
    } else {
      v = static_cast<T>(static_cast<double>(static_cast<long long>(acc[j])) / scale[j / hw]);
    }
    out[j] = v;
  }
}

int blocks_for(int64_t n) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, 1 << 20)));
}

// Calls fn.template operator()<Bilinear, Border>().
template <typename Fn>
void dispatch_mode(int64_t mode, int64_t padding, const Fn& fn) {
  if (mode == kBilinear) {
    if (padding == kBorder) fn.template operator()<true, true>();
    else fn.template operator()<true, false>();
  } else {
    if (padding == kBorder) fn.template operator()<false, true>();
    else fn.template operator()<false, false>();
  }
}

std::vector<at::Tensor> contiguous_all(at::TensorList xs) {
  std::vector<at::Tensor> out;
  for (const auto& x : xs) out.push_back(x.contiguous());
  return out;
}

template <typename T>
struct ForwardLaunch {
  const Inputs<T>& io;
  const at::Tensor& grid;
  int64_t H, W;
  bool align_corners;
  cudaStream_t stream;
  template <bool Bilinear, bool Border>
  void operator()() const {
    const int64_t B = grid.size(0), HoWo = grid.size(1) * grid.size(2);
    forward_kernel<T, Bilinear, Border><<<blocks_for(B * HoWo), kThreads, 0, stream>>>(
        io, grid.data_ptr<T>(), B, static_cast<int>(H), static_cast<int>(W), HoWo, align_corners);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

template <typename T>
struct BackwardLaunch {
  const Inputs<T>& io;
  const at::Tensor& grid;
  int64_t H, W;
  bool align_corners;
  T* grad_grid;
  bool accumulate;
  cudaStream_t stream;
  template <bool Bilinear, bool Border>
  void operator()() const {
    const int64_t B = grid.size(0), HoWo = grid.size(1) * grid.size(2);
    backward_kernel<T, Bilinear, Border><<<blocks_for(B * HoWo), kThreads, 0, stream>>>(
        io, grid.data_ptr<T>(), B, static_cast<int>(H), static_cast<int>(W), HoWo, align_corners, grad_grid,
        accumulate);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

}  // namespace

std::vector<at::Tensor> forward_cuda(at::TensorList inputs_, const at::Tensor& grid_, int64_t mode,
                                     int64_t padding, bool align_corners) {
  const auto inputs = contiguous_all(inputs_);
  const at::Tensor grid = grid_.contiguous();
  check_args(inputs, grid, mode, padding);
  const c10::cuda::CUDAGuard guard(grid.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(grid.device().index()).stream();
  std::vector<at::Tensor> outs;
  for (const auto& x : inputs) {
    outs.push_back(at::empty({x.size(0), x.size(1), grid.size(1), grid.size(2)}, x.options()));
  }
  const int64_t H = inputs[0].size(2), W = inputs[0].size(3);
  AT_DISPATCH_FLOATING_TYPES(grid.scalar_type(), "pixel_sample_forward_cuda", [&] {
    for (size_t first = 0; first < inputs.size(); first += kMaxInputs) {
      Inputs<scalar_t> io{};
      io.count = static_cast<int>(std::min<size_t>(kMaxInputs, inputs.size() - first));
      for (int i = 0; i < io.count; ++i) {
        io.in[i] = inputs[first + i].data_ptr<scalar_t>();
        io.out[i] = outs[first + i].data_ptr<scalar_t>();
        io.channels[i] = inputs[first + i].size(1);
      }
      dispatch_mode(mode, padding, ForwardLaunch<scalar_t>{io, grid, H, W, align_corners, stream});
    }
  });
  return outs;
}

std::tuple<std::vector<at::Tensor>, at::Tensor> backward_cuda(at::TensorList grad_outputs_, at::TensorList inputs_,
                                                              const at::Tensor& grid_, int64_t mode, int64_t padding,
                                                              bool align_corners, c10::List<bool> input_needs_grad,
                                                              bool grid_needs_grad) {
  const auto inputs = contiguous_all(inputs_);
  const auto grad_outputs = contiguous_all(grad_outputs_);
  const at::Tensor grid = grid_.contiguous();
  check_args(inputs, grid, mode, padding);
  check_grad_outputs(grad_outputs, inputs, grid, input_needs_grad.size());
  const c10::cuda::CUDAGuard guard(grid.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(grid.device().index()).stream();
  const int64_t H = inputs[0].size(2), W = inputs[0].size(3);
  const double outputs_per_plane = static_cast<double>(grid.size(1) * grid.size(2));
  const bool bilinear_grid = grid_needs_grad && mode == kBilinear;
  at::Tensor grad_grid = !grid_needs_grad ? at::empty({0}, grid.options())
                         : bilinear_grid  ? at::empty_like(grid)
                                          : at::zeros_like(grid);  // nearest: zero gradient
  // Fixed-point accumulators, flags and per-plane scales of the inputs that need a gradient.
  std::vector<at::Tensor> acc(inputs.size()), flags(inputs.size()), scale(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!input_needs_grad.get(i)) continue;
    const auto& go = grad_outputs[i];
    acc[i] = at::zeros(inputs[i].sizes(), inputs[i].options().dtype(at::kLong));
    flags[i] = at::zeros(inputs[i].sizes(), inputs[i].options().dtype(at::kInt));
    // |sum| at any input pixel <= (outputs per plane) * max |finite grad_output| of the plane.
    const at::Tensor bound = at::where(go.isfinite(), go.abs(), at::zeros({}, go.options()))
                                 .amax({2, 3})
                                 .to(at::kDouble)
                                 .mul_(outputs_per_plane)
                                 .contiguous();
    scale[i] = at::empty_like(bound);
    scale_kernel<<<blocks_for(bound.numel()), kThreads, 0, stream>>>(bound.data_ptr<double>(), bound.numel(),
                                                                     scale[i].data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  std::vector<at::Tensor> grad_inputs;
  AT_DISPATCH_FLOATING_TYPES(grid.scalar_type(), "pixel_sample_backward_cuda", [&] {
    using T = scalar_t;
    for (size_t first = 0; first < inputs.size(); first += kMaxInputs) {
      Inputs<T> io{};
      io.count = static_cast<int>(std::min<size_t>(kMaxInputs, inputs.size() - first));
      for (int j = 0; j < io.count; ++j) {
        const size_t i = first + j;
        io.in[j] = inputs[i].data_ptr<T>();
        io.grad_out[j] = grad_outputs[i].data_ptr<T>();
        io.channels[j] = inputs[i].size(1);
        if (acc[i].defined()) {
          io.acc[j] = reinterpret_cast<unsigned long long*>(acc[i].data_ptr<int64_t>());
          io.flags[j] = flags[i].data_ptr<int>();
          io.scale[j] = scale[i].data_ptr<double>();
        }
      }
      T* gg = bilinear_grid ? grad_grid.data_ptr<T>() : nullptr;
      dispatch_mode(mode, padding, BackwardLaunch<T>{io, grid, H, W, align_corners, gg, first > 0, stream});
    }
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (!acc[i].defined()) {
        grad_inputs.push_back(at::empty({0}, inputs[i].options()));
        continue;
      }
      at::Tensor g = at::empty_like(inputs[i]);
      const int64_t n = g.numel();
      finalize_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(
          reinterpret_cast<const unsigned long long*>(acc[i].data_ptr<int64_t>()), flags[i].data_ptr<int>(),
          scale[i].data_ptr<double>(), H * W, n, g.data_ptr<T>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      grad_inputs.push_back(g);
    }
  });
  return {grad_inputs, grad_grid};
}

}  // namespace pixel_sample
}  // namespace morph3d

// The entry points declared in glue/pixel_sample.h; glue/register.cpp registers them for CUDA tensors.
std::vector<at::Tensor> morph3d_glue::pixel_sample_forward_cuda(at::TensorList inputs, const at::Tensor& grid,
                                                                int64_t mode, int64_t padding, bool align_corners) {
  return morph3d::pixel_sample::forward_cuda(inputs, grid, mode, padding, align_corners);
}

std::tuple<std::vector<at::Tensor>, at::Tensor> morph3d_glue::pixel_sample_backward_cuda(
    at::TensorList grad_outputs, at::TensorList inputs, const at::Tensor& grid, int64_t mode, int64_t padding,
    bool align_corners, c10::List<bool> input_needs_grad, bool grid_needs_grad) {
  return morph3d::pixel_sample::backward_cuda(grad_outputs, inputs, grid, mode, padding, align_corners,
                                              std::move(input_needs_grad), grid_needs_grad);
}
