"""Expression enhancing generator G with expression encoder E_e (Sec. 3.3, Fig. 4)."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import AdaINResBlock, Decoder, Encoder, VectorHead


class ExpressionEncoder(VectorHead):
    """E_e: landmark image (B, 1, H, W) in [0, 1] -> expression code (B, style_dim)."""

    def __init__(self, style_dim: int = 64, base: int = 32, levels: int = 3, max_channels: int = 256):
        super().__init__(1, style_dim, base, levels, max_channels)


class ExpressionGenerator(nn.Module):
    """``G(I_R, I_src, L) -> I_hat``: the rotated face I_R (B, 3, H, W) enhanced with the source face I_src
    (B, 3, H, W) and given the expression of the landmark image L (B, 1, H, W), injected by AdaIN in the residual
    blocks. Output (B, 3, H, W) in [-1, 1]."""

    def __init__(self, base: int = 32, levels: int = 3, max_channels: int = 256, res_blocks: int = 4,
                 style_dim: int = 64):
        super().__init__()
        self.expression = ExpressionEncoder(style_dim, base, levels, max_channels)
        self.encoder = Encoder(6, base, levels, max_channels)
        ch = self.encoder.out_channels
        self.blocks = nn.ModuleList([AdaINResBlock(ch, style_dim) for _ in range(res_blocks)])
        self.decoder = Decoder(ch, 3, base, levels, max_channels)

    def forward(self, rotated: torch.Tensor, source: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        if rotated.shape != source.shape or rotated.shape[1] != 3 or \
                landmarks.shape != (rotated.shape[0], 1, *rotated.shape[2:]):
            raise ValueError(f"G needs rotated and source images (B, 3, H, W) and landmark images (B, 1, H, W), got "
                             f"{tuple(rotated.shape)}, {tuple(source.shape)}, {tuple(landmarks.shape)}")
        style = self.expression(landmarks)
        h = self.encoder(torch.cat([rotated, source], 1))
        for block in self.blocks:
            h = block(h, style)
        return torch.tanh(self.decoder(h))


__all__ = ["ExpressionEncoder", "ExpressionGenerator"]
