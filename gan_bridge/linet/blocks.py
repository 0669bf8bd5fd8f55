"""Convolutional building blocks shared by LI-Net's networks (plain nn.Modules)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def widths(base: int, levels: int, max_channels: int) -> list[int]:
    """Channels after the stem and after each of ``levels`` downsamplings: ``base * 2**i`` capped."""
    return [min(base * 2 ** i, max_channels) for i in range(levels + 1)]


class Encoder(nn.Module):
    """(B, in_ch, H, W) -> (B, C, H / 2**levels, W / 2**levels): a 3x3 stem, then stride-2 conv + IN + LeakyReLU."""

    def __init__(self, in_ch: int, base: int, levels: int, max_channels: int):
        super().__init__()
        w = widths(base, levels, max_channels)
        layers = [nn.Conv2d(in_ch, w[0], 3, 1, 1), nn.LeakyReLU(0.2)]
        for a, b in zip(w[:-1], w[1:]):
            layers += [nn.Conv2d(a, b, 4, 2, 1), nn.InstanceNorm2d(b, affine=True), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)
        self.out_channels = w[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """(B, in_ch, h, w) -> (B, out_ch, h * 2**levels, w * 2**levels): nearest upsampling + conv + IN + ReLU, then a
    3x3 output conv (no activation)."""

    def __init__(self, in_ch: int, out_ch: int, base: int, levels: int, max_channels: int):
        super().__init__()
        w = widths(base, levels, max_channels)[::-1]
        layers = [nn.Conv2d(in_ch, w[0], 3, 1, 1), nn.ReLU()]
        for a, b in zip(w[:-1], w[1:]):
            layers += [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(a, b, 3, 1, 1),
                       nn.InstanceNorm2d(b, affine=True), nn.ReLU()]
        layers.append(nn.Conv2d(w[-1], out_ch, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ResBlock(nn.Module):
    """x + conv(IN(relu(conv(IN(x))))) at constant width."""

    def __init__(self, ch: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(ch, ch, 3, 1, 1), nn.InstanceNorm2d(ch, affine=True), nn.ReLU(),
                                 nn.Conv2d(ch, ch, 3, 1, 1), nn.InstanceNorm2d(ch, affine=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


def adain(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Adaptive instance normalisation (Huang & Belongie 2017): x (B, C, H, W) normalised per channel, then
    ``(1 + scale) * x + bias`` with scale, bias (B, C)."""
    mean = x.mean((2, 3), keepdim=True)
    std = (x.var((2, 3), keepdim=True, unbiased=False) + eps).sqrt()
    return (1 + scale[:, :, None, None]) * (x - mean) / std + bias[:, :, None, None]


class AdaINResBlock(nn.Module):
    """A residual block whose two normalisations are AdaIN driven by a style code (B, style_dim)."""

    def __init__(self, ch: int, style_dim: int):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(ch, ch, 3, 1, 1), nn.Conv2d(ch, ch, 3, 1, 1)
        self.style = nn.Linear(style_dim, 4 * ch)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        s1, b1, s2, b2 = self.style(style).chunk(4, 1)
        h = F.relu(adain(self.conv1(x), s1, b1))
        return x + adain(self.conv2(h), s2, b2)


class PatchDiscriminator(nn.Module):
    """(B, in_ch, H, W) -> (B, 1, H / 2**levels, W / 2**levels) real/fake scores (logits, PatchGAN)."""

    def __init__(self, in_ch: int, base: int, levels: int, max_channels: int):
        super().__init__()
        self.encoder = Encoder(in_ch, base, levels, max_channels)
        self.head = nn.Conv2d(self.encoder.out_channels, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


class VectorHead(nn.Module):
    """Encoder + global average pooling + linear: (B, in_ch, H, W) -> (B, out_dim); ``features`` gives the pooled
    (B, C) vector before the linear layer."""

    def __init__(self, in_ch: int, out_dim: int, base: int, levels: int, max_channels: int):
        super().__init__()
        self.encoder = Encoder(in_ch, base, levels, max_channels)
        self.linear = nn.Linear(self.encoder.out_channels, out_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x))


__all__ = ["AdaINResBlock", "Decoder", "Encoder", "PatchDiscriminator", "ResBlock", "VectorHead", "adain", "widths"]
