"""Segmentation maps: model regions from the rasterizer, and face parts from 68 landmarks.

Both return ``labels (B, 1, H, W)`` long and ``onehot (B, K, H, W)`` float, with class 0 = background.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..model.face_definitions import IBUG68
from ..model.morphable_model import MorphableModel
from ..model.params import FaceParams
from .renderer import rasterize_face

BACKGROUND = 0

# Classes of :func:`landmark_segmentation`. "right"/"left" are the subject's: the subject's right brow
# and eye (iBUG points 17-21 and 36-41) appear on the image's left.
LANDMARK_CLASSES = ("background", "skin", "brow_right", "brow_left", "eye_right", "eye_left", "nose",
                    "upper_lip", "lower_lip", "inner_mouth")
LANDMARK_CLASS = {name: i for i, name in enumerate(LANDMARK_CLASSES)}


def region_class_names(model: MorphableModel) -> list[str]:
    """Class names of :func:`region_segmentation`: ``background`` then the model's regions."""
    return ["background"] + list(model.region_names)


def _onehot(labels: torch.Tensor, num_classes: int, dtype) -> torch.Tensor:
    return F.one_hot(labels[:, 0], num_classes).permute(0, 3, 1, 2).to(dtype)


def region_segmentation(model: MorphableModel, source: FaceParams | torch.Tensor, backend: str | None = None,
                        near: float | None = None, far: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel model region from the vertex with the largest barycentric weight.

    source: FaceParams to render, or a rasterizer output ``rast (B, H, W, 4)`` of this model's triangles.
    Returns labels (B, 1, H, W) long (0 = background, ``r + 1`` = ``model.region_names[r]``; see
    :func:`region_class_names`) and onehot (B, R + 1, H, W) float.
    """
    if isinstance(source, FaceParams):
        _, _, rast = rasterize_face(model, source, backend=backend, near=near, far=far)
    elif isinstance(source, torch.Tensor) and source.ndim == 4 and source.shape[-1] == 4:
        rast = source
    else:
        raise TypeError("region_segmentation needs FaceParams or a rast tensor (B, H, W, 4)")
    rast = rast.detach()
    tri_id = rast[..., 3].round().long() - 1  # (B, H, W)
    if tri_id.max() >= model.num_triangles:
        raise ValueError(f"rast refers to triangle {int(tri_id.max())} but model '{model.name}' has "
                         f"{model.num_triangles}; was it rendered from another mesh?")
    u, v = rast[..., 0], rast[..., 1]
    corner = torch.stack([u, v, 1.0 - u - v], dim=-1).argmax(-1, keepdim=True)  # (B, H, W, 1)
    vertex = model.triangles[tri_id.clamp_min(0)].gather(-1, corner)[..., 0]
    labels = torch.where(tri_id >= 0, model.region_labels[vertex] + 1, torch.zeros_like(vertex))[:, None]
    return labels, _onehot(labels, len(model.region_names) + 1, rast.dtype)


def polygon_mask(polygons: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Even-odd fill of closed polygons on the pixel grid (pixel centres at integer coordinates).

    polygons: (B, K, 2) pixels (x, y), vertices in order; NaN vertices drop their edges.
    Returns (B, H, W) bool. Per row, the crossings of the horizontal line through the pixel centres are
    sorted and each pixel counts the crossings to its right.
    """
    h, w = image_size
    b, k, _ = polygons.shape
    a = polygons
    c = torch.roll(polygons, -1, dims=1)
    y = torch.arange(h, device=polygons.device, dtype=polygons.dtype)[None, None, :]  # (1, 1, H)
    ay, cy, ax, cx = a[..., 1:2], c[..., 1:2], a[..., 0:1], c[..., 0:1]  # (B, K, 1)
    crosses = (ay > y) != (cy > y)  # (B, K, H)
    denom = torch.where(crosses, cy - ay, torch.ones_like(cy - ay))
    x_cross = ax + (y - ay) * (cx - ax) / denom
    x_cross = torch.where(crosses & torch.isfinite(x_cross), x_cross, torch.full_like(x_cross, -float("inf")))
    x_sorted = x_cross.permute(0, 2, 1).sort(dim=-1).values.contiguous()  # (B, H, K)
    xs = torch.arange(w, device=polygons.device, dtype=polygons.dtype).expand(b, h, w).contiguous()
    right = k - torch.searchsorted(x_sorted, xs, right=True)  # crossings strictly right of each pixel
    return right % 2 == 1


def _landmark_polygons(lm: torch.Tensor, forehead: float, brow_thickness: float) -> list[tuple[int, torch.Tensor]]:
    """(class id, polygon (B, K, 2)) in painting order; later polygons overwrite earlier ones."""
    def pts(*idx):
        return lm[:, list(idx)]

    L = IBUG68
    eye_r, eye_l = pts(*L.eye_right), pts(*L.eye_left)
    brow_r, brow_l = pts(*L.brow_right), pts(*L.brow_left)
    centre_r, centre_l = eye_r.mean(1, keepdim=True), eye_l.mean(1, keepdim=True)
    up_r = brow_r.mean(1, keepdim=True) - centre_r  # brow centre relative to the eye centre: "up" on the face
    up_l = brow_l.mean(1, keepdim=True) - centre_l
    skin = torch.cat([pts(*L.jaw), (brow_l + forehead * up_l).flip(1), (brow_r + forehead * up_r).flip(1)], 1)

    def band(brow, up):  # the brow line, its ends pushed out by a quarter segment, thickened along "up"
        line = torch.cat([brow[:, :1] + 0.25 * (brow[:, :1] - brow[:, 1:2]), brow,
                          brow[:, -1:] + 0.25 * (brow[:, -1:] - brow[:, -2:-1])], 1)
        return torch.cat([line + brow_thickness * up, (line - brow_thickness * up).flip(1)], 1)

    bridge = pts(L.nose_bridge[0])
    inner_r, inner_l = pts(L.eye_right[3]), pts(L.eye_left[0])  # inner eye corners (39, 42)
    nose = torch.cat([bridge + 0.3 * (inner_r - bridge), bridge + 0.3 * (inner_l - bridge),
                      pts(*L.nostrils[::-1])], 1)
    outer, inner = L.mouth_outer, L.mouth_inner  # 48-59, 60-67
    return [
        (LANDMARK_CLASS["skin"], skin),
        (LANDMARK_CLASS["nose"], nose),
        (LANDMARK_CLASS["brow_right"], band(brow_r, up_r)),
        (LANDMARK_CLASS["brow_left"], band(brow_l, up_l)),
        (LANDMARK_CLASS["eye_right"], eye_r),
        (LANDMARK_CLASS["eye_left"], eye_l),
        (LANDMARK_CLASS["upper_lip"], pts(*outer[:7], *inner[4::-1])),
        (LANDMARK_CLASS["lower_lip"], pts(*outer[6:], outer[0], inner[0], *inner[:4:-1], inner[4])),
        (LANDMARK_CLASS["inner_mouth"], pts(*inner)),
    ]


def landmark_segmentation(landmarks: torch.Tensor, image_size: tuple[int, int], forehead: float = 0.5,
                          brow_thickness: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """2D face-part segmentation from iBUG-68 landmarks (classes in :data:`LANDMARK_CLASSES`).

    landmarks: (B, 68, 2) pixels; image_size: (H, W).
    Skin is the jaw contour (0-16) closed over the brows raised by ``forehead`` x the eye-to-brow offset;
    brows are bands of ``brow_thickness`` x that offset either side of points 17-21 / 22-26 (ends
    extended by a quarter segment); the nose
    runs from the bridge (27, widened towards the inner eye corners) to the nostrils (31-35); eyes,
    lips and the inner mouth are the landmark polygons. Overlaps go to the later class in that order.
    Returns labels (B, 1, H, W) long (0 = background) and onehot (B, 10, H, W) float.
    """
    if landmarks.ndim != 3 or landmarks.shape[1:] != (IBUG68.num_points, 2):
        raise ValueError(f"landmarks must be (B, 68, 2) pixels, got {tuple(landmarks.shape)}")
    h, w = (int(s) for s in image_size)
    if h <= 0 or w <= 0:
        raise ValueError(f"image_size must be positive (H, W), got {image_size}")
    lm = landmarks.detach()
    if not lm.is_floating_point():
        lm = lm.float()
    labels = torch.zeros(lm.shape[0], h, w, dtype=torch.long, device=lm.device)
    for cls, poly in _landmark_polygons(lm, forehead, brow_thickness):
        labels = torch.where(polygon_mask(poly, (h, w)), torch.full_like(labels, cls), labels)
    labels = labels[:, None]
    return labels, _onehot(labels, len(LANDMARK_CLASSES), lm.dtype)


__all__ = ["BACKGROUND", "LANDMARK_CLASS", "LANDMARK_CLASSES", "landmark_segmentation", "polygon_mask",
           "region_class_names", "region_segmentation"]
