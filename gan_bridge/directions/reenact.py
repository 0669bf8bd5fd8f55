"""Reenactment with learned directions: ``w_r = w_s + A (p_t - p_s)`` (Bounareli et al., Sec. 3).

Sources are W+ codes (generated, or real photos inverted with :mod:`gan_bridge.inversion`); targets are
images whose pose vector p the encoder reads. With a ``reference`` driving frame the change is relative,
``p_s + (p_t - p_ref)``: the motion of a driving video applied to a source of another person.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import Directions, pose_vector


@dataclass
class Reenactment:
    """source: (B, 3, H, W) images of the source codes; reenacted: (B, 3, H, W), both in [-1, 1];
    ws: (B, num_ws, w_dim) reenacted codes; delta: (B, k) rescaled pose changes."""

    source: torch.Tensor
    reenacted: torch.Tensor
    ws: torch.Tensor
    delta: torch.Tensor


def rescaled_pose(directions: Directions, encoder, images: torch.Tensor) -> torch.Tensor:
    """images (B, 3, H, W) in [-1, 1] -> rescaled pose vectors (B, 3 + m_e)."""
    c = encoder(images)
    return directions.rescale(pose_vector(c.rotation, c.expression, directions.expression_dims))


@torch.no_grad()
def reenact_latents(G, directions: Directions, encoder, ws_s: torch.Tensor, images_t: torch.Tensor,
                    reference: torch.Tensor | None = None, source_images: torch.Tensor | None = None,
                    batch: int = 16) -> Reenactment:
    """Reenact sources ``ws_s`` (B or 1, num_ws, w_dim) in the pose of ``images_t`` (B, 3, H, W) in [-1, 1].

    One source code is shared by every target (a driving sequence). reference: (1, 3, H, W) driving frame
    for relative changes. source_images: the images p_s is read from (default ``G(ws_s)``; for an
    inverted photo pass the photo itself).
    """
    directions.check_generator(G)
    if images_t.ndim != 4 or images_t.shape[0] == 0:
        raise ValueError(f"targets must be a non-empty (B, 3, H, W) batch, got {tuple(images_t.shape)}")
    if not torch.isfinite(images_t).all():
        raise ValueError("target images contain NaN or inf")
    n = images_t.shape[0]
    if ws_s.shape[0] not in (1, n):
        raise ValueError(f"{ws_s.shape[0]} source codes for {n} targets: give one or as many as targets")
    src_img = G.synthesis(ws_s, noise_mode="const")
    p_s = rescaled_pose(directions, encoder, source_images if source_images is not None else src_img)
    p_t = torch.cat([rescaled_pose(directions, encoder, t) for t in images_t.split(batch)])
    # relative motion: p_r = p_s + (p_t - p_ref), so the change is p_t - p_ref
    delta = p_t - (rescaled_pose(directions, encoder, reference) if reference is not None else p_s)
    ws_s = ws_s.expand(n, -1, -1)
    ws_r = directions(ws_s, delta)
    images = torch.cat([G.synthesis(w, noise_mode="const") for w in ws_r.split(batch)])
    return Reenactment(source=src_img.expand(n, -1, -1, -1), reenacted=images, ws=ws_r, delta=delta)


__all__ = ["Reenactment", "reenact_latents", "rescaled_pose"]
