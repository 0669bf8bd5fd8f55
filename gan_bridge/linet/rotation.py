"""Face rotation module R and pose predictor D_p (Sec. 3.2). Images are (B, 3, H, W) in [-1, 1]; landmark images
(B, 1, H, W) in [0, 1]; poses (B, 3) head (yaw, pitch, roll) in radians."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import Decoder, Encoder, ResBlock, VectorHead


class FaceRotation(nn.Module):
    """``R(I_src, L_pose) -> I_R``: the source face turned to the pose of the landmark image ``L_pose`` (whose pose
    features come from a separate encoder, so any same-pose landmark image guides the same rotation)."""

    def __init__(self, base: int = 32, levels: int = 3, max_channels: int = 256, res_blocks: int = 4):
        super().__init__()
        self.image_encoder = Encoder(3, base, levels, max_channels)
        self.pose_encoder = Encoder(1, base, levels, max_channels)
        ch = self.image_encoder.out_channels + self.pose_encoder.out_channels
        self.blocks = nn.Sequential(*[ResBlock(ch) for _ in range(res_blocks)])
        self.decoder = Decoder(ch, 3, base, levels, max_channels)

    def pose_features(self, landmarks: torch.Tensor) -> torch.Tensor:
        return self.pose_encoder(landmarks)

    def forward(self, source: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        if source.dim() != 4 or source.shape[1] != 3 or landmarks.shape != (source.shape[0], 1, *source.shape[2:]):
            raise ValueError(f"R needs images (B, 3, H, W) and landmark images (B, 1, H, W), got "
                             f"{tuple(source.shape)} and {tuple(landmarks.shape)}")
        h = torch.cat([self.image_encoder(source), self.pose_features(landmarks)], 1)
        return torch.tanh(self.decoder(self.blocks(h)))


class PosePredictor(VectorHead):
    """D_p: face image (B, 3, H, W) -> head pose (B, 3) radians."""

    def __init__(self, base: int = 32, levels: int = 3, max_channels: int = 256):
        super().__init__(3, 3, base, levels, max_channels)


__all__ = ["FaceRotation", "PosePredictor"]
