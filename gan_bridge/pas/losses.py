"""PAS losses (Eqs. 1-14). Images (B, 3, H, W) in [-1, 1]; segmentation maps (B, C, H, W) one-hot or soft."""
from __future__ import annotations

import torch
import torch.nn.functional as F

# VGG16 layers 3, 8, 15, 22, 29 of Eq. 5 (the last convolution block output of each scale, after its ReLU).
PERCEPTUAL_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Eq. 2: mean absolute difference over pixels and channels, averaged over the batch (scalar)."""
    if a.shape != b.shape:
        raise ValueError(f"L1 of different shapes {tuple(a.shape)} and {tuple(b.shape)}")
    return (a - b).abs().mean()


def pas_pixel_loss(fake: torch.Tensor, target: torch.Tensor, recon: torch.Tensor, source: torch.Tensor,
                   recon_weight: float = 0.1) -> torch.Tensor:
    """Eq. 1: ``L1(J_fake, J) + recon_weight * L1(I_recon, I)`` (the paper's weight 0.1)."""
    return l1(fake, target) + recon_weight * l1(recon, source)


def dice_loss(target: torch.Tensor, fake: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Eq. 3: ``sum_c (1 - 2 sum_xy J^c J^c_fake / (sum_xy J^c + sum_xy J^c_fake))``, averaged over the batch.

    target, fake: (B, C, H, W). A class absent from both maps contributes 0 (``eps`` keeps it finite)."""
    if target.shape != fake.shape or target.dim() != 4:
        raise ValueError(f"segmentation maps must both be (B, C, H, W), got {tuple(target.shape)} and "
                         f"{tuple(fake.shape)}")
    inter = (target * fake).sum((2, 3))
    total = target.sum((2, 3)) + fake.sum((2, 3))
    return (1 - (2 * inter + eps) / (total + eps)).sum(1).mean()


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Eq. 7: squared differences of horizontal and vertical neighbours of x (B, C, H, W), summed over positions and
    channels as in the paper but divided by H * W * C (so loss weights do not depend on the resolution), mean over
    the batch. A sampling map (B, H, W, 2) is given as ``x.permute(0, 3, 1, 2)``."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).pow(2).sum((1, 2, 3))
    dy = (x[..., 1:, :] - x[..., :-1, :]).pow(2).sum((1, 2, 3))
    return ((dx + dy) / x[0].numel()).mean()


def displacement_tv(grid: torch.Tensor) -> torch.Tensor:
    """:func:`total_variation` of a sampling map's displacement from the identity map: grid (B, H, W, 2) in [-1, 1].
    Zero for the identity map and any translation of it; grows with how much neighbouring pixels' reads diverge."""
    from .networks import identity_grid
    b, h, w, _ = grid.shape
    return total_variation((grid - identity_grid(b, (h, w), grid.device, grid.dtype)).permute(0, 3, 1, 2))


def identity_loss(features_fake: torch.Tensor, features_real: torch.Tensor) -> torch.Tensor:
    """Eq. 11: mean absolute difference of identity features (B, D), averaged over the batch."""
    return l1(features_fake, features_real)


def generator_hinge(scores_fake: torch.Tensor) -> torch.Tensor:
    """Eq. 12: ``-dis_fake`` averaged over the batch."""
    return -scores_fake.mean()


def discriminator_hinge(scores_real: torch.Tensor, scores_fake: torch.Tensor) -> torch.Tensor:
    """Eq. 14: ``max(1 - dis_real, 0) + max(1 + dis_fake, 0)``, each averaged over its batch."""
    return F.relu(1 - scores_real).mean() + F.relu(1 + scores_fake).mean()


def occlude(images: torch.Tensor, generator: torch.Generator, min_frac: float = 0.15, max_frac: float = 0.4,
            holes: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Occlusion augmentation (S_occ): ``holes`` random rectangles per image, sides ``min_frac``..``max_frac`` of
    the image, set to 0 (mid grey). images: (B, 3, H, W) -> (occluded images, mask (B, 1, H, W) 1 = occluded)."""
    b, _, h, w = images.shape
    mask = torch.zeros(b, 1, h, w)
    for _ in range(holes):
        size = min_frac + (max_frac - min_frac) * torch.rand(b, 2, generator=generator)
        rh, rw = (size[:, 0] * h).long().clamp_min(1), (size[:, 1] * w).long().clamp_min(1)
        y0 = (torch.rand(b, generator=generator) * (h - rh + 1)).long()
        x0 = (torch.rand(b, generator=generator) * (w - rw + 1)).long()
        for i in range(b):
            mask[i, :, y0[i]:y0[i] + rh[i], x0[i]:x0[i] + rw[i]] = 1
    mask = mask.to(images)
    return images * (1 - mask), mask


__all__ = ["PERCEPTUAL_LAYERS", "dice_loss", "discriminator_hinge", "displacement_tv", "generator_hinge",
           "identity_loss", "l1", "occlude", "pas_pixel_loss", "total_variation"]
