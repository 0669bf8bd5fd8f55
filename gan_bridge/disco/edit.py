"""Real-image editing (Sec. 5.2, Eq. 11): x_t = G_syn(w_s^+ + Delta w(i, a, b)).

w_s^+ is the photo's W+ embedding (:func:`gan_bridge.inversion.invert` on the generator); Delta w(i, a, b) =
w(u_i = b, u_{j}) - w(u_i = a, u_{j}) is taken at the photo's own factors u_{j} (lambda read by the regressor),
changing factor i from its value a in the photo to the target b.
"""
from __future__ import annotations

import torch

from .vae import FACTORS


@torch.no_grad()
def delta_w(G, lam: torch.Tensor, eps: torch.Tensor, factor: str, target: torch.Tensor) -> torch.Tensor:
    """Delta w (B, w_dim) of setting ``factor`` of lambda (B, D) to ``target`` (B or 1, D_factor); eps (B, noise_dim)."""
    if factor not in FACTORS:
        raise ValueError(f"unknown factor {factor!r}; use one of {', '.join(FACTORS)}")
    parts = G.vaes.split(lam)
    edited = G.vaes.join({**parts, factor: target.to(lam).expand_as(parts[factor])})
    w = G.mapping.from_lambda
    return w(edited, eps, update_w_avg=False)[:, 0] - w(lam, eps, update_w_avg=False)[:, 0]


@torch.no_grad()
def edit_ws(G, ws: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Eq. 11: images (B, 3, R, R) of W+ codes ws (B, num_ws, w_dim) moved by delta (B, w_dim) on every layer."""
    return G.synthesis(ws + delta[:, None], noise_mode="const").clamp(-1, 1)


__all__ = ["delta_w", "edit_ws"]
