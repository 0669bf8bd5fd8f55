"""Equalized-learning-rate building blocks shared by the StyleGAN2 generator and discriminator.

Weights are stored as N(0, 1) / lr_multiplier and scaled at run time by ``lr_multiplier / sqrt(fan_in)``
(He initialisation applied at run time), so every layer learns at the same speed under Adam.
"""
import math

import torch
from torch import nn

from .ops import bias_act, conv2d_resample, setup_filter


class FullyConnected(nn.Module):
    """Equalized linear layer + bias + activation: (B, in_features) -> (B, out_features)."""

    def __init__(self, in_features: int, out_features: int, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.matmul((self.weight * self.weight_gain).t())
        return bias_act(x, self.bias * self.bias_gain, act=self.activation)


class Conv2dLayer(nn.Module):
    """Equalized convolution with optional FIR up/down-sampling by 2, bias and activation.

    (B, Cin, H, W) -> (B, Cout, H * up / down, W * up / down); ``gain`` in forward scales the activated
    output (residual blocks use sqrt(0.5)).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1, resample_taps=(1, 3, 3, 1),
                 conv_clamp: float | None = None):
        super().__init__()
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.padding = kernel_size // 2
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size ** 2)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.register_buffer("resample_filter", setup_filter(resample_taps), persistent=False)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        x = conv2d_resample(x, self.weight * self.weight_gain, f=self.resample_filter, up=self.up,
                            down=self.down, padding=self.padding)
        act_gain = (1.0 if self.activation == "linear" else math.sqrt(2.0)) * gain
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act=self.activation, gain=act_gain, clamp=clamp)


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, num_channels: int = 1) -> torch.Tensor:
    """Append the minibatch standard deviation as ``num_channels`` extra feature maps.

    x: (N, C, H, W) -> (N, C + num_channels, H, W). Samples are split into groups of
    ``min(group_size, N)`` (N must be divisible by it); each group gets the std over its members,
    averaged over channels (split in ``num_channels`` parts) and pixels.
    """
    n, c, h, w = x.shape
    g = min(group_size, n)
    if n % g != 0:
        raise ValueError(f"minibatch std: batch size {n} is not divisible by the group size {g}; "
                         f"use a batch that is a multiple of {g}")
    f = num_channels
    y = x.reshape(g, -1, f, c // f, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0)
    y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # (N / G, F)
    y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)
