"""The pix2pix-style baseline of the evaluation: (source face, driving landmark image) -> reenacted face in one
network, trained by L1 + a conditional PatchGAN (Isola et al. 2017) with the same budget as LI-Net."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import Decoder, Encoder, PatchDiscriminator, ResBlock


class Pix2PixGenerator(nn.Module):
    """``P(I_src, L_drv) -> I_hat``: source (B, 3, H, W) in [-1, 1] and driving landmark image (B, 1, H, W) in
    [0, 1] -> (B, 3, H, W) in [-1, 1]."""

    def __init__(self, base: int = 32, levels: int = 3, max_channels: int = 256, res_blocks: int = 4):
        super().__init__()
        self.encoder = Encoder(4, base, levels, max_channels)
        ch = self.encoder.out_channels
        self.blocks = nn.Sequential(*[ResBlock(ch) for _ in range(res_blocks)])
        self.decoder = Decoder(ch, 3, base, levels, max_channels)

    def forward(self, source: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        if source.dim() != 4 or source.shape[1] != 3 or landmarks.shape != (source.shape[0], 1, *source.shape[2:]):
            raise ValueError(f"the baseline needs images (B, 3, H, W) and landmark images (B, 1, H, W), got "
                             f"{tuple(source.shape)} and {tuple(landmarks.shape)}")
        return torch.tanh(self.decoder(self.blocks(self.encoder(torch.cat([source, landmarks], 1)))))


def conditional_discriminator(base: int = 32, levels: int = 3, max_channels: int = 256) -> PatchDiscriminator:
    """D_P: (source (3) | driving landmarks (1) | face (3)) stacked as (B, 7, H, W) -> PatchGAN logits."""
    return PatchDiscriminator(7, base, levels, max_channels)


__all__ = ["Pix2PixGenerator", "conditional_discriminator"]
