"""LI-Net glue: landmark images and the identity x expression x pose grid of the synthetic world.

The grid mirrors RaFD / Multi-PIE: within a split, expression ``e`` and pose ``p`` are the same draws for every
identity, so ``(s, e, p)`` and ``(d, e, p)`` differ only in who is shown (and their lighting and background, which
are fixed per identity).
"""
from __future__ import annotations

import torch

from .world import VIEW_FACTORS, FaceWorld, WorldBatch, _View

__all__ = ["grid_faces", "head_pose", "landmark_image"]


def landmark_image(landmarks: torch.Tensor, size: int, sigma: float = 1.0,
                   visible: torch.Tensor | None = None) -> torch.Tensor:
    """landmarks: (B, N, 2) pixels (0-based, x right, y down) -> (B, 1, size, size) float in [0, 1]: the max over
    points of Gaussian dots of radius ``sigma`` pixels. visible: optional (B, N) bool; hidden points are left out."""
    if landmarks.dim() != 3 or landmarks.shape[-1] != 2 or landmarks.shape[0] == 0:
        raise ValueError(f"landmarks must be a non-empty (B, N, 2) pixel array, got {tuple(landmarks.shape)}")
    if not torch.isfinite(landmarks).all():
        raise ValueError("landmarks contain NaN or inf; check the landmark detector's output")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0 pixels, got {sigma}")
    lm = landmarks.float()
    axis = torch.arange(size, dtype=lm.dtype, device=lm.device)
    gx = torch.exp(-(axis[None, None, :] - lm[..., 0:1]) ** 2 / (2 * sigma ** 2))  # (B, N, W)
    gy = torch.exp(-(axis[None, None, :] - lm[..., 1:2]) ** 2 / (2 * sigma ** 2))  # (B, N, H)
    if visible is not None:
        gx = gx * visible.to(gx)[..., None]
    dots = gy[..., :, None] * gx[..., None, :]  # (B, N, H, W)
    return dots.amax(1, keepdim=True)


def head_pose(batch: WorldBatch) -> torch.Tensor:
    """The head pose (B, 3) (yaw, pitch, roll) radians of world faces (camera roll folded in), float32."""
    return batch.params.rotation.float()


def grid_faces(world: FaceWorld, cells) -> WorldBatch:
    """Render grid cells ``[(identity, expression, pose), ...]`` of ``world``'s split as one batch.

    Identity ``i`` keeps its shape, albedo, hair, lighting, camera, background and clothing in every cell;
    expression ``e`` and pose ``p`` are shared by all identities of the split."""
    cells = [tuple(int(v) for v in c) for c in cells]
    if not cells:
        raise ValueError("no grid cells given; ask for at least one (identity, expression, pose)")
    views = []
    for identity, expression, pose in cells:
        world._check_identity(identity)
        if expression < 0 or pose < 0:
            raise ValueError(f"expression and pose indices must be >= 0, got ({expression}, {pose})")
        keys = {f: ("linet-id", identity) for f in VIEW_FACTORS}
        keys["expression"], keys["pose"] = ("linet-expression", expression), ("linet-pose", pose)
        views.append(_View(identity, -1, 0, keys))
    return world._render(views)
