"""What an image regressor predicts, and how a face is framed for it.

Framing: the network sees a square crop around the face's 68 landmarks (``CROP_MARGIN`` x the longer
side of their bounding box, centred on it), resampled to ``input_size`` px. The crop is a pinhole image
of its own (``morph3d.fitting.crop.Crop.camera``), so parameters are predicted in the crop's camera.

Target vector (B, D), in order (``target_layout``):
  identity (Ki), expression (Ke), texture (Ka): the model's coefficients;
  rotation (3): Euler [yaw, pitch, roll], radians;
  position (3): the model origin in the crop: ``u / size - 0.5``, ``v / size - 0.5`` (px) and
    ``log(s * SCALE_REF_MM / size)`` with ``s = f / depth`` its scale in px per mm; the focal length
    does not enter, so any camera (focal) decodes it into a translation that projects the origin to the
    same pixel at the same scale;
  lighting (27): SH radiance coefficients.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..model.camera import Camera
from ..model.layout import model_dims
from ..model.lighting import NUM_LIGHTING
from ..model.params import FaceParams

CROP_MARGIN = 1.4      # crop side / longer side of the landmarks' bounding box
SCALE_REF_MM = 100.0   # the scale target is log(px per mm x SCALE_REF_MM / crop side)
BLOCKS = ("identity", "expression", "texture", "rotation", "position", "lighting")


def target_layout(model) -> dict[str, slice]:
    """Slices of the target vector by block name for ``model`` (see the module docstring)."""
    dims = model_dims(model)
    sizes = {"identity": dims["identity"], "expression": dims["expression"], "texture": dims["texture"],
             "rotation": 3, "position": 3, "lighting": NUM_LIGHTING}
    out, i = {}, 0
    for name in BLOCKS:
        out[name] = slice(i, i + sizes[name])
        i += sizes[name]
    return out


def target_dim(model) -> int:
    return sum(s.stop - s.start for s in target_layout(model).values())


def crop_boxes(landmarks: torch.Tensor, margin: float = CROP_MARGIN) -> tuple[torch.Tensor, torch.Tensor]:
    """landmarks: (B, 68, 2) px (0-based; NaN rows ignored) -> (corner (B, 2), side (B,)) of the square
    crops in pixel-edge coordinates (the top-left corner of pixel (0, 0) is (0, 0))."""
    lm = landmarks.detach()
    if lm.ndim != 3 or lm.shape[-1] != 2:
        raise ValueError(f"landmarks must be (B, 68, 2) pixels, got {tuple(lm.shape)}")
    finite = torch.isfinite(lm).all(-1, keepdim=True)
    if not finite.any(1).all():
        raise ValueError("a face has no finite landmarks to frame the crop; give landmarks or a face box")
    big = torch.finfo(lm.dtype).max
    lo = torch.where(finite, lm, torch.full_like(lm, big)).amin(1)
    hi = torch.where(finite, lm, torch.full_like(lm, -big)).amax(1)
    side = ((hi - lo).amax(-1) * margin).clamp_min(1.0)
    return (lo + hi) / 2 + 0.5 - side[:, None] / 2, side


def crop_cameras(camera: Camera, corner: torch.Tensor, side: torch.Tensor, size: int) -> Camera:
    """The cameras of square crops (corner (B, 2) pixel-edge coordinates, side (B,) px) of ``camera``'s
    images, resampled to ``size`` px (``Camera.rescaled``'s rule, per face)."""
    scale = size / side
    principal = (camera.principal + 0.5 - corner) * scale[:, None] - 0.5
    return Camera(camera.focal * scale, principal, (size, size), camera.kind)


def to_crop_pixels(points: torch.Tensor, corner: torch.Tensor, side: torch.Tensor, size: int) -> torch.Tensor:
    """Image pixels (B, N, 2) -> pixels of the crops (corner, side as in :func:`crop_cameras`)."""
    return (points + 0.5 - corner[:, None]) * (size / side)[:, None, None] - 0.5


def crop_images(images: torch.Tensor, corner: torch.Tensor, side: torch.Tensor, size: int) -> torch.Tensor:
    """images: (B, C, H, W) -> the square crops (B, C, size, size) (corner (B, 2) pixel-edge coordinates,
    side (B,) px), bilinear, edge pixels repeated outside the image. For crops near the source's
    resolution (training renders); photos shrink with ``morph3d.fitting.crop.Crop.image`` (area-averaged)."""
    b, _, h, w = images.shape
    steps = (torch.arange(size, device=images.device, dtype=images.dtype) + 0.5) / size  # (size,)
    x = corner[:, 0:1] + steps[None] * side[:, None]  # (B, size) edge coordinates
    y = corner[:, 1:2] + steps[None] * side[:, None]
    gx = (2 * x / w - 1)[:, None, :].expand(b, size, size)
    gy = (2 * y / h - 1)[:, :, None].expand(b, size, size)
    grid = torch.stack([gx, gy], -1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def encode_targets(params: FaceParams, model) -> torch.Tensor:
    """FaceParams seen by crop cameras (``params.camera``, square, perspective) -> target vectors (B, D)."""
    cam = params.camera
    size = float(cam.image_size[1])
    t = params.translation
    depth = (-t[:, 2]).clamp_min(1e-3)
    s = cam.focal / depth
    u = cam.principal[:, 0] + s * t[:, 0]
    v = cam.principal[:, 1] - s * t[:, 1]
    position = torch.stack([u / size - 0.5, v / size - 0.5, torch.log(s * SCALE_REF_MM / size)], -1)
    dims = model_dims(model)
    ident = _width(params.identity, dims["identity"])
    expr = _width(params.expression, dims["expression"])
    tex = _width(params.texture, dims["texture"])
    return torch.cat([ident, expr, tex, params.rotation, position, params.lighting], 1)


def decode_targets(vectors: torch.Tensor, model, camera: Camera, clamp: bool = False) -> FaceParams:
    """Target vectors (B, D) -> FaceParams viewed by ``camera`` (B crop cameras, or any cameras of the
    same images: the position is focal-free). clamp: keep blendshape weights in [0, 1] (inference)."""
    lay = target_layout(model)
    if vectors.ndim != 2 or vectors.shape[1] != target_dim(model):
        raise ValueError(f"expected (B, {target_dim(model)}) target vectors for model '{model.name}', "
                         f"got {tuple(vectors.shape)}")
    size = float(camera.image_size[1])
    pos = vectors[:, lay["position"]]
    s = torch.exp(pos[:, 2]) * size / SCALE_REF_MM
    u, v = (pos[:, 0] + 0.5) * size, (pos[:, 1] + 0.5) * size
    translation = torch.stack([(u - camera.principal[:, 0]) / s, -(v - camera.principal[:, 1]) / s,
                               -camera.focal / s], -1)
    expr = vectors[:, lay["expression"]]
    if clamp and model.expression_kind == "blendshapes":
        expr = expr.clamp(0.0, 1.0)
    b = vectors.shape[0]
    art = (torch.zeros(b, model.num_joints, 3, device=vectors.device, dtype=vectors.dtype)
           if model.num_joints else None)
    return FaceParams(identity=vectors[:, lay["identity"]], expression=expr, texture=vectors[:, lay["texture"]],
                      rotation=vectors[:, lay["rotation"]], translation=translation,
                      lighting=vectors[:, lay["lighting"]], camera=camera, articulation=art)


def _width(t: torch.Tensor, k: int) -> torch.Tensor:
    n = t.shape[1]
    return t[:, :k] if n >= k else torch.cat([t, t.new_zeros(t.shape[0], k - n)], 1)


__all__ = ["BLOCKS", "CROP_MARGIN", "SCALE_REF_MM", "crop_boxes", "crop_cameras", "crop_images", "decode_targets",
           "encode_targets", "target_dim", "target_layout", "to_crop_pixels"]
