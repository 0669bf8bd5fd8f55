"""Closed-form pose from 2D-3D correspondences: an affine camera by linear least squares, then the
nearest scaled-orthographic pose (rotation, scale, translation) of ``docs/conventions.md``."""
from __future__ import annotations

import torch


def affine_camera(points3d: torch.Tensor, points2d: torch.Tensor, weights: torch.Tensor):
    """Weighted least-squares affine camera ``[u, v] = A X + b``.

    points3d: (B, L, 3) mm; points2d: (B, L, 2) px; weights: (B, L) >= 0 (0 = unused; at least 4
    non-coplanar points per image). Returns A (B, 2, 3) and b (B, 2).
    """
    w = weights.to(points3d.dtype)
    total = w.sum(1, keepdim=True).clamp_min(1e-12)
    c3 = (w[..., None] * points3d).sum(1) / total
    c2 = (w[..., None] * points2d).sum(1) / total
    x = points3d - c3[:, None]
    y = points2d - c2[:, None]
    scale = ((w[..., None] * x * x).sum((1, 2)) / total[:, 0]).sqrt().clamp_min(1e-9)  # conditioning
    xs = x / scale[:, None, None]
    gram = torch.einsum("bl,bli,blj->bij", w, xs, xs)
    gram = gram + 1e-9 * torch.eye(3, dtype=gram.dtype, device=gram.device)
    rhs = torch.einsum("bl,bli,blk->bik", w, xs, y)
    a = torch.linalg.solve(gram, rhs).transpose(1, 2) / scale[:, None, None]  # (B, 2, 3)
    b = c2 - torch.einsum("bki,bi->bk", a, c3)
    return a, b


def pose_from_affine(a: torch.Tensor, b: torch.Tensor, centre3d: torch.Tensor, principal: torch.Tensor,
                     focal: torch.Tensor | None):
    """The rotation, translation and scale closest to an affine camera.

    a: (B, 2, 3), b: (B, 2) from :func:`affine_camera`; centre3d: (B, 3) model point placed at the
    scaled-orthographic depth; principal: (B, 2) px; focal: (B,) px for a perspective camera (the
    centre point is put at depth ``focal / scale``), or None (orthographic).
    Returns R (B, 3, 3), t (B, 3) mm and scale (B,) px/mm.
    """
    # u = cx + s (R X)_x, v = cy - s (R X)_y  =>  rows of a are s R_0 and -s R_1
    m = torch.stack([a[:, 0], -a[:, 1]], dim=1)
    u, sv, vh = torch.linalg.svd(m, full_matrices=False)
    r2 = u @ vh  # nearest matrix with orthonormal rows
    scale = sv.mean(dim=1)
    rot = torch.stack([r2[:, 0], r2[:, 1], torch.cross(r2[:, 0], r2[:, 1], dim=-1)], dim=1)
    uc = torch.einsum("bki,bi->bk", a, centre3d) + b  # image of the centre point
    rc = torch.einsum("bij,bj->bi", rot, centre3d)
    # the centre sits at camera x = (u - cx) / s, y = -(v - cy) / s (at depth focal / s if perspective)
    tx = (uc[:, 0] - principal[:, 0]) / scale - rc[:, 0]
    ty = -(uc[:, 1] - principal[:, 1]) / scale - rc[:, 1]
    tz = torch.full_like(tx, -500.0) if focal is None else -focal / scale - rc[:, 2]
    return rot, torch.stack([tx, ty, tz], dim=1), scale
