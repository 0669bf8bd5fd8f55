"""PAS preprocessing (Sec. 3.1 of "Pose editing by pixel attention sampling"): align the input face's fully
exposed side to the target pose, and the landmark segmentation maps that guide PAS training.

Landmarks are iBUG-68. "3D landmarks" here are ``(B, 68, 3)``: x, y in pixels (0-based, x right, y down, as
in ``docs/conventions.md``) and z, the depth towards the camera relative to the face's mean depth, in the
same pixel units (:func:`landmarks_3d`). The "projected" landmarks are their x, y.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from morph3d.model import FaceParams, MorphableModel
from morph3d.ops import pixel_sample
from morph3d.render import landmark_segmentation

# iBUG-68 halves of the face, named by the subject's side (the subject's right is the image left when frontal);
# the midline points (chin, nose bridge and tip, lip centres) belong to both.
MIDLINE = (8, 27, 28, 29, 30, 33, 51, 57, 62, 66)
RIGHT_SIDE = tuple(range(0, 8)) + tuple(range(17, 22)) + tuple(range(36, 42)) + (31, 32, 48, 49, 50, 58, 59, 60, 61,
                                                                                 67) + MIDLINE
LEFT_SIDE = tuple(range(9, 17)) + tuple(range(22, 27)) + tuple(range(42, 48)) + (34, 35, 52, 53, 54, 55, 56, 63, 64,
                                                                                 65) + MIDLINE
SIDES = (RIGHT_SIDE, LEFT_SIDE)
SIDE_NAMES = ("right", "left")


@dataclass
class PasInputs:
    """What PAS consumes for B (input I, target J) pairs, at the target's image size (H, W).

    image_tf: (B, 3, H, W) I aligned by the similarity ``matrix``, in [-1, 1].
    landmarks_tf: (B, 68, 2) pixels, I's 2D landmarks moved by ``matrix``.
    seg_tf: (B, C, H, W) one-hot landmark segmentation of I_tf; seg_target: (B, C, H, W) that of J
    (C = 10 classes of ``morph3d.render.LANDMARK_CLASSES``); seg_source: (B, C, H_I, W_I) that of I itself
    (the reconstruction path).
    matrix: (B, 2, 3) similarity taking I's pixels to I_tf's pixels; side: (B,) long, 0 = the subject's right
    side was aligned, 1 = the left (:data:`SIDE_NAMES`); image: (B, 3, H_I, W_I) I itself.
    """

    image_tf: torch.Tensor
    landmarks_tf: torch.Tensor
    seg_tf: torch.Tensor
    seg_target: torch.Tensor
    seg_source: torch.Tensor
    matrix: torch.Tensor
    side: torch.Tensor
    image: torch.Tensor

    def unaligned_grid(self) -> torch.Tensor:
        """(B, H_I, W_I, 2) sampling map of I_tf that gives I back (reads each pixel p at ``matrix p``; bilinear, so
        ``pixel_sample(image_tf, grid)`` equals I up to resampling blur)."""
        return transform_grid(self.matrix, self.image_tf.shape[-2:], self.image.shape[-2:]).to(self.image_tf)

    def source_grid(self, grid: torch.Tensor) -> torch.Tensor:
        """A sampling map of I_tf (B, Ho, Wo, 2) in [-1, 1] -> the map of I that reads the same points (through the
        inverse similarity), so I can be sampled once instead of twice. Differentiable in ``grid``."""
        inv = invert_similarity(self.matrix).to(grid)
        (h, w), (hi, wi) = self.image_tf.shape[-2:], self.image.shape[-2:]
        pix = torch.stack([((grid[..., 0] + 1) * w - 1) / 2, ((grid[..., 1] + 1) * h - 1) / 2], -1)
        src = pix @ inv[:, None, :, :2].transpose(-1, -2) + inv[:, None, None, :, 2]
        return torch.stack([(src[..., 0] + 0.5) / wi * 2 - 1, (src[..., 1] + 0.5) / hi * 2 - 1], -1)


def _check_landmarks(lm: torch.Tensor, name: str, dims=(2, 3)) -> None:
    if not isinstance(lm, torch.Tensor) or lm.dim() != 3 or lm.shape[1] != 68 or lm.shape[2] not in dims:
        shape = tuple(lm.shape) if isinstance(lm, torch.Tensor) else type(lm).__name__
        raise ValueError(f"{name} must be (B, 68, {' or '.join(map(str, dims))}) iBUG landmarks, got {shape}")
    if lm.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch: pass at least one face")
    if not torch.isfinite(lm[..., :2]).all():
        raise ValueError(f"{name} has NaN or Inf coordinates; fit or detect the face again")


def side_box_areas(landmarks: torch.Tensor) -> torch.Tensor:
    """landmarks: (B, 68, >=2) pixels -> (B, 2) areas (pixels^2) of the bounding boxes of the projected landmarks of
    the subject's right and left face halves (midline included)."""
    _check_landmarks(landmarks, "landmarks")
    areas = []
    for side in SIDES:
        pts = landmarks[:, list(side), :2]
        extent = pts.amax(1) - pts.amin(1)
        areas.append(extent[:, 0] * extent[:, 1])
    return torch.stack(areas, 1)


def exposed_side(landmarks: torch.Tensor) -> torch.Tensor:
    """(B, 68, >=2) -> (B,) long: the fully exposed half (0 right, 1 left), the one with the larger landmark box."""
    return side_box_areas(landmarks).argmax(1)


def similarity_transform(src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Least-squares 2D similarity (scale, rotation, translation; no reflection) taking ``src`` to ``dst``.

    src, dst: (B, N, 2) corresponding points, N >= 2; weights: optional (B, N) >= 0 per point (0 drops it).
    Returns (B, 2, 3) ``[[a, -b, tx], [b, a, ty]]`` minimising ``sum_n w_n |M [src_n; 1] - dst_n|^2``.
    """
    if src.shape != dst.shape or src.dim() != 3 or src.shape[-1] != 2 or src.shape[1] < 2:
        raise ValueError(f"src {tuple(src.shape)} and dst {tuple(dst.shape)} must both be (B, N >= 2, 2)")
    src, dst = src.double(), dst.double()
    w = torch.ones(src.shape[:2], dtype=src.dtype, device=src.device) if weights is None else weights.to(src)
    total = w.sum(1, keepdim=True)
    if (total <= 0).any():
        raise ValueError("similarity_transform: every face needs points with positive weight")
    ms = (w[..., None] * src).sum(1) / total
    md = (w[..., None] * dst).sum(1) / total
    s, d = src - ms[:, None], dst - md[:, None]
    norm = (w * (s ** 2).sum(-1)).sum(1)
    if (norm <= 1e-12).any():
        raise ValueError("similarity_transform: the source points coincide; give landmarks that span the face")
    a = (w * (s[..., 0] * d[..., 0] + s[..., 1] * d[..., 1])).sum(1) / norm
    b = (w * (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0])).sum(1) / norm
    rot = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], 1)  # (B, 2, 2)
    t = md - (rot @ ms[..., None])[..., 0]
    return torch.cat([rot, t[..., None]], 2)


def apply_transform(matrix: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """matrix: (B, 2, 3); points: (B, N, 2) -> (B, N, 2) ``A p + t`` in the points' dtype."""
    m = matrix.to(points.dtype)
    return points @ m[:, :, :2].transpose(1, 2) + m[:, None, :, 2]


def transform_grid(matrix: torch.Tensor, input_size: tuple[int, int], output_size: tuple[int, int]) -> torch.Tensor:
    """The sampling map (B, Ho, Wo, 2) in [-1, 1] (align_corners=False, ``pixel_sample``'s convention) that reads
    each output pixel p at input pixel ``matrix p``: matrix (B, 2, 3) output pixels -> input pixels."""
    h, w = input_size
    ho, wo = output_size
    ys, xs = torch.meshgrid(torch.arange(ho, dtype=torch.float64), torch.arange(wo, dtype=torch.float64),
                            indexing="ij")
    pts = torch.stack([xs, ys], -1).reshape(1, -1, 2).to(matrix.device).expand(matrix.shape[0], -1, -1)
    src = apply_transform(matrix.double(), pts).reshape(-1, ho, wo, 2)
    return torch.stack([(src[..., 0] + 0.5) / w * 2 - 1, (src[..., 1] + 0.5) / h * 2 - 1], -1)


def invert_similarity(matrix: torch.Tensor) -> torch.Tensor:
    """(B, 2, 3) -> (B, 2, 3) the inverse pixel transform, in float64."""
    b = matrix.shape[0]
    full = torch.cat([matrix.double(), matrix.new_tensor([0.0, 0.0, 1.0]).double().expand(b, 1, 3)], 1)
    return torch.linalg.inv(full)[:, :2]


def warp_similarity(images: torch.Tensor, matrix: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Resample images (B, C, H, W) by the pixel transform ``matrix`` (B, 2, 3) (input pixels -> output pixels)
    into (B, C, *size) (default (H, W)): bilinear, edge pixels repeated outside, differentiable (pixel_sample)."""
    grid = transform_grid(invert_similarity(matrix), images.shape[-2:], size or images.shape[-2:])
    return pixel_sample(images, grid.to(images.dtype), padding="border")


def segmentation(landmarks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 68, >=2) pixels -> (B, 10, H, W) one-hot landmark segmentation (morph3d's ``landmark_segmentation``)."""
    _, onehot = landmark_segmentation(landmarks[..., :2].float().contiguous(), size)
    return onehot


def preprocess(image: torch.Tensor, landmarks_source: torch.Tensor, landmarks_target: torch.Tensor,
               target_size: tuple[int, int] | None = None, landmarks_source_2d: torch.Tensor | None = None
               ) -> PasInputs:
    """Sec. 3.1: align I's fully exposed side to the target pose J.

    image: (B, 3, H, W) I in [-1, 1]; landmarks_source: (B, 68, 3) I's 3D landmarks (or (B, 68, 2) projected);
    landmarks_target: (B, 68, 2 or 3) J's landmarks, pixels of the target image of ``target_size`` (default
    I's size). landmarks_source_2d: I's 2D (detected) landmarks, default the projected 3D ones.
    The exposed half of I (larger projected landmark box) picks the corresponding landmarks; their least-squares
    similarity to J's gives I_tf. The 3D landmarks give these correspondences even where J hides that half.
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[1] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be a (B, 3, H, W) batch in [-1, 1], got {shape}")
    if image.shape[0] == 0:
        raise ValueError("image is an empty batch: pass at least one face")
    if not torch.isfinite(image).all():
        raise ValueError("image contains NaN or Inf values")
    _check_landmarks(landmarks_source, "landmarks_source")
    _check_landmarks(landmarks_target, "landmarks_target")
    lm2d = landmarks_source[..., :2] if landmarks_source_2d is None else landmarks_source_2d
    _check_landmarks(lm2d, "landmarks_source_2d", (2,))
    b = image.shape[0]
    if landmarks_source.shape[0] != b or landmarks_target.shape[0] != b or lm2d.shape[0] != b:
        raise ValueError(f"{b} images but {landmarks_source.shape[0]} source and {landmarks_target.shape[0]} "
                         "target landmark sets: give one of each per image")
    h, w = image.shape[-2:]
    size = tuple(target_size or (h, w))
    side = exposed_side(landmarks_source)
    members = torch.zeros(len(SIDES), 68, dtype=torch.float64, device=image.device)
    for i, half in enumerate(SIDES):
        members[i, list(half)] = 1.0
    weights = members[side]
    matrix = similarity_transform(landmarks_source[..., :2], landmarks_target[..., :2], weights)
    image_tf = warp_similarity(image, matrix, size)
    landmarks_tf = apply_transform(matrix, lm2d.double()).to(image.dtype)
    return PasInputs(image_tf=image_tf, landmarks_tf=landmarks_tf, seg_tf=segmentation(landmarks_tf, size),
                     seg_target=segmentation(landmarks_target, size), seg_source=segmentation(lm2d, (h, w)),
                     matrix=matrix.to(image.dtype), side=side, image=image)


def landmarks_3d(model: MorphableModel, params: FaceParams) -> torch.Tensor:
    """The faces' 3D landmarks (B, 68, 3): projected x, y pixels and z = depth towards the camera relative to the
    landmarks' mean depth, scaled to pixels at that depth (``focal / distance``)."""
    out = model(params)
    cam = out.landmarks_cam
    depth = -cam[..., 2].nanmean(1, keepdim=True)  # mm in front of the camera
    focal = params.camera.focal.to(cam)[:, None]
    scale = focal if params.camera.kind == "orthographic" else focal / depth
    z = (cam[..., 2] + depth) * scale
    return torch.cat([out.landmarks_2d, z[..., None]], -1)


def posed_landmarks(model: MorphableModel, params: FaceParams, yaw_deg: float = 0.0, pitch_deg: float = 0.0,
                    roll_deg: float = 0.0, absolute: bool = False) -> torch.Tensor:
    """3D landmarks (B, 68, 3) of the faces ``params`` turned to a new pose: the Euler angles (degrees) are added to
    the fitted ones (``absolute``: replace them). The result is moved so its 2D landmark centre stays where the
    input's was (a pose change, not a move of the head in the picture)."""
    delta = torch.tensor([math.radians(yaw_deg), math.radians(pitch_deg), math.radians(roll_deg)])
    rot = params.rotation
    new_rot = delta.to(rot).expand_as(rot) if absolute else rot + delta.to(rot)
    turned = FaceParams(identity=params.identity, expression=params.expression, texture=params.texture,
                        rotation=new_rot, translation=params.translation, lighting=params.lighting,
                        camera=params.camera, articulation=params.articulation)
    before, after = landmarks_3d(model, params), landmarks_3d(model, turned)
    shift = before[..., :2].mean(1, keepdim=True) - after[..., :2].mean(1, keepdim=True)
    return torch.cat([after[..., :2] + shift, after[..., 2:]], -1)


def flow_warp(model: MorphableModel, images: torch.Tensor, params_source: FaceParams,
              params_target: FaceParams) -> torch.Tensor:
    """The plain 3DMM warp baseline: images (B, 3, H, W) of the faces ``params_source`` warped to ``params_target``
    by morph3d's ``render_flow`` + ``warp_by_flow``; pixels without a valid flow (background, parts hidden in the
    source) keep the source image. Returns (B, 3, H, W)."""
    from morph3d.render import render_flow, warp_by_flow
    with torch.no_grad():
        flow, valid = render_flow(model, params_target, params_source)
    warped = warp_by_flow(images, flow.to(images), valid)
    return torch.where(valid.to(images.device), warped, images)


def fit_photo(model: MorphableModel, image: np.ndarray, landmarks_2d: np.ndarray, regressor=None) -> FaceParams:
    """FaceParams (1 face) of a photo (H, W, 3) uint8 RGB from its 68 2D landmarks (pixels), by morph3d's
    image -> 3DMM regressor (``regressor``: a ``morph3d.regress.Regressor``, default the bundled one)."""
    from morph3d.regress import load_regressor
    reg = regressor or load_regressor(model)
    return reg.predict(image, np.asarray(landmarks_2d, dtype=np.float64))


__all__ = ["LEFT_SIDE", "MIDLINE", "PasInputs", "RIGHT_SIDE", "SIDES", "SIDE_NAMES", "apply_transform",
           "exposed_side", "invert_similarity", "fit_photo", "flow_warp", "landmarks_3d", "posed_landmarks", "preprocess", "segmentation",
           "side_box_areas", "similarity_transform", "transform_grid",
           "warp_similarity"]
