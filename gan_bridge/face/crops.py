"""Face crops for GAN inversion: the FFHQ alignment from iBUG-68 landmarks, and face-region weights.

Pixel coordinates are 0-based (x, y) with the centre of the top-left pixel at (0, 0), as everywhere in
morph3d (``docs/conventions.md``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from morph3d.render import BACKGROUND, landmark_segmentation


@dataclass
class FaceCrop:
    """image: (3, size, size) float in [-1, 1]; landmarks: (68, 2) pixels of the crop;
    matrix: (2, 3) affine mapping source-image pixels to crop pixels."""

    image: torch.Tensor
    landmarks: np.ndarray
    matrix: np.ndarray


def ffhq_square(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The oriented square that the FFHQ data set crops from iBUG-68 ``landmarks`` (68, 2) pixels.

    Centre ``c`` = the eyes' midpoint moved 10 % towards the mouth; half-axes ``x`` (towards the subject's
    left, image right) and ``y`` = x rotated 90 degrees; the half-size is the larger of twice the
    eye-to-eye and 1.8 x the eye-to-mouth distance (Karras et al. 2019, FFHQ preparation).
    Returns (c, x, y), each (2,) pixels.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2) or not np.isfinite(lm).all():
        raise ValueError(f"landmarks must be finite (68, 2) pixels, got shape {lm.shape}")
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg, eye_to_eye = (eye_l + eye_r) / 2, eye_r - eye_l
    mouth_avg = (lm[48] + lm[54]) / 2
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.array([-x[1], x[0]])
    return eye_avg + eye_to_mouth * 0.1, x, y


def square_to_crop_matrix(c: np.ndarray, x: np.ndarray, y: np.ndarray, size: int) -> np.ndarray:
    """(2, 3) affine taking source pixels to ``size`` x ``size`` crop pixels, mapping the square's corners
    ``c - x - y`` and ``c + x + y`` to the crop's outer pixel edges."""
    basis = np.stack([x, y], 1) * 2 / size  # crop unit step -> source pixels
    inv = np.linalg.inv(basis)
    origin = c - x - y + (x + y) / size     # source position of crop pixel (0, 0)'s centre
    return np.concatenate([inv, (-inv @ origin)[:, None]], 1)


def warp_affine(image: torch.Tensor, matrix: np.ndarray, size: int) -> torch.Tensor:
    """Resample ``image`` (3, H, W) float into a ``size`` x ``size`` crop with the (2, 3) source->crop affine
    ``matrix``: bilinear, border pixels repeated outside the photo, area-averaged first when the crop
    shrinks the face by more than 2x. Returns (3, size, size)."""
    _, h, w = image.shape
    a = np.concatenate([matrix, [[0, 0, 1]]])
    inv = np.linalg.inv(a)[:2]  # crop pixel -> source pixel
    shrink = int(np.floor(np.sqrt(abs(np.linalg.det(inv[:, :2])))))
    if shrink >= 2:  # prefilter: average-pool the photo, then map into the pooled pixel grid
        image = F.avg_pool2d(image[None], shrink, ceil_mode=True)[0]
        pool = np.array([[1 / shrink, 0, (1 / shrink - 1) / 2], [0, 1 / shrink, (1 / shrink - 1) / 2], [0, 0, 1]])
        inv = (pool @ np.concatenate([inv, [[0, 0, 1]]]))[:2]
        h, w = image.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    pts = torch.stack([xs, ys, torch.ones_like(xs)], -1) @ torch.from_numpy(inv).T  # (size, size, 2)
    grid = torch.stack([(pts[..., 0] + 0.5) / w * 2 - 1, (pts[..., 1] + 0.5) / h * 2 - 1], -1)
    return F.grid_sample(image[None], grid[None].to(image.dtype), mode="bilinear", padding_mode="border",
                         align_corners=False)[0]


# The synthetic world's framing relative to FFHQ's square, measured on 200 held-out 64 px world images with
# their true landmarks: the FFHQ square spans 0.593 of the image side (median; 0.48-0.71 for 80 %), and its
# centre sits at 0.495 across and 0.441 down (sd 0.05).
WORLD_SCALE = 1 / 0.593
WORLD_DROP = 0.5 - 0.441


def world_square(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The square that frames a face from its 68 ``landmarks`` as the synthetic world frames its faces (head
    centred a little above the middle at about 60 % of the side, with hair, neck and shoulders): FFHQ's
    square enlarged by :data:`WORLD_SCALE`, its centre moved down by :data:`WORLD_DROP` of the side.
    Returns (c, x, y) as :func:`ffhq_square`."""
    c, x, y = ffhq_square(landmarks)
    x, y = x * WORLD_SCALE, y * WORLD_SCALE
    return c + y * (2 * WORLD_DROP), x, y


SQUARES = {"ffhq": ffhq_square, "world": world_square}


def ffhq_crop(image: np.ndarray, landmarks: np.ndarray, size: int, framing: str = "ffhq") -> FaceCrop:
    """Aligned ``size`` x ``size`` crop of ``image`` (H, W, 3) uint8 RGB from its 68 ``landmarks``; framing
    'ffhq' (FFHQ's square) or 'world' (:func:`world_square`)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    if framing not in SQUARES:
        raise ValueError(f"unknown framing {framing!r}; choose one of {', '.join(SQUARES)}")
    matrix = square_to_crop_matrix(*SQUARES[framing](landmarks), size)
    src = torch.tensor(image).permute(2, 0, 1).float() / 127.5 - 1  # a copy: photos may be read-only arrays
    crop = warp_affine(src, matrix, size)
    lm = np.asarray(landmarks, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]
    return FaceCrop(image=crop, landmarks=lm, matrix=matrix)


def face_region_weights(landmarks: torch.Tensor, size: tuple[int, int], background: float = 0.0,
                        feather: int = 3) -> torch.Tensor:
    """Per-pixel loss weights (B, 1, H, W) in [0, 1]: 1 on the face (every non-background class of
    morph3d's ``landmark_segmentation``), ``background`` elsewhere, blurred over ``feather`` pixels.

    landmarks: (B, 68, 2) pixels of the image the weights are for; size: (H, W).
    """
    labels, _ = landmark_segmentation(torch.as_tensor(landmarks, dtype=torch.float32), size)
    face = (labels != BACKGROUND).float()
    if feather > 0:
        k = 2 * feather + 1
        face = F.avg_pool2d(F.pad(face, [feather] * 4, mode="replicate"), k, stride=1)
    return background + (1 - background) * face
