"""Turn render outputs into displayable RGB images: (3, H, W) float in [0, 1], sRGB-encoded.

Inputs are single images (C, H, W) or batches (B, C, H, W); outputs keep the batch dimension if given.
"""
from __future__ import annotations

import math

import torch

# Depth colour map control points (position, RGB): near surfaces bright and warm, far ones dark and cool.
_DEPTH_STOPS = ((0.0, (0.05, 0.03, 0.20)), (0.35, (0.42, 0.10, 0.52)), (0.65, (0.88, 0.34, 0.26)),
                (1.0, (1.00, 0.94, 0.62)))
# Segmentation colours for classes 0.. (0 = background); further classes get evenly spaced hues.
_SEGMENT_COLOURS = ((0.0, 0.0, 0.0), (0.93, 0.76, 0.62), (0.72, 0.52, 0.30), (0.38, 0.20, 0.07),
                    (0.15, 0.55, 0.95), (0.10, 0.80, 0.85), (0.95, 0.55, 0.15), (0.85, 0.15, 0.30),
                    (0.65, 0.10, 0.45), (0.35, 0.05, 0.10), (0.40, 0.75, 0.30), (0.95, 0.90, 0.30))
BACKGROUND_GREY = 0.12


def _channels_first(t: torch.Tensor, channels: int, name: str) -> torch.Tensor:
    if t.ndim not in (3, 4) or t.shape[-3] != channels:
        raise ValueError(f"{name} must be ({channels}, H, W) or (B, {channels}, H, W), got {tuple(t.shape)}")
    return t.detach().float()


def colormap(values: torch.Tensor, stops=_DEPTH_STOPS) -> torch.Tensor:
    """Values (...,) in [0, 1] -> RGB (..., 3) by piecewise-linear interpolation between ``stops``."""
    pos = torch.tensor([s[0] for s in stops], device=values.device)
    rgb = torch.tensor([s[1] for s in stops], device=values.device)
    v = values.clamp(0.0, 1.0).contiguous()
    i = (torch.searchsorted(pos, v, right=True) - 1).clamp(0, len(stops) - 2)
    t = ((v - pos[i]) / (pos[i + 1] - pos[i]))[..., None]
    return rgb[i] * (1 - t) + rgb[i + 1] * t


def depth_to_rgb(depth: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Depth (1, H, W) or (B, 1, H, W) mm (0 = background) -> RGB, near = bright, per image min-max range."""
    d = _channels_first(depth, 1, "depth")
    fg = d > 0 if mask is None else (mask.detach() > 0.5) & (d > 0)
    flat_d, flat_fg = d.flatten(-3), fg.flatten(-3)
    lo = torch.where(flat_fg, flat_d, torch.full_like(flat_d, float("inf"))).min(-1).values
    hi = torch.where(flat_fg, flat_d, torch.full_like(flat_d, -float("inf"))).max(-1).values
    lo, hi = (t.reshape(t.shape + (1, 1, 1)) for t in (lo, hi))
    near_is_one = ((hi - d) / (hi - lo).clamp_min(1e-6)).nan_to_num(0.0)
    rgb = colormap(near_is_one[..., 0, :, :]).movedim(-1, -3)
    return torch.where(fg, rgb, torch.full_like(rgb, BACKGROUND_GREY))


def normals_to_rgb(normals: torch.Tensor) -> torch.Tensor:
    """Unit normals (3, H, W) or (B, 3, H, W), camera frame -> RGB ``(n + 1) / 2``; zero normals -> grey."""
    n = _channels_first(normals, 3, "normals")
    fg = n.abs().sum(-3, keepdim=True) > 0
    return torch.where(fg, (n + 1.0) * 0.5, torch.full_like(n, BACKGROUND_GREY))


def segment_palette(num_classes: int) -> torch.Tensor:
    """(num_classes, 3) RGB colours; class 0 (background) is black."""
    cols = list(_SEGMENT_COLOURS[:num_classes])
    extra = num_classes - len(cols)
    for k in range(max(extra, 0)):
        cols.append(tuple(hsv_to_rgb(torch.tensor([(k * 0.618034) % 1.0, 0.7, 0.95])).tolist()))
    return torch.tensor(cols, dtype=torch.float32)


def segmentation_to_rgb(labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Labels (1, H, W) or (B, 1, H, W) long -> RGB with :func:`segment_palette` colours."""
    lab = labels.detach().long()
    if lab.ndim not in (3, 4) or lab.shape[-3] != 1:
        raise ValueError(f"labels must be (1, H, W) or (B, 1, H, W), got {tuple(labels.shape)}")
    k = int(lab.max()) + 1 if num_classes is None else num_classes
    pal = segment_palette(max(k, 1)).to(lab.device)
    return pal[lab.squeeze(-3).clamp(0, k - 1)].movedim(-1, -3)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """HSV (..., 3) with hue in [0, 1) -> RGB (..., 3)."""
    h, s, v = hsv.unbind(-1)
    k = torch.stack([(5.0 + h * 6.0) % 6.0, (3.0 + h * 6.0) % 6.0, (1.0 + h * 6.0) % 6.0], -1)
    return v[..., None] - (v * s)[..., None] * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)


def flow_to_rgb(flow: torch.Tensor, valid: torch.Tensor | None = None, max_magnitude: float | None = None
                ) -> torch.Tensor:
    """Flow (2, H, W) or (B, 2, H, W) pixels -> RGB colour-wheel coding.

    Hue is the direction (image coordinates, y down: red = right, then clockwise on screen through
    yellow-green = down ...), saturation the magnitude relative to ``max_magnitude`` (default: the largest
    valid magnitude); zero flow is white and invalid pixels are dark grey.
    """
    f = _channels_first(flow, 2, "flow")
    ok = torch.ones_like(f[..., :1, :, :], dtype=torch.bool) if valid is None else valid.detach().bool()
    mag = f.norm(dim=-3, keepdim=True)
    if max_magnitude is None:
        max_magnitude = float(torch.where(ok, mag, torch.zeros_like(mag)).max().clamp_min(1e-6))
    hue = (torch.atan2(f[..., 1, :, :], f[..., 0, :, :]) / (2 * math.pi)) % 1.0
    sat = (mag[..., 0, :, :] / max_magnitude).clamp(0.0, 1.0)
    rgb = hsv_to_rgb(torch.stack([hue, sat, torch.ones_like(hue)], -1)).movedim(-1, -3)
    return torch.where(ok, rgb, torch.full_like(rgb, BACKGROUND_GREY))


def flow_wheel(size: int) -> torch.Tensor:
    """A (3, size, size) legend of :func:`flow_to_rgb`'s colour coding (grey outside the disc)."""
    c = (size - 1) / 2.0
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    flow = torch.stack([xs - c, ys - c]) / max(c, 1e-6)
    return flow_to_rgb(flow, flow.norm(dim=0, keepdim=True) <= 1.0, max_magnitude=1.0)


def draw_points(image: torch.Tensor, points: torch.Tensor, colours: torch.Tensor, radius: float = 1.5) -> torch.Tensor:
    """Draw filled discs on a copy of ``image (3, H, W)``.

    points: (L, 2) pixels (NaN ones are skipped); colours: (L, 3) or (3,) RGB; radius in pixels.
    """
    out = image.detach().clone()
    _, h, w = out.shape
    colours = colours.to(out).expand(points.shape[0], 3)
    r = int(math.ceil(radius))
    off = torch.arange(-r, r + 1, device=out.device)
    dy, dx = torch.meshgrid(off, off, indexing="ij")
    disc = (dx.float() ** 2 + dy.float() ** 2) <= radius * radius
    dx, dy = dx[disc], dy[disc]
    for (x, y), col in zip(points.detach().cpu().tolist(), colours):
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        xs, ys = dx + round(x), dy + round(y)
        keep = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
        out[:, ys[keep], xs[keep]] = col[:, None]
    return out


__all__ = ["colormap", "depth_to_rgb", "draw_points", "flow_to_rgb", "flow_wheel", "hsv_to_rgb", "normals_to_rgb",
           "segment_palette", "segmentation_to_rgb"]
