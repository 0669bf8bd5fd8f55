"""Landmark transformer T (Sec. 3.1): E1 (identity, source landmarks), E2 (motion, driving landmarks), D1 (landmark
shift) and the identity classifier C_id. Landmark images are (B, 1, H, W) float in [0, 1]."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import Decoder, Encoder, VectorHead


class LandmarkTransformer(nn.Module):
    """``T(L_src, L_drv) = L_drv + D1([E1(L_src), E2(L_drv)])``: the driving landmark image moved to the source
    identity. Inputs and output: (B, 1, H, W); H, W multiples of 2**levels."""

    def __init__(self, base: int = 32, levels: int = 3, max_channels: int = 256):
        super().__init__()
        self.e1 = Encoder(1, base, levels, max_channels)
        self.e2 = Encoder(1, base, levels, max_channels)
        self.d1 = Decoder(self.e1.out_channels + self.e2.out_channels, 1, base, levels, max_channels)

    def shift(self, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
        """The predicted landmark shift (B, 1, H, W)."""
        if source.shape != driving.shape or source.dim() != 4 or source.shape[1] != 1:
            raise ValueError(f"T needs two (B, 1, H, W) landmark images of one shape, got {tuple(source.shape)} "
                             f"and {tuple(driving.shape)}")
        return self.d1(torch.cat([self.e1(source), self.e2(driving)], 1))

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
        return driving + self.shift(source, driving)


class IdentityClassifier(VectorHead):
    """C_id: landmark image (B, 1, H, W) -> identity logits (B, num_identities); ``features`` (B, C) are the id
    features compared by L_id."""

    def __init__(self, num_identities: int, base: int = 32, levels: int = 3, max_channels: int = 256):
        super().__init__(1, num_identities, base, levels, max_channels)


__all__ = ["IdentityClassifier", "LandmarkTransformer"]
