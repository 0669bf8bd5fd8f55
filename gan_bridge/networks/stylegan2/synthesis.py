"""StyleGAN2 synthesis network (config F, skip architecture): W+ -> image.

Block ``b{res}`` works at ``res x res``: ``b4`` starts from a learned constant and has one modulated
conv, every later block upsamples (conv0, FIR [1,3,3,1]) and adds a second conv (conv1). Each block's
toRGB output is added to the upsampled image of the previous blocks (skip architecture).
W+ indices: b4 uses ws[0] (conv1) and ws[1] (toRGB); block k >= 1 uses ws[2k - 1], ws[2k] (convs) and
ws[2k + 1] (toRGB), so ``num_ws = 2 * log2(resolution) - 2``.
"""
import math

import torch
from torch import nn

from .layers import FullyConnected
from .ops import LRELU_GAIN, bias_act, modulated_conv2d, setup_filter, upsample2d

NOISE_MODES = ("random", "const", "none")


def channels_per_resolution(resolution: int, channel_base: int = 32768, channel_max: int = 512) -> dict:
    """``{res: min(channel_base // res, channel_max)}`` for res = 4, 8, ..., resolution."""
    return {2 ** i: min(channel_base // 2 ** i, channel_max) for i in range(2, int(math.log2(resolution)) + 1)}


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally upsampling by 2) + scaled noise + bias + leaky ReLU.

    (B, Cin, res / up, res / up) -> (B, Cout, res, res). Noise is ``noise_strength * n`` with
    ``n (B or 1, 1, res, res)``: fresh N(0, 1) (``'random'``, drawn from ``generator``), the fixed
    buffer ``noise_const`` (``'const'``), or absent (``'none'``).
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: int = 1,
                 conv_clamp: float | None = None, resample_taps=(1, 3, 3, 1)):
        super().__init__()
        self.resolution, self.up, self.conv_clamp = resolution, up, conv_clamp
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.register_buffer("resample_filter", setup_filter(resample_taps), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random",
                noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight, styles, demodulate=True, up=self.up, padding=1,
                             resample_filter=self.resample_filter)
        if noise is None:
            if noise_mode == "random":
                noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device,
                                    dtype=x.dtype, generator=generator)
            elif noise_mode == "const":
                noise = self.noise_const
        if noise is not None:
            x = x + noise * self.noise_strength
        return bias_act(x, self.bias, act="lrelu", gain=LRELU_GAIN, clamp=self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv without demodulation, + bias: (B, C, H, W) -> (B, img_channels, H, W)."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (x, img) at res / 2 -> (x, img) at res."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 img_channels: int = 3, conv_clamp: float | None = None, resample_taps=(1, 3, 3, 1)):
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2,
                                        conv_clamp=conv_clamp, resample_taps=resample_taps)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp,
                                    resample_taps=resample_taps)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.register_buffer("resample_filter", setup_filter(resample_taps), persistent=False)
        self.num_conv = 1 if in_channels == 0 else 2

    def layers(self) -> list[SynthesisLayer]:
        """The block's noise-carrying conv layers, in W+ order."""
        return [self.conv1] if self.in_channels == 0 else [self.conv0, self.conv1]

    def forward(self, x, img, ws, noise_mode="random", noises=None, generator=None):
        """ws: (B, num_conv + 1, w_dim); noises: one tensor or None per conv layer."""
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
        noises = noises if noises is not None else [None] * self.num_conv
        for i, layer in enumerate(self.layers()):
            x = layer(x, ws[:, i], noise_mode=noise_mode, noise=noises[i], generator=generator)
        y = self.torgb(x, ws[:, self.num_conv])
        img = y if img is None else upsample2d(img, self.resample_filter) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """W+ ``(B, num_ws, w_dim)`` -> image ``(B, img_channels, resolution, resolution)`` in ~[-1, 1]."""

    def __init__(self, w_dim: int, resolution: int, img_channels: int = 3, channels: dict | None = None,
                 channel_base: int = 32768, channel_max: int = 512, conv_clamp: float | None = None):
        super().__init__()
        if resolution < 4 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")
        self.w_dim, self.resolution, self.img_channels = w_dim, resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(2, int(math.log2(resolution)) + 1)]
        if channels is None:
            channels = channels_per_resolution(resolution, channel_base, channel_max)
        missing = [r for r in self.block_resolutions if r not in channels]
        if missing:
            raise ValueError(f"channels has no entry for resolutions {missing}")
        self.channels = {r: int(channels[r]) for r in self.block_resolutions}
        if min(self.channels.values()) < 1:
            raise ValueError(f"channel_base {channel_base} gives no channels at {resolution} px; "
                             f"use channel_base >= {resolution}")
        for res in self.block_resolutions:
            in_ch = self.channels[res // 2] if res > 4 else 0
            setattr(self, f"b{res}", SynthesisBlock(in_ch, self.channels[res], w_dim, res, img_channels,
                                                    conv_clamp=conv_clamp))
        self.num_ws = 2 * len(self.block_resolutions)

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def noise_layers(self) -> list[SynthesisLayer]:
        """All conv layers in W+ order; ``noise`` lists passed to forward follow this order."""
        return [layer for block in self.blocks() for layer in block.layers()]

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", noise: list | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """ws: (B, num_ws, w_dim). noise_mode: 'random' | 'const' | 'none'. noise: optional list with one
        tensor ``(B or 1, 1, res, res)`` (or None = use noise_mode) per layer of ``noise_layers()``.
        generator: source of the random noise (deterministic runs), on the same device as ws.
        Returns (B, img_channels, R, R).
        """
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"synthesis expects ws of shape (B, {self.num_ws}, {self.w_dim}), "
                             f"got {tuple(ws.shape)}")
        if ws.shape[0] == 0:
            raise ValueError("synthesis got an empty batch of ws; pass at least one latent")
        if not torch.isfinite(ws).all():
            raise ValueError("synthesis got non-finite ws (NaN or inf); check the latents you pass")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        n_layers = len(self.noise_layers())
        if noise is not None and len(noise) != n_layers:
            raise ValueError(f"noise must have one entry per conv layer ({n_layers}), got {len(noise)}")
        ws = ws.float()
        x = img = None
        w_idx = n_idx = 0
        for block in self.blocks():
            block_noise = None if noise is None else noise[n_idx: n_idx + block.num_conv]
            x, img = block(x, img, ws[:, w_idx: w_idx + block.num_conv + 1], noise_mode=noise_mode,
                           noises=block_noise, generator=generator)
            w_idx += block.num_conv
            n_idx += block.num_conv
        return img
