"""Fused pixel sampling: ``torch.nn.functional.grid_sample`` of several images with one grid.

:func:`pixel_sample` samples one or more ``(B, C_i, H, W)`` tensors (an image, a one-hot
segmentation, a mask, ...) at the same sampling grid in one pass of morph3d's C++ (CPU) or
CUDA kernels. The grid's sampling taps are computed once per output pixel and shared by every
channel of every input; the results and gradients (w.r.t. every input and the grid) follow
``grid_sample`` exactly for the modes it shares (``bilinear`` / ``nearest``, ``zeros`` /
``border`` padding, both ``align_corners``), so it can replace ``grid_sample`` directly.

Grid coordinates are ``grid_sample``'s: ``grid[..., 0]`` is x (-1 left edge, +1 right edge),
``grid[..., 1]`` is y (-1 top, +1 bottom); with ``align_corners=True`` -1 / +1 are the centres of
the corner pixels instead of the image edges. In pixel terms (``docs/conventions.md``: x right,
y down, pixel centres at integers) ``x_pixel = ((x + 1) * W - 1) / 2`` (``align_corners=False``)
or ``(x + 1) / 2 * (W - 1)`` (``align_corners=True``).

Backward passes are deterministic: repeated runs give bit-identical gradients (on the CPU for any
number of threads; on CUDA the input gradients are summed in fixed point, not with float atomics).
Double backward is not supported.
"""
from __future__ import annotations

from typing import List, Sequence, Union

import torch
from torch.autograd.function import once_differentiable

from .._ext import built_with_cuda, ops

MODES = {"bilinear": 0, "nearest": 1}
PADDINGS = {"zeros": 0, "border": 1}
_FLOATS = (torch.float32, torch.float64)
_MAX_OFFSET = 2 ** 31 - 1  # the kernels index pixels (and out-of-bounds neighbours) with int32

Inputs = Union[torch.Tensor, Sequence[torch.Tensor]]


def pixel_sample(inputs: Inputs, grid: torch.Tensor, mode: str = "bilinear", padding: str = "zeros",
                 align_corners: bool = False) -> Union[torch.Tensor, List[torch.Tensor]]:
    """Sample ``inputs`` at ``grid`` like ``grid_sample``, all inputs in one fused pass.

    inputs: (B, C, H, W) float tensor, or a list / tuple of them sharing B, H, W (channel counts
        may differ), all of the grid's dtype and device. Any memory layout (channels-last,
        non-contiguous views) is accepted.
    grid: (B, Ho, Wo, 2) float32 or float64 sampling positions (x, y) in normalised coordinates
        (see the module docstring); values outside [-1, 1] sample the padding.
    mode: "bilinear" or "nearest" (nearest rounds half to even, as ``grid_sample``).
    padding: "zeros" (outside samples read 0) or "border" (coordinates clamped to the image; the
        clamped coordinate has zero gradient, as in ``grid_sample``).
    align_corners: as in ``grid_sample``.
    Returns (B, C, Ho, Wo) contiguous for a tensor input, or a list of them in input order.
    """
    single = isinstance(inputs, torch.Tensor)
    tensors = [inputs] if single else _as_list(inputs)
    _check(tensors, grid, mode, padding, align_corners)
    outs = _PixelSample.apply(MODES[mode], PADDINGS[padding], align_corners, grid, *tensors)
    return outs[0] if single else list(outs)


class _PixelSample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mode: int, padding: int, align_corners: bool, grid: torch.Tensor, *inputs: torch.Tensor):
        outs = ops().pixel_sample_forward(list(inputs), grid, mode, padding, align_corners)
        ctx.save_for_backward(grid, *inputs)
        ctx.config = (mode, padding, align_corners)
        return tuple(outs)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grad_outputs: torch.Tensor):
        grid, *inputs = ctx.saved_tensors
        mode, padding, align_corners = ctx.config
        grid_needs = ctx.needs_input_grad[3]
        input_needs = list(ctx.needs_input_grad[4:])
        grad_inputs, grad_grid = ops().pixel_sample_backward(
            list(grad_outputs), inputs, grid, mode, padding, align_corners, input_needs, grid_needs)
        grad_inputs = [g if need else None for g, need in zip(grad_inputs, input_needs)]
        return (None, None, None, grad_grid if grid_needs else None, *grad_inputs)


# ---------------------------------------------------------------------------------------------
# Input checks (all before any kernel runs).

def _as_list(inputs: object) -> List[torch.Tensor]:
    if not isinstance(inputs, (list, tuple)):
        raise TypeError(f"inputs must be a (B, C, H, W) tensor or a list/tuple of them, got {type(inputs).__name__}")
    if len(inputs) == 0:
        raise ValueError("inputs is empty: pass at least one (B, C, H, W) tensor")
    for i, x in enumerate(inputs):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"inputs[{i}] must be a torch.Tensor (B, C, H, W), got {type(x).__name__}")
    return list(inputs)


def _check(tensors: List[torch.Tensor], grid: object, mode: object, padding: object, align_corners: object) -> None:
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
    if not isinstance(padding, str) or padding not in PADDINGS:
        hint = " (use torch.nn.functional.grid_sample for reflection padding)" if padding == "reflection" else ""
        raise ValueError(f"padding must be one of {sorted(PADDINGS)}, got {padding!r}{hint}")
    if not isinstance(align_corners, bool):
        raise TypeError(f"align_corners must be a bool, got {type(align_corners).__name__}")
    if not isinstance(grid, torch.Tensor):
        raise TypeError(f"grid must be a torch.Tensor (B, Ho, Wo, 2), got {type(grid).__name__}")
    if grid.dtype not in _FLOATS:
        raise TypeError(f"grid must be float32 or float64, got {grid.dtype}")
    if grid.ndim != 4 or grid.shape[3] != 2:
        raise ValueError(f"grid must be (B, Ho, Wo, 2) sampling positions (x, y), got {tuple(grid.shape)}")
    if grid.shape[0] == 0:
        raise ValueError("grid has an empty batch (B == 0): nothing to sample")
    if grid.shape[1] == 0 or grid.shape[2] == 0:
        raise ValueError(f"grid has an empty output size (Ho, Wo) = {tuple(grid.shape[1:3])}")
    _check_device(grid)
    height, width = None, None
    for i, x in enumerate(tensors):
        name = f"inputs[{i}]" if len(tensors) > 1 else "inputs"
        if x.ndim != 4:
            raise ValueError(f"{name} must be (B, C, H, W), got shape {tuple(x.shape)}")
        if x.dtype != grid.dtype:
            raise TypeError(f"{name} is {x.dtype} but grid is {grid.dtype}: all inputs must have the grid's dtype")
        if x.device != grid.device:
            raise ValueError(f"{name} is on {x.device} but grid is on {grid.device}: move them to one device")
        if x.shape[0] != grid.shape[0]:
            raise ValueError(f"{name} has batch size {x.shape[0]} but grid has {grid.shape[0]}")
        if height is None:
            height, width = x.shape[2], x.shape[3]
        elif (x.shape[2], x.shape[3]) != (height, width):
            raise ValueError(f"{name} is {x.shape[2]} x {x.shape[3]} but inputs[0] is {height} x {width}: "
                             "all inputs must share H and W")
    if height == 0 or width == 0:
        raise ValueError(f"inputs have an empty image size (H, W) = ({height}, {width})")
    if (height + 2) * (width + 2) > _MAX_OFFSET:
        raise ValueError(f"inputs of {height} x {width} pixels are too large: (H + 2) * (W + 2) must be < 2**31")


def _check_device(grid: torch.Tensor) -> None:
    if grid.device.type == "cuda":
        if not built_with_cuda():
            raise ValueError("grid is a CUDA tensor but morph3d's kernels were built without CUDA: rebuild "
                             "morph3d with a CUDA toolkit and a CUDA build of torch, or move the tensors to the CPU")
    elif grid.device.type != "cpu":
        raise ValueError(f"pixel_sample runs on CPU and CUDA tensors, got a tensor on {grid.device}")
