"""3DMM glue for StyleRig and PIE: parameter subsets, renderings of parameters and the image-space loss.

A *control mode* names the subset tau of the 3DMM parameters a RigNet edits: ``pose`` (rotation, Euler
[yaw, pitch, roll] radians), ``expression`` (the model's coefficients) or ``lighting`` (27 SH
coefficients). ``theta(v)`` of an image comes from an encoder (:class:`gan_bridge.face.shape.RegressorEncoder`,
whose :class:`FaceCoefficients` carry every decoded parameter in ``params``).

:func:`render_loss` is StyleRig's / PIE's l(I', theta) (PIE Eq. 10): a photometric term over the
rendered face region (morph3d's region segmentation, the mouth interior left out) plus a landmark
term between the image's landmarks and the model's projected ones.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from morph3d.model import FaceParams
from morph3d.render import RenderSettings, FaceRenderer, linear_to_srgb, region_class_names, region_segmentation

MODES = ("pose", "expression", "lighting")
MODE_FIELD = {"pose": "rotation", "expression": "expression", "lighting": "lighting"}
EXCLUDED_REGIONS = ("mouth_interior",)
LANDMARK_REF_PX = 256.0  # landmark errors are measured as if the image were this many pixels wide


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown control mode {mode!r}; use one of {', '.join(MODES)}")
    return mode


def tau(params: FaceParams, mode: str) -> torch.Tensor:
    """theta^tau: the (B, P) block of ``params`` that ``mode`` edits (rotation (B, 3) radians, expression
    (B, Ke) or lighting (B, 27))."""
    return getattr(params, MODE_FIELD[check_mode(mode)])


def with_tau(params: FaceParams, mode: str, value: torch.Tensor) -> FaceParams:
    """``params`` with its tau block replaced by ``value`` (B, P)."""
    field = MODE_FIELD[check_mode(mode)]
    current = getattr(params, field)
    if value.shape != current.shape:
        raise ValueError(f"{mode} parameters must be {tuple(current.shape)}, got {tuple(value.shape)}")
    return replace(params, **{field: value})


def mix(rest: FaceParams, edited: FaceParams, mode: str) -> FaceParams:
    """[theta_rest^tau-bar, theta_edited^tau] (PIE Eq. 4): tau from ``edited``, everything else from ``rest``."""
    return with_tau(rest, mode, tau(edited, mode))


class RigFace(nn.Module):
    """An encoder (images -> FaceCoefficients with ``params``) and a renderer of its morphable model.

    encoder: e.g. :func:`gan_bridge.face.shape.load_encoder`; model: the encoder's morphable model
    (default ``encoder.model``). Images are (B, 3, H, W) in [-1, 1] (sRGB); renders are converted to match.
    """

    def __init__(self, encoder, model=None):
        super().__init__()
        self.encoder = encoder
        model = model if model is not None else getattr(encoder, "model", None)
        if model is None:
            raise ValueError("RigFace needs the encoder's morphable model; pass model=")
        object.__setattr__(self, "model", model)  # shared with the encoder, not a submodule
        self.renderer = FaceRenderer(model, RenderSettings(outputs=("image", "mask", "landmarks")))
        names = region_class_names(model)
        keep = [i for i, n in enumerate(names) if i > 0 and n not in EXCLUDED_REGIONS]
        self.register_buffer("face_classes", torch.tensor(keep, dtype=torch.long), persistent=False)

    def estimate(self, images: torch.Tensor):
        """theta of ``images`` (B, 3, H, W) in [-1, 1] -> FaceCoefficients whose ``params`` are set."""
        coeffs = self.encoder(images)
        if coeffs.params is None:
            raise ValueError("the encoder gives no full 3DMM parameters (FaceCoefficients.params); "
                             "use gan_bridge.face.shape.load_encoder")
        return coeffs

    def render(self, params: FaceParams) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> image (B, 3, H, W) in [-1, 1], face weights (B, 1, H, W) in [0, 1] (rendered face regions,
        antialiased coverage) and landmarks (B, 68, 2) px (NaN where the model has none)."""
        out = self.renderer(params)
        labels, _ = region_segmentation(self.model, out.rast)
        region = torch.isin(labels, self.face_classes.to(labels.device)).to(out.mask.dtype)
        image = linear_to_srgb(out.image.clamp(0, 1)) * 2 - 1
        return image, region * out.mask, out.landmarks_2d


def render_loss(face: RigFace, images: torch.Tensor, landmarks: torch.Tensor, params: FaceParams,
                photometric_weight: float, landmark_weight: float) -> torch.Tensor:
    """l(I', theta) per image, (B,): ``photometric_weight`` x the mean over face pixels of the squared colour
    error in 0..255 units + ``landmark_weight`` x the mean squared landmark distance in pixels of a
    ``LANDMARK_REF_PX``-wide image.

    images: (B, 3, H, W) in [-1, 1]; landmarks: (B, 68, 2) px of those images (NaN rows ignored);
    params: theta, in the images' camera."""
    if images.shape[0] != params.batch_size or landmarks.shape[0] != params.batch_size:
        raise ValueError(f"render_loss: {images.shape[0]} images, {landmarks.shape[0]} landmark sets and "
                         f"{params.batch_size} parameter sets must match")
    rendered, weights, lm = face.render(params)
    sq = ((rendered - images) * 127.5).square().sum(1, keepdim=True)
    photo = (weights * sq).sum((1, 2, 3)) / weights.sum((1, 2, 3)).clamp_min(1.0)
    ok = torch.isfinite(lm).all(-1) & torch.isfinite(landmarks).all(-1)
    scale = LANDMARK_REF_PX / images.shape[-1]
    d = ((torch.nan_to_num(lm) - torch.nan_to_num(landmarks)) * scale).square().sum(-1)
    lm_term = (d * ok).sum(1) / ok.sum(1).clamp_min(1)
    return photometric_weight * photo + landmark_weight * lm_term


__all__ = ["EXCLUDED_REGIONS", "LANDMARK_REF_PX", "MODES", "MODE_FIELD", "RigFace", "check_mode", "mix",
           "render_loss", "tau", "with_tau"]
