"""LI-Net's discriminators: D_r on landmark images (Eq. 4), D on rotated faces (LSGAN, Eq. 6) and D_G on reenacted
faces (Eq. 8); all PatchGAN logits maps (B, 1, H / 2**levels, W / 2**levels)."""
from __future__ import annotations

from .blocks import PatchDiscriminator


def landmark_discriminator(base: int = 32, levels: int = 3, max_channels: int = 256) -> PatchDiscriminator:
    """D_r: (B, 1, H, W) landmark images."""
    return PatchDiscriminator(1, base, levels, max_channels)


def image_discriminator(base: int = 32, levels: int = 3, max_channels: int = 256) -> PatchDiscriminator:
    """D (for R) and D_G (for G): (B, 3, H, W) images in [-1, 1]."""
    return PatchDiscriminator(3, base, levels, max_channels)


__all__ = ["image_discriminator", "landmark_discriminator"]
