"""PAS networks: the Pixel Attention Sampling module (Sec. 3.2) and the inpainting U-Net generator with its
projection discriminator (Sec. 3.3).

Images are ``(B, 3, H, W)`` float in [-1, 1]; segmentation maps ``(B, C, H, W)`` one-hot float; a pose is given
by 3D landmarks ``(B, 68, 3)`` in pixels (:mod:`gan_bridge.face.pas_prep`), which :func:`landmark_code` turns into
a ``(B, 204)`` condition vector. Sampling maps are ``(B, H, W, 2)`` (x, y) in [-1, 1], ``grid_sample``'s
convention with ``align_corners=False``; sampling goes through ``morph3d.ops.pixel_sample``, one fused call for the
image and its segmentation map.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from morph3d.ops import pixel_sample

LANDMARK_DIM = 68 * 3


def landmark_code(landmarks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """3D landmarks (B, 68, 3) pixels of an (H, W) image -> (B, 204): x, y mapped to [-1, 1] across the image,
    z scaled by the same factor as x (a pose and its position in the picture)."""
    if landmarks.dim() != 3 or landmarks.shape[1:] != (68, 3):
        raise ValueError(f"landmarks must be (B, 68, 3) 3D landmarks in pixels, got {tuple(landmarks.shape)}")
    h, w = size
    scale = landmarks.new_tensor([2.0 / w, 2.0 / h, 2.0 / w])
    shift = landmarks.new_tensor([(1.0 - w) / w, (1.0 - h) / h, 0.0])
    return (landmarks * scale + shift).flatten(1)


def identity_grid(batch: int, size: tuple[int, int], device=None, dtype=torch.float32) -> torch.Tensor:
    """(B, H, W, 2) sampling map that reads every pixel at its own centre (align_corners=False)."""
    h, w = size
    ys = (torch.arange(h, device=device, dtype=dtype) * 2 + 1) / h - 1
    xs = (torch.arange(w, device=device, dtype=dtype) * 2 + 1) / w - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)
    return grid[None].expand(batch, h, w, 2)


class ConditionalInstanceNorm(nn.Module):
    """Instance norm whose scale and shift are predicted from a condition vector (Dumoulin et al. 2017).

    x: (B, C, H, W), cond: (B, D) -> (B, C, H, W) ``(1 + gamma(cond)) * norm(x) + beta(cond)``."""

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.affine = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.affine.weight)
        nn.init.zeros_(self.affine.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.affine(cond)[:, :, None, None].chunk(2, 1)
        return (1 + gamma) * self.norm(x) + beta


class SelfAttention(nn.Module):
    """SAGAN self-attention (Zhang et al. 2019): x + g * softmax(q^T k) v, g starts at 0. x: (B, C, H, W)."""

    def __init__(self, channels: int):
        super().__init__()
        inner = max(1, channels // 8)
        self.q = nn.Conv2d(channels, inner, 1)
        self.k = nn.Conv2d(channels, inner, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.gain = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.q(x).flatten(2), self.k(x).flatten(2), self.v(x).flatten(2)
        attn = torch.softmax(q.transpose(1, 2) @ k, -1)  # (B, HW, HW)
        return x + self.gain * (v @ attn.transpose(1, 2)).view(b, c, h, w)


class CinBlock(nn.Module):
    """conv (stride ``stride``) -> conditional instance norm -> ReLU. x: (B, Ci, H, W) -> (B, Co, H/s, W/s)."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 4 if stride == 2 else 3, stride, 1)
        self.norm = ConditionalInstanceNorm(c_out, cond_dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x), cond))


_EDGE = 0.999  # inputs are read at most this far from 0 by atanh (|atanh| <= 3.8)


def _channels(base: int, level: int, cap: int) -> int:
    return min(cap, base * 2 ** level)


class Embedder(nn.Module):
    """PAS image embedder: stacked stride-2 convolutions with CIN driven by the target's 3D landmarks, self-attention
    after the ``attention_levels``-th downsamplings, to a ``feature_dim`` vector.

    images: (B, in_channels, H, W), cond: (B, cond_dim) -> (B, feature_dim). H, W must be ``2**levels * k``."""

    def __init__(self, size: int, in_channels: int = 3, cond_dim: int = LANDMARK_DIM, base: int = 32,
                 levels: int = 4, feature_dim: int = 512, max_channels: int = 256,
                 attention_levels: tuple[int, ...] = (2, 3)):
        super().__init__()
        if size % 2 ** levels:
            raise ValueError(f"image size {size} must be a multiple of 2**levels = {2 ** levels}")
        self.stem = CinBlock(in_channels, base, cond_dim)
        self.blocks = nn.ModuleList()
        self.attention = nn.ModuleDict()
        c = base
        for i in range(levels):
            c_out = _channels(base, i + 1, max_channels)
            self.blocks.append(CinBlock(c, c_out, cond_dim, stride=2))
            if i + 1 in attention_levels:
                self.attention[str(i)] = SelfAttention(c_out)
            c = c_out
        self.head = nn.Linear(c * (size // 2 ** levels) ** 2, feature_dim)

    def forward(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = self.stem(images, cond)
        for i, block in enumerate(self.blocks):
            x = block(x, cond)
            if str(i) in self.attention:
                x = self.attention[str(i)](x)
        return self.head(x.flatten(1))


class Sampler(nn.Module):
    """Fully connected layers with ReLU: feature (B, feature_dim) -> sampling map (B, H, W, 2) in (-1, 1).

    The last layer predicts a change of the map in atanh space around a start map and starts at zero:
    ``map = tanh(atanh(start) + fc(feature))``. The start map is the identity (every pixel read in place) unless
    ``forward`` is given one (B, H, W, 2); its values are clamped into +-0.999."""

    def __init__(self, size: int, feature_dim: int = 512, hidden: tuple[int, ...] = (512,)):
        super().__init__()
        layers, c = [], feature_dim
        for width in hidden:
            layers += [nn.Linear(c, width), nn.ReLU(inplace=True)]
            c = width
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(c, size * size * 2)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.size = size
        self.register_buffer("base", torch.atanh(identity_grid(1, (size, size))[0]), persistent=False)

    def forward(self, feature: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
        delta = self.out(self.body(feature)).view(-1, self.size, self.size, 2)
        if start is None:
            return torch.tanh(self.base + delta)
        if start.shape != delta.shape:
            raise ValueError(f"the start map must be {tuple(delta.shape)}, got {tuple(start.shape)}")
        return torch.tanh(torch.atanh(start.clamp(-_EDGE, _EDGE)) + delta)


class PixelAttentionSampling(nn.Module):
    """PAS (Sec. 3.2): embed (image, target pose) -> sampling map -> sample the image and its segmentation map.

    forward(images (B, 3, H, W), segs (B, C, H, W), landmarks (B, 68, 3) target pose in pixels,
            start (B, H, W, 2) map the sampler starts from, default the identity)
      -> (sampled images (B, 3, H, W), sampled segs (B, C, H, W), map (B, H, W, 2)).
    """

    def __init__(self, size: int, base: int = 32, levels: int = 4, feature_dim: int = 512,
                 sampler_hidden: tuple[int, ...] = (512,), max_channels: int = 256,
                 attention_levels: tuple[int, ...] = (2, 3)):
        super().__init__()
        self.size = size
        self.embedder = Embedder(size, 3, LANDMARK_DIM, base, levels, feature_dim, max_channels, attention_levels)
        self.sampler = Sampler(size, feature_dim, sampler_hidden)

    def sampling_map(self, images: torch.Tensor, landmarks: torch.Tensor,
                     start: torch.Tensor | None = None) -> torch.Tensor:
        if images.shape[-2:] != (self.size, self.size):
            raise ValueError(f"PAS was built for {self.size} x {self.size} images, got {tuple(images.shape[-2:])}")
        return self.sampler(self.embedder(images, landmark_code(landmarks, (self.size, self.size))), start)

    def forward(self, images: torch.Tensor, segs: torch.Tensor, landmarks: torch.Tensor,
                start: torch.Tensor | None = None):
        grid = self.sampling_map(images, landmarks, start)
        sampled, seg = sample_pair(images, segs, grid)
        return sampled, seg, grid


def sample_pair(images: torch.Tensor, segs: torch.Tensor, grid: torch.Tensor):
    """Images (B, 3, H, W) and segmentation maps (B, C, H, W) read at ``grid`` (B, Ho, Wo, 2) in one fused
    ``pixel_sample`` call (bilinear, zeros outside: holes for the inpainting stage)."""
    images_out, segs_out = pixel_sample([images, segs.to(images.dtype)], grid.to(images.dtype))
    return images_out, segs_out


class InpaintGenerator(nn.Module):
    """U-Net inpainting generator (Sec. 3.3). The decoder's CIN layers are conditioned on the target's 3D landmarks
    and identity features passed through a trainable FC layer.

    residual: the last convolution predicts a change of the input in atanh space and starts at zero, so an untrained
    generator returns its input: ``out = tanh(atanh(images) + conv(x))`` (not in the paper, whose generator writes the
    image directly; instance-normalising every decoder level loses each image's mean colour, measured in the README).
    residual=False: ``out = tanh(conv(x))``, the paper's output.

    forward(images (B, 3, H, W), landmarks (B, 68, 3) pixels, identity (B, identity_dim) or None)
      -> (B, 3, H, W) in [-1, 1].
    """

    def __init__(self, size: int, base: int = 32, levels: int = 4, max_channels: int = 256,
                 identity_dim: int = 128, identity_hidden: int = 128, residual: bool = True):
        super().__init__()
        self.size, self.identity_dim, self.residual = size, identity_dim, residual
        cond = LANDMARK_DIM + (identity_hidden if identity_dim else 0)
        self.identity_fc = nn.Linear(identity_dim, identity_hidden) if identity_dim else None
        self.stem = nn.Conv2d(3, base, 3, 1, 1)
        self.down = nn.ModuleList()
        chans = [base]
        for i in range(levels):
            c_in, c_out = chans[-1], _channels(base, i + 1, max_channels)
            self.down.append(nn.Sequential(nn.Conv2d(c_in, c_out, 4, 2, 1), nn.InstanceNorm2d(c_out),
                                           nn.LeakyReLU(0.2, inplace=True)))
            chans.append(c_out)
        self.up = nn.ModuleList()
        c = chans[-1]
        for i in reversed(range(levels)):  # upsample, concatenate the skip of that resolution, CIN block
            self.up.append(CinBlock(c + chans[i], chans[i], cond))
            c = chans[i]
        self.out = nn.Conv2d(c, 3, 3, 1, 1)
        if residual:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def condition(self, landmarks: torch.Tensor, identity: torch.Tensor | None) -> torch.Tensor:
        code = landmark_code(landmarks, (self.size, self.size))
        if self.identity_fc is None:
            return code
        if identity is None or identity.shape[-1] != self.identity_dim:
            raise ValueError(f"this generator is conditioned on {self.identity_dim}-d identity features; got "
                             f"{None if identity is None else tuple(identity.shape)}")
        return torch.cat([code, F.relu(self.identity_fc(identity))], 1)

    def forward(self, images: torch.Tensor, landmarks: torch.Tensor, identity: torch.Tensor | None = None):
        if images.shape[-2:] != (self.size, self.size):
            raise ValueError(f"the generator was built for {self.size} px images, got {tuple(images.shape[-2:])}")
        cond = self.condition(landmarks, identity)
        x = F.leaky_relu(self.stem(images), 0.2)
        skips = [x]
        for down in self.down:
            x = down(x)
            skips.append(x)
        for up, skip in zip(self.up, reversed(skips[:-1])):
            x = up(torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skip], 1), cond)
        if self.residual:
            return torch.tanh(torch.atanh(images.clamp(-_EDGE, _EDGE)) + self.out(x))
        return torch.tanh(self.out(x))


class ProjectionDiscriminator(nn.Module):
    """Spectrally normalised projection discriminator (Miyato & Koyama 2018) conditioned on the 3D landmarks.

    forward(images (B, 3, H, W), landmarks (B, 68, 3) pixels) -> (B,) ``psi(h) + <embed(pose), h>``."""

    def __init__(self, size: int, base: int = 32, levels: int = 4, max_channels: int = 256):
        super().__init__()
        self.size = size
        layers, c = [spectral_norm(nn.Conv2d(3, base, 3, 1, 1)), nn.LeakyReLU(0.2, inplace=True)], base
        for i in range(levels):
            c_out = _channels(base, i + 1, max_channels)
            layers += [spectral_norm(nn.Conv2d(c, c_out, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True)]
            c = c_out
        self.body = nn.Sequential(*layers)
        self.linear = spectral_norm(nn.Linear(c, 1))
        self.embed = spectral_norm(nn.Linear(LANDMARK_DIM, c))

    def forward(self, images: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        h = self.body(images).sum((2, 3))
        code = landmark_code(landmarks, (self.size, self.size))
        return self.linear(h)[:, 0] + (self.embed(code) * h).sum(1)


__all__ = ["ConditionalInstanceNorm", "Embedder", "InpaintGenerator", "LANDMARK_DIM", "PixelAttentionSampling",
           "ProjectionDiscriminator", "Sampler", "SelfAttention", "identity_grid", "landmark_code", "sample_pair"]
