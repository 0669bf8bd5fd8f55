"""The renderer's colour space: images are linear RGB; photos and displays are sRGB-encoded."""
from __future__ import annotations

import torch


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """Linear RGB -> sRGB with the standard piecewise curve; values are clamped to [0, 1] first."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(1e-12) ** (1.0 / 2.4) - 0.055)


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] -> linear RGB."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


__all__ = ["linear_to_srgb", "srgb_to_linear"]
