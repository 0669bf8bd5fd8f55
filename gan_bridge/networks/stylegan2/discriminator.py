"""StyleGAN2 residual discriminator (config F) with minibatch standard deviation."""
import math

import torch
from torch import nn

from .layers import Conv2dLayer, FullyConnected, minibatch_stddev
from .synthesis import channels_per_resolution


class DiscriminatorBlock(nn.Module):
    """Residual block at ``res``: (B, C_res, res, res) -> (B, C_{res/2}, res/2, res/2).

    The first block also holds ``fromrgb`` (1x1 conv from the image). Both branches are scaled by
    sqrt(0.5) so the sum keeps unit variance.
    """

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, img_channels: int = 3,
                 conv_clamp: float | None = None):
        super().__init__()
        self.in_channels = in_channels
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp)
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 0:
            x = self.fromrgb(img)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y + x


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: minibatch std, 3x3 conv, FC + leaky ReLU, FC -> (B, 1) logits."""

    def __init__(self, channels: int, mbstd_group_size: int = 4, mbstd_num_channels: int = 1,
                 conv_clamp: float | None = None):
        super().__init__()
        self.mbstd_group_size, self.mbstd_num_channels = mbstd_group_size, mbstd_num_channels
        self.conv = Conv2dLayer(channels + mbstd_num_channels, channels, 3, activation="lrelu",
                                conv_clamp=conv_clamp)
        self.fc = FullyConnected(channels * 16, channels, activation="lrelu")
        self.out = FullyConnected(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mbstd_num_channels > 0:
            x = minibatch_stddev(x, self.mbstd_group_size, self.mbstd_num_channels)
        x = self.conv(x)
        return self.out(self.fc(x.flatten(1)))


class Discriminator(nn.Module):
    """Images ``(B, img_channels, resolution, resolution)`` in [-1, 1] -> realness logits ``(B, 1)``.

    Blocks ``b{res}`` for res = resolution .. 8, then the epilogue ``b4``. Channels as in the generator:
    ``min(channel_base // res, channel_max)`` unless ``channels`` ({res: C}) is given. The minibatch std
    layer needs B divisible by ``min(mbstd_group_size, B)``.
    """

    def __init__(self, resolution: int, img_channels: int = 3, channel_base: int = 32768, channel_max: int = 512,
                 mbstd_group_size: int = 4, mbstd_num_channels: int = 1, conv_clamp: float | None = None,
                 channels: dict | None = None):
        super().__init__()
        if resolution < 8 or resolution & (resolution - 1):
            raise ValueError(f"discriminator resolution must be a power of two >= 8, got {resolution}")
        self.resolution, self.img_channels = resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(int(math.log2(resolution)), 2, -1)]
        if channels is None:
            channels = channels_per_resolution(resolution, channel_base, channel_max)
        self.channels = {r: int(channels[r]) for r in self.block_resolutions + [4]}
        if min(self.channels.values()) < 1:
            raise ValueError(f"channel_base {channel_base} gives no channels at {resolution} px; "
                             f"use channel_base >= {resolution}")
        for res in self.block_resolutions:
            in_ch = self.channels[res] if res < resolution else 0
            setattr(self, f"b{res}", DiscriminatorBlock(in_ch, self.channels[res], self.channels[res // 2],
                                                        img_channels, conv_clamp=conv_clamp))
        self.b4 = DiscriminatorEpilogue(self.channels[4], mbstd_group_size, mbstd_num_channels, conv_clamp)
        self.config = dict(resolution=resolution, img_channels=img_channels, mbstd_group_size=mbstd_group_size,
                           mbstd_num_channels=mbstd_num_channels, conv_clamp=conv_clamp,
                           channels=dict(self.channels))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """img: (B, img_channels, R, R) -> logits (B, 1)."""
        expected = (self.img_channels, self.resolution, self.resolution)
        if img.ndim != 4 or tuple(img.shape[1:]) != expected:
            raise ValueError(f"discriminator expects images of shape (B, {expected[0]}, {expected[1]}, "
                             f"{expected[2]}), got {tuple(img.shape)}; resize or crop them first")
        if img.shape[0] == 0:
            raise ValueError("discriminator got an empty batch of images")
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img)
        return self.b4(x)
