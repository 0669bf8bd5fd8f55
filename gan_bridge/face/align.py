"""dlib's face-chip alignment, differentiable, for the identity network (:mod:`gan_bridge.networks.identity`).

Geometry (no gradient; landmarks are constants): dlib's ``get_face_chip_details(shape, size, padding)``
finds the least-squares similarity transform (Umeyama) from a mean-face template to the landmarks
(68-point: nose, eyes and upper lip, i.e. iBUG points 27-54 and 60-64, brows, jaw and lower lip
ignored; or dlib's 5-point layout), keeps its rotation ``angle`` and an image rectangle ``size * scale`` wide centred on
the chip centre's image, then ``extract_image_chips`` maps chip pixel ``(x, y)``, ``0 <= x, y < size``,
linearly onto that rectangle's corners (pixel centres at integer coordinates, 0-based).

Sampling (differentiable w.r.t. the image): when the rectangle is over twice the chip's size, dlib first
crops the image around the face (an integer box grown by a margin) and builds a ``pyramid_down<2>``
pyramid of the crop (separable [1, 4, 6, 4, 1] filter, valid, stride 2, integer division by 256),
then samples the level whose size just exceeds the chip, with the rectangle mapped by dlib's
``rect_down`` (``p / 2 - (1.25, 0.75)``, which is dlib's convention, not the filter's true centre).
Bilinear sampling gives black outside the image. Pixels are ``uint8`` in dlib: every pyramid level
and the chip are truncated to integers; here that truncation is a straight-through floor (exact
forward values, identity gradient) unless ``quantize=False``.

Differences from dlib: dlib rounds landmarks to integer pixels (``dlib.point``); these functions use
them as given (pass rounded landmarks for bit-level agreement).

The template numbers are dlib's (``dlib/image_transforms/interpolation.h``, Boost Software License).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

CHIP_SIZE = 150
CHIP_PADDING = 0.25
QUANT_EPS = 1e-3  # tolerance so that values meant to be integers do not floor to the one below

# dlib's mean face, unit square, for the iBUG-68 points it aligns on
_MEAN_FACE_68 = {
    27: (0.490127, 0.203352), 28: (0.490127, 0.307009), 29: (0.490127, 0.409805), 30: (0.490127, 0.515625),
    31: (0.36688, 0.587326), 32: (0.426036, 0.609345), 33: (0.490127, 0.628106), 34: (0.554217, 0.609345),
    35: (0.613373, 0.587326), 36: (0.121737, 0.216423), 37: (0.187122, 0.178758), 38: (0.265825, 0.179852),
    39: (0.334606, 0.231733), 40: (0.260918, 0.245099), 41: (0.182743, 0.244077), 42: (0.645647, 0.231733),
    43: (0.714428, 0.179852), 44: (0.793132, 0.178758), 45: (0.858516, 0.216423), 46: (0.79751, 0.244077),
    47: (0.719335, 0.245099), 48: (0.254149, 0.780233), 49: (0.340985, 0.745405), 50: (0.428858, 0.727388),
    51: (0.490127, 0.742578), 52: (0.551395, 0.727388), 53: (0.639268, 0.745405), 54: (0.726104, 0.780233),
    60: (0.290379, 0.784792), 61: (0.428096, 0.778746), 62: (0.490127, 0.785343), 63: (0.552157, 0.778746),
    64: (0.689874, 0.784792),
}
# dlib's 5-point layout (shape_predictor_5_face_landmarks): eye corners (right eye outer/inner,
# left eye outer/inner, as dlib orders them) and the base of the nose
_MEAN_FACE_5 = ((0.8595674595992, 0.2134981538014), (0.6460604764104, 0.2289674387677),
                (0.1205750620789, 0.2137274526848), (0.3340850613712, 0.2290642403242),
                (0.4901123135679, 0.6277975316475))


@dataclass
class ChipDetails:
    """dlib's ``chip_details``: image rectangle ``(left, top, right, bottom)`` (pixel centres, inclusive),
    rotation ``angle`` (radians) about its centre, and the chip's ``size`` (pixels, square)."""

    rect: tuple
    angle: float
    size: int


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares similarity (Umeyama 1991) mapping src (N, 2) onto dst (N, 2): returns (A (2, 2), t (2,)),
    ``dst ~ A @ src + t``, reflections excluded as in dlib."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0 ** 2).sum(1).mean()
    cov = d0.T @ s0 / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(cov) < 0 or (np.linalg.det(cov) == 0 and np.linalg.det(u) * np.linalg.det(vt) < 0):
        sign[1 if d[1] < d[0] else 0] = -1
    rot = u @ np.diag(sign) @ vt
    scale = (d * sign).sum() / var_s if var_s > 0 else 1.0
    return scale * rot, mu_d - scale * rot @ mu_s


def chip_details(landmarks, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> ChipDetails:
    """dlib's ``get_face_chip_details``. landmarks: (68, 2) iBUG or (5, 2) dlib 5-point, pixels."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape not in ((68, 2), (5, 2)):
        raise ValueError(f"landmarks must be (68, 2) iBUG or (5, 2) dlib points, got {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("landmarks contain NaN or inf; pass finite pixel coordinates")
    if pts.shape[0] == 68:
        ids = sorted(_MEAN_FACE_68)
        template, targets = np.array([_MEAN_FACE_68[i] for i in ids]), pts[ids]
    else:
        template, targets = np.array(_MEAN_FACE_5), pts
    if np.ptp(targets, axis=0).max() < 1e-6:
        raise ValueError("landmarks are all at one point; pass the face's real landmarks")
    chip_pts = (padding + template) / (2 * padding + 1) * size
    a, t = similarity_transform(chip_pts, targets)
    p = a @ np.array([1.0, 0.0])
    scale = float(np.hypot(*p))
    cx, cy = a @ np.array([size / 2.0, size / 2.0]) + t
    half = (size * scale - 1) / 2  # dlib's centered_drect(p, w, h) spans w - 1 between pixel centres
    return ChipDetails((cx - half, cy - half, cx + half, cy + half), float(math.atan2(p[1], p[0])), size)


def _rect_down(r):
    """dlib's ``pyramid_down<2>::rect_down``."""
    return (r[0] / 2 - 1.25, r[1] / 2 - 0.75, r[2] / 2 - 1.25, r[3] / 2 - 0.75)


def _area(r) -> float:
    return max(0.0, r[2] - r[0] + 1) * max(0.0, r[3] - r[1] + 1)


def _rotate(center, pt, angle):
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = pt[0] - center[0], pt[1] - center[1]
    return center[0] + c * dx - s * dy, center[1] + s * dx + c * dy


def _corners(r):
    """Top-left, top-right, bottom-left, bottom-right."""
    return (r[0], r[1]), (r[2], r[1]), (r[0], r[3]), (r[2], r[3])


@dataclass
class ChipPlan:
    """How dlib extracts one chip: integer crop box ``(x0, y0, x1, y1)`` (inclusive), the number of
    pyramid levels built on the crop, the level sampled (-1: the crop itself) and the affine map
    ``(2, 3)`` from chip pixel ``(x, y, 1)`` to that level's pixel coordinates."""

    box: tuple
    depth: int
    level: int
    chip_to_level: np.ndarray


def chip_plan(details: ChipDetails, height: int, width: int) -> ChipPlan:
    """dlib's ``extract_image_chips`` bookkeeping for one chip of an image ``height`` x ``width``."""
    rect, angle, n = details.rect, details.angle, details.size
    r, depth, grow = _rect_down(rect), 0, 2.0
    while _area(r) > n * n:
        r, depth, grow = _rect_down(r), depth + 1, grow * 2 + 2
    center = ((rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2)
    rot = np.array([_rotate(center, c, angle) for c in _corners(rect)])
    lo, hi = rot.min(0) - grow, rot.max(0) + grow
    box = [max(lo[0], 0.0), max(lo[1], 0.0), min(hi[0], width - 1.0), min(hi[1], height - 1.0)]
    if box[0] > box[2] or box[1] > box[3]:
        raise ValueError("the face lies outside the image; check the landmarks' coordinates")
    box = tuple(int(math.floor(v + 0.5)) for v in box)  # lround of non-negative values
    level, r = -1, (rect[0] - box[0], rect[1] - box[1], rect[2] - box[0], rect[3] - box[1])
    while _area(_rect_down(r)) > n * n:
        level, r = level + 1, _rect_down(r)
    center = ((r[0] + r[2]) / 2, (r[1] + r[3]) / 2)
    tl, tr, bl, _ = (np.array(_rotate(center, c, angle)) for c in _corners(r))
    m = np.stack([(tr - tl) / (n - 1), (bl - tl) / (n - 1), tl], axis=1)
    return ChipPlan(box, depth, level, m)


def _floor_st(x: torch.Tensor, quantize: bool) -> torch.Tensor:
    """uint8 truncation with a straight-through gradient."""
    if not quantize:
        return x
    return x + (torch.floor(x + QUANT_EPS) - x).detach()


def pyramid_down(image: torch.Tensor, quantize: bool = True) -> torch.Tensor:
    """dlib's ``pyramid_down<2>``: image (3, H, W) in [0, 255] -> (3, (H - 3) // 2, (W - 3) // 2)."""
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=image.dtype, device=image.device)
    x = F.conv2d(image[None], k.view(1, 1, 1, 5).expand(3, 1, 1, 5), stride=(1, 2), groups=3)
    x = F.conv2d(x, k.view(1, 1, 5, 1).expand(3, 1, 5, 1), stride=(2, 1), groups=3)
    return _floor_st(x[0] / 256.0, quantize)


def bilinear_sample(image: torch.Tensor, xy: np.ndarray) -> torch.Tensor:
    """dlib's ``interpolate_bilinear``: image (3, H, W), points xy (N, 2) in pixels -> (3, N), 0 where
    the 2 x 2 neighbourhood leaves the image."""
    _, h, w = image.shape
    x0, y0 = np.floor(xy[:, 0]), np.floor(xy[:, 1])
    valid = (x0 >= 0) & (y0 >= 0) & (x0 + 1 < w) & (y0 + 1 < h)
    fx = torch.as_tensor(np.where(valid, xy[:, 0] - x0, 0.0), dtype=image.dtype, device=image.device)
    fy = torch.as_tensor(np.where(valid, xy[:, 1] - y0, 0.0), dtype=image.dtype, device=image.device)
    xi, yi = np.where(valid, x0, 0).astype(np.int64), np.where(valid, y0, 0).astype(np.int64)
    flat = image.reshape(3, -1)

    def at(dx, dy):
        return flat[:, torch.as_tensor(np.minimum(yi + dy, h - 1) * w + np.minimum(xi + dx, w - 1),
                                       device=image.device)]
    top = at(0, 0) * (1 - fx) + at(1, 0) * fx
    bottom = at(0, 1) * (1 - fx) + at(1, 1) * fx
    mask = torch.as_tensor(valid, dtype=image.dtype, device=image.device)
    return (top * (1 - fy) + bottom * fy) * mask


def extract_chip(image: torch.Tensor, details: ChipDetails, quantize: bool = True) -> torch.Tensor:
    """One dlib face chip. image: (3, H, W) float RGB in [0, 255] -> (3, size, size) in [0, 255]."""
    _, h, w = image.shape
    plan = chip_plan(details, h, w)
    x0, y0, x1, y1 = plan.box
    src = image[:, y0:y1 + 1, x0:x1 + 1]
    for _ in range(plan.level + 1):
        if min(src.shape[1:]) <= 8:
            raise ValueError("face crop too small for dlib's image pyramid")
        src = pyramid_down(src, quantize)
    n = details.size
    gy, gx = np.mgrid[0:n, 0:n].astype(np.float64)
    pts = np.stack([gx.ravel(), gy.ravel(), np.ones(n * n)], axis=1) @ plan.chip_to_level.T
    return _floor_st(bilinear_sample(src, pts), quantize).reshape(3, n, n)


def align_faces(images: torch.Tensor, landmarks, size: int = CHIP_SIZE, padding: float = CHIP_PADDING,
                quantize: bool = True) -> torch.Tensor:
    """dlib face chips for a batch, differentiable w.r.t. the images.

    images: (B, 3, H, W) float RGB in [-1, 1]; landmarks: (B, 68, 2) or (B, 5, 2) pixels (0-based,
    x right, y down). Returns chips (B, 3, size, size) float RGB in [0, 255] (the identity network's
    input). Values outside [-1, 1] are clamped, as dlib's uint8 pixels would be.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be a (B, 3, H, W) tensor in [-1, 1], "
                         f"got {getattr(images, 'shape', type(images))}")
    if images.shape[0] == 0:
        raise ValueError("empty batch: pass at least one image")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or inf")
    lm = landmarks.detach().cpu().numpy() if isinstance(landmarks, torch.Tensor) else np.asarray(landmarks)
    if lm.ndim != 3 or lm.shape[0] != images.shape[0]:
        raise ValueError(f"landmarks must be (B, 68 or 5, 2) with B = {images.shape[0]}, got {lm.shape}")
    pixels = ((images + 1) * 127.5).clamp(0, 255)
    return torch.stack([extract_chip(pixels[i], chip_details(lm[i], size, padding), quantize)
                        for i in range(images.shape[0])])


def detect_landmarks(photo: np.ndarray, source: str = "image", detector: str = "dlib") -> np.ndarray:
    """The largest face's iBUG-68 landmarks (68, 2) in a photo (H, W, 3) uint8 RGB, by morph3d's detector.
    Raises ``morph3d.fitting.NoFaceError`` (a ValueError naming ``source``) when there is no face."""
    from morph3d.fitting import detect_faces

    return detect_faces(photo, detector=detector, source=source)[0].landmarks
