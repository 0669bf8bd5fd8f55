"""Small stand-ins for the directions tests: a generator and an encoder that are linear, so the best A
is known, and a fixed identity network."""
from __future__ import annotations

import torch
from torch import nn

from gan_bridge.face.shape import FaceCoefficients


class LinearGenerator(nn.Module):
    """z (B, z_dim) -> ws = z W_map repeated over num_ws layers; image = tanh-free linear map of ws, so
    any encoder linear in the image is linear in w."""

    def __init__(self, resolution: int = 16, z_dim: int = 16, w_dim: int = 32, num_ws: int = 4, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.resolution, self.z_dim, self.w_dim, self.num_ws = resolution, z_dim, w_dim, num_ws
        self.register_buffer("map", torch.randn(z_dim, w_dim, generator=g) / z_dim ** 0.5)
        self.register_buffer("synth", torch.randn(num_ws * w_dim, 3 * resolution ** 2, generator=g)
                             * 0.3 / (num_ws * w_dim) ** 0.5)

    def mapping(self, z, truncation_psi: float = 1.0):
        return (z @ self.map * truncation_psi)[:, None].repeat(1, self.num_ws, 1)

    def synthesis(self, ws, noise_mode: str = "const"):
        r = self.resolution
        return (ws.flatten(1) @ self.synth).view(-1, 3, r, r)


class LinearEncoder(nn.Module):
    """images (B, 3, H, W) -> FaceCoefficients, a fixed linear map of the 4x4 average-pooled image
    (rotation scaled to about 0.2 rad, coefficients to about 0.3); landmarks (B, 68, 2) px around the
    image centre, also linear in the image."""

    def __init__(self, identity_dim: int = 40, expression_dim: int = 30, seed: int = 1):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.dims = (identity_dim, expression_dim, 3)
        self.register_buffer("proj", torch.randn(48, sum(self.dims), generator=g) / 48 ** 0.5)
        self.register_buffer("lm_proj", torch.randn(48, 136, generator=g) / 48 ** 0.5)

    def forward(self, images):
        pooled = nn.functional.adaptive_avg_pool2d(images, 4).flatten(1)
        ident, expr, rot = (pooled @ self.proj).split(self.dims, 1)
        landmarks = images.shape[-1] / 2 + (pooled @ self.lm_proj).view(-1, 68, 2)
        return FaceCoefficients(ident, expr, rot * 0.5, landmarks)


class PoolIdentity(nn.Module):
    """(images, landmarks) -> (B, 12) features: the 2x2 pooled image (landmarks unused)."""

    def forward(self, images, landmarks=None):
        return nn.functional.adaptive_avg_pool2d(images, 2).flatten(1) + 1.0
