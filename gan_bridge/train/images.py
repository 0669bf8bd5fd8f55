"""Image grids for sample snapshots (no torchvision)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch


def image_grid(images: torch.Tensor, cols: int | None = None, pad: int = 2) -> torch.Tensor:
    """images: (N, C, H, W) float in [-1, 1], C in {1, 3} -> (H', W', 3) uint8 grid, row-major, black gaps."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"sample images must be (N, 1 or 3, H, W), got {getattr(images, 'shape', type(images))}")
    if images.shape[0] == 0:
        raise ValueError("cannot make a grid of zero images")
    x = images.detach().float().cpu()
    x = torch.nan_to_num(x, nan=0.0).clamp(-1, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    n, _, h, w = x.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = torch.zeros(3, rows * (h + pad) + pad, cols * (w + pad) + pad)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = x[i]
    return ((grid.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def save_grid(images: torch.Tensor, path: str | Path, cols: int | None = None) -> Path:
    """Save ``images (N, C, H, W)`` in [-1, 1] as one PNG grid (written atomically)."""
    from PIL import Image
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".partial")
    Image.fromarray(np.ascontiguousarray(image_grid(images, cols).numpy())).save(tmp, format="PNG")
    tmp.replace(path)
    return path


__all__ = ["image_grid", "save_grid"]
