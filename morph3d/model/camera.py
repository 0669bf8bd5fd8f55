"""Perspective and scaled-orthographic cameras (see ``docs/conventions.md``).

Camera frame: x right, y up, looking along -z, mm. Image: pixels, x right, y down, 0-based.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

PERSPECTIVE = "perspective"
ORTHOGRAPHIC = "orthographic"


@dataclass
class Camera:
    """A batch of pinhole or scaled-orthographic cameras sharing one image size.

    focal: (B,) float. Perspective: focal length in pixels. Orthographic: scale in pixels per mm.
    principal: (B, 2) float, principal point (cx, cy) in pixels.
    image_size: (height, width) in pixels.
    kind: ``"perspective"`` or ``"orthographic"``.
    """

    focal: torch.Tensor
    principal: torch.Tensor
    image_size: tuple[int, int]
    kind: str = PERSPECTIVE

    def __post_init__(self):
        if self.kind not in (PERSPECTIVE, ORTHOGRAPHIC):
            raise ValueError(f"camera kind must be '{PERSPECTIVE}' or '{ORTHOGRAPHIC}', got {self.kind!r}")
        h, w = (int(s) for s in self.image_size)
        if h <= 0 or w <= 0:
            raise ValueError(f"image_size must be positive (height, width), got {self.image_size}")
        self.image_size = (h, w)
        if self.focal.ndim != 1 or self.principal.shape != (self.focal.shape[0], 2):
            raise ValueError(f"camera focal must be (B,) and principal (B, 2), got {tuple(self.focal.shape)} "
                             f"and {tuple(self.principal.shape)}")

    @classmethod
    def create(cls, batch: int, image_size: tuple[int, int], focal: float | torch.Tensor | None = None,
               kind: str = PERSPECTIVE, device=None, dtype=torch.float32) -> "Camera":
        """Cameras with the principal point at the image centre.

        The default focal length (perspective) is 1.5 x the longer image side, a ~37 degree field of view,
        and the default orthographic scale is ``min(H, W) / 250`` pixels per mm (a face fills the frame).
        """
        h, w = image_size
        if focal is None:
            focal = 1.5 * max(h, w) if kind == PERSPECTIVE else min(h, w) / 250.0
        f = torch.as_tensor(focal, device=device, dtype=dtype).reshape(-1).expand(batch).clone()
        c = torch.tensor([(w - 1) / 2.0, (h - 1) / 2.0], device=device, dtype=dtype).expand(batch, 2).clone()
        return cls(f, c, (h, w), kind)

    @property
    def batch_size(self) -> int:
        return self.focal.shape[0]

    def to(self, device=None, dtype=None) -> "Camera":
        return replace(self, focal=self.focal.to(device=device, dtype=dtype),
                       principal=self.principal.to(device=device, dtype=dtype))

    def detach(self) -> "Camera":
        return replace(self, focal=self.focal.detach(), principal=self.principal.detach())

    def resized(self, image_size: tuple[int, int]) -> "Camera":
        """The same view rendered at another resolution (pixel-centre aligned rescaling)."""
        h0, w0 = self.image_size
        h1, w1 = image_size
        return self.rescaled((w1 / w0, h1 / h0), (h1, w1))

    def rescaled(self, scale, image_size: tuple[int, int], offset: tuple[float, float] = (0.0, 0.0)) -> "Camera":
        """The camera of an image resampled from this one (a resize, a crop or both): the one rescaling rule.

        A point at pixel ``u`` here lands at ``u'`` with ``u' + 0.5 = (u + 0.5 - offset_x) * scale_x`` (and
        likewise ``v``): ``offset`` (px, pixel-edge coordinates) is the new image's top-left corner in this
        image and ``scale`` (a number or ``(sx, sy)``) the new pixels per old pixel. ``image_size``: the new
        (height, width). ``sx`` must equal ``sy``: one focal length (or scale) serves both axes.
        """
        sx, sy = (float(s) for s in (scale if isinstance(scale, (tuple, list)) else (scale, scale)))
        if abs(sx - sy) > 1e-6 * max(sx, sy):
            raise ValueError(f"rescaling a camera needs the same scale on both axes (one focal length), got "
                             f"{sx:g} x {sy:g}; keep the aspect ratio")
        kw = dict(device=self.principal.device, dtype=self.principal.dtype)
        principal = (self.principal + 0.5 - torch.tensor(offset, **kw)) * torch.tensor([sx, sy], **kw) - 0.5
        return Camera(self.focal * sx, principal, image_size, self.kind)

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """Camera-frame points (B, N, 3) mm -> image coordinates (B, N, 2) pixels (:func:`project_points`)."""
        return project_points(points, self.focal, self.principal, self.kind)

    def to_clip(self, points: torch.Tensor, near: float = 10.0, far: float = 1e4) -> torch.Tensor:
        """Camera-frame points (B, N, 3) mm -> clip coordinates (B, N, 4) for ``render.rasterize``.

        Pixel (u, v) maps to NDC ((2u + 1) / W - 1, (2v + 1) / H - 1), so row 0 is the image top.
        Depth maps [near, far] (mm in front of the camera) to NDC z in [-1, 1].
        """
        h, w = self.image_size
        x, y, z = points.unbind(-1)
        f = self.focal[:, None]
        cx, cy = self.principal[:, 0:1], self.principal[:, 1:2]
        if self.kind == PERSPECTIVE:
            cw = -z
            cx_clip = (2.0 * f * x + (2.0 * cx + 1.0 - w) * cw) / w
            cy_clip = (-2.0 * f * y + (2.0 * cy + 1.0 - h) * cw) / h
            cz = (-(far + near) * z - 2.0 * far * near) / (far - near)
        else:
            cw = torch.ones_like(z)
            cx_clip = (2.0 * (cx + f * x) + 1.0) / w - 1.0
            cy_clip = (2.0 * (cy - f * y) + 1.0) / h - 1.0
            cz = (-2.0 * z - (far + near)) / (far - near)
        return torch.stack([cx_clip, cy_clip, cz, cw], dim=-1)


def project_points(points: torch.Tensor, focal: torch.Tensor, principal: torch.Tensor, kind: str = PERSPECTIVE,
                   min_depth: float | None = None) -> torch.Tensor:
    """The projection of ``docs/conventions.md``: camera-frame points (B, N, 3) mm -> pixels (B, N, 2).

    focal: (B,) px (perspective) or px/mm (orthographic); principal: (B, 2) px. Perspective:
    ``u = cx + f X / (-Z)``, ``v = cy - f Y / (-Z)``; orthographic: ``u = cx + f X``, ``v = cy - f Y``.
    min_depth: lower bound (mm) on ``-Z`` for points at or behind the camera (None: no bound).
    """
    x, y, z = points.unbind(-1)
    f = focal[:, None]
    if kind == PERSPECTIVE:
        depth = -z if min_depth is None else (-z).clamp_min(min_depth)
        u = principal[:, 0:1] + f * x / depth
        v = principal[:, 1:2] - f * y / depth
    else:
        u = principal[:, 0:1] + f * x
        v = principal[:, 1:2] - f * y
    return torch.stack([u, v], dim=-1)
