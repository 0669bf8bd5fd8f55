// Contract of the CPU kernels of morph3d.ops.pixel_sample (kernels/pixel_sample.cpp, where the
// method is described), called by glue/pixel_sample.cpp: torch.nn.functional.grid_sample of
// several NCHW inputs sharing one grid. T is float or double. Results are bit-identical for any
// thread count.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/threads.h"

namespace morph3d {
namespace pixel_sample {

// Same codes as torch.nn.functional.grid_sample uses internally.
constexpr int64_t kBilinear = 0;
constexpr int64_t kNearest = 1;
constexpr int64_t kZeros = 0;
constexpr int64_t kBorder = 1;

// One (B, C, H, W) tensor with arbitrary element strides.
template <typename T>
struct Source {
  const T* data;
  int64_t C, sB, sC, sH, sW;
};

// One call: inputs (B, C_i, H, W) each, sampled at grid (B, Ho, Wo, 2), contiguous, holding
// (x, y) in [-1, 1]; mode kBilinear | kNearest, padding kZeros | kBorder.
template <typename T>
struct Call {
  std::vector<Source<T>> inputs;
  const T* grid;
  int64_t B, H, W, Ho, Wo;
  int64_t mode, padding;
  bool align_corners;
};

// outputs[i]: (B, C_i, Ho, Wo) contiguous, written in full.
template <typename T>
void forward(const Call<T>& call, const std::vector<T*>& outputs, const morph3d_kernels::Threads& threads);

// Gradients of sum_i <grad_outputs[i], forward(call)[i]>, grad_outputs[i]: (B, C_i, Ho, Wo).
// grad_inputs[i]: (B, C_i, H, W) contiguous, written in full, or nullptr where not wanted.
// grad_grid: (B, Ho, Wo, 2) contiguous, written in full, or nullptr (bilinear mode only).
template <typename T>
void backward(const Call<T>& call, const std::vector<Source<T>>& grad_outputs, const std::vector<T*>& grad_inputs,
              T* grad_grid, const morph3d_kernels::Threads& threads);

}  // namespace pixel_sample
}  // namespace morph3d
