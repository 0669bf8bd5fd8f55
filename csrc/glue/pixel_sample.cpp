// Torch glue of the CPU pixel_sample kernels (kernels/pixel_sample.h): pixel_sample_forward and
// pixel_sample_backward on CPU tensors.
#include <ATen/Dispatch.h>

#include "glue/host_threads.h"
#include "glue/pixel_sample.h"
#include "kernels/pixel_sample.h"

namespace morph3d_glue {
namespace {

using morph3d::pixel_sample::Call;
using morph3d::pixel_sample::Source;

template <typename T>
Source<T> source(const at::Tensor& x) {
  return {x.data_ptr<T>(), x.size(1), x.stride(0), x.stride(1), x.stride(2), x.stride(3)};
}

template <typename T>
Call<T> make_call(const std::vector<at::Tensor>& inputs, const at::Tensor& grid, int64_t mode, int64_t padding,
                  bool align_corners) {
  Call<T> call{{}, grid.data_ptr<T>(), grid.size(0), inputs[0].size(2), inputs[0].size(3), grid.size(1),
               grid.size(2), mode, padding, align_corners};
  for (const auto& x : inputs) call.inputs.push_back(source<T>(x));
  return call;
}

}  // namespace

// inputs: list of (B, C_i, H, W); grid: (B, Ho, Wo, 2) -> list of (B, C_i, Ho, Wo).
std::vector<at::Tensor> pixel_sample_forward_cpu(at::TensorList inputs_, const at::Tensor& grid_, int64_t mode,
                                                 int64_t padding, bool align_corners) {
  const std::vector<at::Tensor> inputs(inputs_.begin(), inputs_.end());
  const at::Tensor grid = grid_.contiguous();
  morph3d::pixel_sample::check_args(inputs, grid, mode, padding);
  std::vector<at::Tensor> outs;
  for (const auto& x : inputs) outs.push_back(x.new_empty({x.size(0), x.size(1), grid.size(1), grid.size(2)}));
  const auto threads = host_threads();
  AT_DISPATCH_FLOATING_TYPES(grid.scalar_type(), "pixel_sample_forward_cpu", [&] {
    std::vector<scalar_t*> out;
    for (auto& o : outs) out.push_back(o.data_ptr<scalar_t>());
    morph3d::pixel_sample::forward<scalar_t>(make_call<scalar_t>(inputs, grid, mode, padding, align_corners), out,
                                             threads);
  });
  return outs;
}

// Gradients of sum_i <grad_outputs[i], forward(inputs, grid)[i]>: one tensor per input (empty
// where input_needs_grad is false) and the grid gradient (empty when grid_needs_grad is false).
std::tuple<std::vector<at::Tensor>, at::Tensor> pixel_sample_backward_cpu(
    at::TensorList grad_outputs_, at::TensorList inputs_, const at::Tensor& grid_, int64_t mode, int64_t padding,
    bool align_corners, c10::List<bool> input_needs_grad, bool grid_needs_grad) {
  const std::vector<at::Tensor> inputs(inputs_.begin(), inputs_.end());
  const std::vector<at::Tensor> grad_outputs(grad_outputs_.begin(), grad_outputs_.end());
  const at::Tensor grid = grid_.contiguous();
  morph3d::pixel_sample::check_args(inputs, grid, mode, padding);
  morph3d::pixel_sample::check_grad_outputs(grad_outputs, inputs, grid, input_needs_grad.size());
  std::vector<at::Tensor> grad_inputs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    // Every element is written when the gradient is unpacked: no zero fill.
    grad_inputs.push_back(input_needs_grad.get(i) ? inputs[i].new_empty(inputs[i].sizes())
                                                  : inputs[i].new_empty({0}));
  }
  const bool bilinear_grid = grid_needs_grad && mode == morph3d::pixel_sample::kBilinear;
  at::Tensor grad_grid = !grid_needs_grad ? grid.new_empty({0})
                         : bilinear_grid  ? grid.new_empty(grid.sizes())
                                          : grid.new_zeros(grid.sizes());  // nearest: zero gradient
  const auto threads = host_threads();
  AT_DISPATCH_FLOATING_TYPES(grid.scalar_type(), "pixel_sample_backward_cpu", [&] {
    std::vector<Source<scalar_t>> go;
    std::vector<scalar_t*> gi;
    for (size_t i = 0; i < inputs.size(); ++i) {
      go.push_back(source<scalar_t>(grad_outputs[i]));
      gi.push_back(input_needs_grad.get(i) ? grad_inputs[i].data_ptr<scalar_t>() : nullptr);
    }
    morph3d::pixel_sample::backward<scalar_t>(make_call<scalar_t>(inputs, grid, mode, padding, align_corners), go,
                                              gi, bilinear_grid ? grad_grid.data_ptr<scalar_t>() : nullptr, threads);
  });
  return {grad_inputs, grad_grid};
}

}  // namespace morph3d_glue
