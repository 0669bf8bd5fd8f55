// The torch glue of the pixel_sample op: its entry points (CPU in glue/pixel_sample.cpp, CUDA
// in cuda/pixel_sample.cu; registered by register.cpp) and their shared host-side argument
// checks. The Python wrapper (morph3d/ops/pixel_sample.py) validates first and raises
// ValueError/TypeError; these checks only keep direct torch.ops calls from reaching a kernel
// with bad arguments.
#pragma once

#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

#include "kernels/pixel_sample.h"

namespace morph3d {
namespace pixel_sample {

// inputs: list of (B, C_i, H, W); grid: (B, Ho, Wo, 2), all one floating dtype and device.
inline void check_args(const std::vector<at::Tensor>& inputs, const at::Tensor& grid,
                       int64_t mode, int64_t padding) {
  TORCH_CHECK(mode == kBilinear || mode == kNearest, "pixel_sample: mode must be 0 (bilinear) or 1 (nearest)");
  TORCH_CHECK(padding == kZeros || padding == kBorder, "pixel_sample: padding must be 0 (zeros) or 1 (border)");
  TORCH_CHECK(!inputs.empty(), "pixel_sample: expected at least one input");
  TORCH_CHECK(grid.dim() == 4 && grid.size(3) == 2, "pixel_sample: grid must be (B, Ho, Wo, 2), got ",
              grid.sizes());
  TORCH_CHECK(grid.scalar_type() == at::kFloat || grid.scalar_type() == at::kDouble,
              "pixel_sample: grid must be float32 or float64");
  TORCH_CHECK(grid.size(0) > 0 && grid.size(1) > 0 && grid.size(2) > 0, "pixel_sample: grid is empty");
  const int64_t H = inputs[0].dim() == 4 ? inputs[0].size(2) : 0;
  const int64_t W = inputs[0].dim() == 4 ? inputs[0].size(3) : 0;
  // Plane offsets, including those of out-of-bounds corners, are int32 inside the kernels.
  constexpr int64_t kMaxOffset = std::numeric_limits<int32_t>::max();
  for (const auto& x : inputs) {
    TORCH_CHECK(x.dim() == 4, "pixel_sample: every input must be (B, C, H, W), got ", x.sizes());
    TORCH_CHECK(x.size(0) == grid.size(0), "pixel_sample: input batch ", x.size(0), " != grid batch ",
                grid.size(0));
    TORCH_CHECK(x.size(2) == H && x.size(3) == W, "pixel_sample: inputs differ in H, W");
    TORCH_CHECK(H > 0 && W > 0 && H < kMaxOffset && W < kMaxOffset && (H + 2) * (W + 2) <= kMaxOffset,
                "pixel_sample: input H, W must be positive with (H + 2) * (W + 2) < 2^31, got ", x.sizes());
    TORCH_CHECK(x.scalar_type() == grid.scalar_type(), "pixel_sample: inputs and grid must share one dtype");
    TORCH_CHECK(x.device() == grid.device(), "pixel_sample: inputs and grid must be on one device");
  }
}

// grad_outputs[i]: (B, C_i, Ho, Wo), one per input, as many as needs_grad flags.
inline void check_grad_outputs(const std::vector<at::Tensor>& grad_outputs, const std::vector<at::Tensor>& inputs,
                               const at::Tensor& grid, size_t needs_grad_flags) {
  TORCH_CHECK(grad_outputs.size() == inputs.size() && needs_grad_flags == inputs.size(),
              "pixel_sample_backward: need one grad_output and one needs_grad flag per input");
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto& g = grad_outputs[i];
    TORCH_CHECK(g.dim() == 4 && g.size(0) == grid.size(0) && g.size(1) == inputs[i].size(1) &&
                    g.size(2) == grid.size(1) && g.size(3) == grid.size(2),
                "pixel_sample_backward: grad_output ", i, " has shape ", g.sizes(), ", expected (B, C, Ho, Wo)");
    TORCH_CHECK(g.scalar_type() == grid.scalar_type() && g.device() == grid.device(),
                "pixel_sample_backward: grad_outputs must match the grid's dtype and device");
  }
}

}  // namespace pixel_sample
}  // namespace morph3d

namespace morph3d_glue {

std::vector<at::Tensor> pixel_sample_forward_cpu(at::TensorList inputs, const at::Tensor& grid, int64_t mode,
                                                 int64_t padding, bool align_corners);
std::tuple<std::vector<at::Tensor>, at::Tensor> pixel_sample_backward_cpu(
    at::TensorList grad_outputs, at::TensorList inputs, const at::Tensor& grid, int64_t mode, int64_t padding,
    bool align_corners, c10::List<bool> input_needs_grad, bool grid_needs_grad);

#ifdef MORPH3D_WITH_CUDA
// csrc/cuda/pixel_sample.cu (inputs and grid on one CUDA device)
std::vector<at::Tensor> pixel_sample_forward_cuda(at::TensorList inputs, const at::Tensor& grid, int64_t mode,
                                                  int64_t padding, bool align_corners);
std::tuple<std::vector<at::Tensor>, at::Tensor> pixel_sample_backward_cuda(
    at::TensorList grad_outputs, at::TensorList inputs, const at::Tensor& grid, int64_t mode, int64_t padding,
    bool align_corners, c10::List<bool> input_needs_grad, bool grid_needs_grad);
#endif

}  // namespace morph3d_glue
