"""Losses of the latent-directions method (Bounareli et al., Eqs. 3-7).

Shapes ``S`` are posed 3DMM vertices (B, N, 3) in mm and landmarks the 68 iBUG points on them
(B, 68, 3); images are (B, 3, H, W) in [-1, 1]; every loss returns a scalar (mean over the batch).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# 0-based iBUG-68 pairs: upper / lower eyelid points of each eye.
EYE_PAIRS = ((37, 41), (38, 40), (43, 47), (44, 46))
# Inner and outer lip points above / below each other, and the two mouth corners (opening and width).
MOUTH_PAIRS = ((61, 67), (62, 66), (63, 65), (50, 58), (51, 57), (52, 56), (48, 54), (60, 64))


def shape_loss(shape_r: torch.Tensor, shape_gt: torch.Tensor) -> torch.Tensor:
    """L_sh: mean absolute difference (mm) of the reenacted and ground-truth shapes, (B, N, 3) each."""
    if shape_r.shape != shape_gt.shape:
        raise ValueError(f"shapes differ: {tuple(shape_r.shape)} vs {tuple(shape_gt.shape)}")
    return (shape_r - shape_gt).abs().mean()


def pair_distances(points: torch.Tensor, pairs) -> torch.Tensor:
    """points (B, 68, D) -> (B, P): the L1 distance ``|points[i] - points[j]|_1`` of each pair (i, j)."""
    i = torch.tensor([a for a, _ in pairs], device=points.device)
    j = torch.tensor([b for _, b in pairs], device=points.device)
    return (points[:, i] - points[:, j]).abs().sum(-1)


def pair_distance_loss(landmarks_r: torch.Tensor, landmarks_gt: torch.Tensor, pairs) -> torch.Tensor:
    """L_eye / L_mouth (Eq. 5): sum over ``pairs`` of |d_r - d_gt|, mean over the batch (mm)."""
    diff = pair_distances(landmarks_r, pairs) - pair_distances(landmarks_gt, pairs)
    return diff.abs().sum(1).mean()


def identity_loss(features_a: torch.Tensor, features_b: torch.Tensor) -> torch.Tensor:
    """L_id (Eq. 6): 1 - cosine similarity of identity features (B, D) each, mean over the batch."""
    return (1 - F.cosine_similarity(features_a, features_b, dim=1)).mean()


def pixel_loss(images_r: torch.Tensor, images_t: torch.Tensor) -> torch.Tensor:
    """L_pix (Sec. 3.3): mean absolute difference of two image batches."""
    return (images_r - images_t).abs().mean()


def weighted_total(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """sum_k weights[k] * terms[k] over the terms present (Eqs. 3 and 7); weight 0 terms are skipped."""
    total = None
    for name, value in terms.items():
        w = weights.get(name, 0.0)
        if w:
            total = w * value if total is None else total + w * value
    if total is None:
        raise ValueError("every loss weight is zero; set at least one lambda_* > 0")
    return total


__all__ = ["EYE_PAIRS", "MOUTH_PAIRS", "identity_loss", "pair_distance_loss", "pair_distances", "pixel_loss",
           "shape_loss", "weighted_total"]
