"""Square face crops: image resampling and the matching camera, in the pixel convention of
``docs/conventions.md`` (pixel centres at integer coordinates, pixel ``i`` covering [i - 0.5, i + 0.5))."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..model.camera import Camera


@dataclass
class Crop:
    """A square window of side ``side`` px with its top-left corner at ``(left, top)`` (pixel-edge
    coordinates of the original image, i.e. ``u - (-0.5)``), resampled to ``size`` x ``size``."""

    left: float
    top: float
    side: float
    size: int

    @property
    def scale(self) -> float:
        return self.size / self.side

    @classmethod
    def around(cls, landmarks: np.ndarray, size: int, margin: float) -> "Crop":
        """The square centred on the landmarks' bounding box, ``margin`` x its longer side."""
        lo, hi = np.nanmin(landmarks, axis=0), np.nanmax(landmarks, axis=0)
        centre = (lo + hi) / 2 + 0.5  # to edge coordinates
        side = float(max(hi - lo) * margin)
        return cls(float(centre[0] - side / 2), float(centre[1] - side / 2), max(side, 1.0), size)

    def to_crop(self, points):
        """Original pixels (..., 2) -> crop pixels."""
        off = points.new_tensor([self.left, self.top]) if isinstance(points, torch.Tensor) else \
            np.array([self.left, self.top])
        return (points + 0.5 - off) * self.scale - 0.5

    def to_image(self, points):
        """Crop pixels (..., 2) -> original pixels."""
        off = points.new_tensor([self.left, self.top]) if isinstance(points, torch.Tensor) else \
            np.array([self.left, self.top])
        return (points + 0.5) / self.scale + off - 0.5

    def camera(self, camera: Camera, index: int) -> Camera:
        """Face ``index`` of ``camera`` (B cameras) seen through this crop (a batch of one)."""
        one = Camera(camera.focal[index:index + 1], camera.principal[index:index + 1], camera.image_size, camera.kind)
        return one.rescaled(self.scale, (self.size, self.size), (self.left, self.top))

    def image(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 -> the crop (size, size, 3) uint8 (area-averaged when shrinking) and a
        (size, size) float mask of the crop pixels that lie inside the original image."""
        h, w = image.shape[:2]
        x0, y0 = int(np.floor(self.left)), int(np.floor(self.top))
        x1, y1 = int(np.ceil(self.left + self.side)), int(np.ceil(self.top + self.side))
        pad = ((max(0, -y0), max(0, y1 - h)), (max(0, -x0), max(0, x1 - w)))
        window = image[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]
        if window.size == 0:  # the crop misses the image entirely
            return np.zeros((self.size, self.size, 3), np.uint8), np.zeros((self.size, self.size), np.float32)
        inside = np.pad(np.full(window.shape[:2], 255, np.uint8), pad)
        window = np.pad(window, pad + ((0, 0),), mode="edge")
        box = (self.left - x0, self.top - y0, self.left - x0 + self.side, self.top - y0 + self.side)
        size = (self.size, self.size)
        crop = np.asarray(Image.fromarray(window).resize(size, Image.BILINEAR, box=box, reducing_gap=2.0))
        mask = np.asarray(Image.fromarray(inside).resize(size, Image.BILINEAR, box=box)) / 255.0
        return crop, (mask > 0.99).astype(np.float32)
