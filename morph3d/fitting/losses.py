"""The loss terms of fitting and training, in one place: functions over tensors plus thin modules.

Every function returns one value per face, shape ``(B,)``; callers weight and sum the terms.

- photometric: :func:`photometric_loss` / :class:`PhotometricLoss`, a masked per-pixel distance
  between a render and a photo (``'l21'``: the L2 norm of the RGB difference, summed over pixels;
  ``'l2'``: its square; ``'l1'``; ``'huber'``: quadratic below ``delta``, L21 above).
- landmarks: :func:`landmark_loss`, ``sum_i w_i rho(|M_i (p_i - x_i)| * scale)`` with a robust
  ``rho`` (:func:`robust_loss`) and optional per-landmark 2 x 2 residual transforms ``M`` (the
  sliding jaw contour's :func:`contour_metric`); :class:`LandmarkLoss` renews the jaw contour
  correspondences of a model (``contour.py``) at every call.
- priors: :func:`tikhonov` and :class:`PriorWeights` / :class:`PriorLoss`. morph3d's identity and
  albedo coefficients are in units of the model's standard deviations, so ``|alpha|^2`` is the
  Tikhonov term weighted by the stds (the Gaussian prior of the PCA model); blendshape weights use
  ``|beta / blendshape_sigma|^2``.
- perceptual: :class:`PerceptualLoss`, a slot for a feature network the caller supplies (VGG, face
  identity networks ...), compared by cosine or channel-normalised L2 distance.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from ..model.face_definitions import NUM_LANDMARKS
from .contour import ContourSet, sliding_landmarks

ROBUST_LOSSES = ("huber", "geman_mcclure", "none")
PHOTO_LOSSES = ("l21", "l2", "l1", "huber")
PERCEPTUAL_DISTANCES = ("cosine", "l2")


def robust_loss(e: torch.Tensor, kind: str, k: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised point errors e (>= 0) -> (rho(e), IRLS weight rho'(e) / 2e), with rho(e) = e^2 near 0.

    kind: 'huber' (quadratic up to k, then linear), 'geman_mcclure' (``e^2 / (1 + (e / k)^2)``) or 'none'."""
    if kind == "huber":
        return torch.where(e <= k, e * e, 2 * k * e - k * k), torch.where(e <= k, torch.ones_like(e), k / e)
    if kind == "geman_mcclure":
        q = 1 + (e / k) ** 2
        return e * e / q, 1 / (q * q)
    if kind == "none":
        return e * e, torch.ones_like(e)
    raise ValueError(f"robust must be one of {ROBUST_LOSSES}, got {kind!r}")


# ---- photometric ---------------------------------------------------------------------------
def photometric_loss(render: torch.Tensor, photo: torch.Tensor, weight: torch.Tensor, kind: str = "l21",
                     delta: float = 0.1) -> torch.Tensor:
    """Weighted mean per-pixel distance, (B,).

    render, photo: (B, C, H, W) (linear RGB for the fits); weight: (B, 1, H, W) >= 0, the face mask
    (soft weights allowed); the sum of the weights is floored at 1 pixel. kind: one of
    :data:`PHOTO_LOSSES`; delta: the Huber threshold, in the images' units.
    """
    if kind not in PHOTO_LOSSES:
        raise ValueError(f"photometric loss must be one of {PHOTO_LOSSES}, got {kind!r}")
    if render.shape != photo.shape or weight.shape[1] != 1 or weight.shape[2:] != render.shape[2:]:
        raise ValueError(f"render {tuple(render.shape)}, photo {tuple(photo.shape)} and weight "
                         f"{tuple(weight.shape)} must be (B, C, H, W), (B, C, H, W) and (B, 1, H, W)")
    diff = render - photo
    if kind == "l1":
        d = diff.abs().sum(1, keepdim=True)
    elif kind == "l2":
        d = diff.square().sum(1, keepdim=True)
    else:
        d = diff.square().sum(1, keepdim=True).add(1e-8).sqrt()
        if kind == "huber":
            d = torch.where(d <= delta, 0.5 * d * d / delta, d - 0.5 * delta)
    return (weight * d).sum((1, 2, 3)) / weight.sum((1, 2, 3)).clamp_min(1.0)


class PhotometricLoss(nn.Module):
    """:func:`photometric_loss` with its settings: ``forward(render, photo, weight) -> (B,)``."""

    def __init__(self, kind: str = "l21", delta: float = 0.1):
        super().__init__()
        if kind not in PHOTO_LOSSES:
            raise ValueError(f"photometric loss must be one of {PHOTO_LOSSES}, got {kind!r}")
        self.kind, self.delta = kind, delta

    def forward(self, render, photo, weight):
        return photometric_loss(render, photo, weight, self.kind, self.delta)


# ---- landmarks -----------------------------------------------------------------------------
def face_size(points: torch.Tensor, used: torch.Tensor) -> torch.Tensor:
    """sqrt of the area of the bounding box of the used points, px (at least 1): (B, L, 2), (B, L) -> (B,)."""
    big = torch.tensor(float("inf"), dtype=points.dtype, device=points.device)
    lo = torch.where(used[..., None], points, big).amin(1)
    hi = torch.where(used[..., None], points, -big).amax(1)
    return (hi - lo).prod(-1).clamp_min(1.0).sqrt()


def landmark_points(vertices: torch.Tensor, ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Points on the mesh: vertices (B, N, 3), ids (B, L, 3) and weights (B, L, 3) -> (B, L, 3)."""
    batch = torch.arange(vertices.shape[0], device=vertices.device)[:, None, None]
    return (vertices[batch, ids] * weights[..., None]).sum(2)


def landmark_residuals(pred: torch.Tensor, target: torch.Tensor, metric: torch.Tensor | None = None) -> torch.Tensor:
    """(B, L, 2) px: ``M_i (pred_i - target_i)``, or the plain difference without ``metric`` (B, L, 2, 2)."""
    d = pred - target
    return d if metric is None else (metric @ d[..., None])[..., 0]


def contour_metric(residual: torch.Tensor, sliding: torch.Tensor, tangent_weight: float) -> torch.Tensor:
    """(B, L, 2, 2) residual transforms: identity, and for the ``sliding`` landmarks (Q,) ids the rotation
    into (normal, tangent) of the outline with the tangent scaled by ``tangent_weight``.

    A sliding landmark's correspondence is the nearest outline point, so its residual (B, L, 2) is normal
    to the outline; measuring mostly that component lets the point slide along it."""
    b, n = residual.shape[:2]
    metric = torch.eye(2, dtype=residual.dtype, device=residual.device).expand(b, n, 2, 2).clone()
    if len(sliding) == 0:
        return metric
    rq = residual[:, sliding]
    length = rq.norm(dim=-1, keepdim=True)
    axis = residual.new_tensor([1.0, 0.0])
    normal = torch.where(length > 1e-9, rq / length.clamp_min(1e-9), axis)
    tangent = torch.stack([-normal[..., 1], normal[..., 0]], -1) * tangent_weight
    metric[:, sliding] = torch.stack([normal, tangent], dim=-2)
    return metric


def landmark_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor,
                  robust: str = "huber", threshold: float = 2.0, metric: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_i w_i rho(|M_i (pred_i - target_i)| * scale)``, (B,).

    pred, target: (B, L, 2) px; weight: (B, L) (0 or False drops a landmark, whatever its values);
    scale: (B,) 1 / px, e.g. ``1 / (sigma * face_size)``; robust, threshold: :func:`robust_loss`'s
    kind and k (in scaled units); metric: optional (B, L, 2, 2) (:func:`contour_metric`).
    """
    r = landmark_residuals(pred, target, metric)
    r = torch.where((weight > 0)[..., None], r, torch.zeros_like(r))  # unused ones may be NaN
    d2 = r.square().sum(-1)
    hit = d2 > 0  # sqrt'(0) is infinite: exact hits get a zero gradient instead of NaN
    e = torch.where(hit, torch.where(hit, d2, torch.ones_like(d2)).sqrt(), torch.zeros_like(d2))
    rho, _ = robust_loss(e * scale[:, None], robust, threshold)
    return (rho * weight).sum(1)


class LandmarkLoss(nn.Module):
    """The landmark term of a model's fit to iBUG-68 targets, jaw contour included.

    ``forward(vertices_cam, camera, target, weight=None) -> (B,)``: vertices_cam (B, N, 3) mm (e.g.
    ``model(params).vertices_cam``), camera: their :class:`~morph3d.model.Camera`, target (B, 68, 2)
    px, weight (B, 68) in [0, 1] (default 1). Residuals are in units of ``sigma`` x the targets'
    face size (:func:`face_size`). With ``contour='sliding'`` (and a model with outline candidates)
    the jaw landmarks correspond to the nearest point of the projected outline, renewed at every call
    (not differentiated; the positions are); with ``'fixed'`` they are the model's own points.
    Landmarks the model does not define are left out.
    """

    def __init__(self, model, sigma: float = 0.015, robust: str = "huber", threshold: float = 2.0,
                 contour: str = "sliding", tangent_weight: float = 0.0):
        super().__init__()
        if robust not in ROBUST_LOSSES:
            raise ValueError(f"robust must be one of {ROBUST_LOSSES}, got {robust!r}")
        if contour not in ("sliding", "fixed"):
            raise ValueError(f"contour must be 'sliding' or 'fixed', got {contour!r}")
        if sigma <= 0:
            raise ValueError("sigma must be > 0")
        self.sigma, self.robust, self.threshold, self.tangent_weight = sigma, robust, threshold, tangent_weight
        valid = model.landmark_valid.detach().cpu()
        outline = ContourSet.from_model(model) if contour == "sliding" else None
        self.contour = outline if outline is not None and outline.available else None
        none = torch.zeros(0, dtype=torch.long)
        queries, sides = sliding_landmarks(valid) if self.contour is not None else (none, none)
        buffers = {"fixed_ids": model.triangles[model.landmark_faces], "valid": valid,
                   "fixed_weights": model.landmark_bary.detach() * valid.to(model.landmark_bary.device)[:, None],
                   "queries": queries, "sides": sides,
                   "contour_vertices": torch.from_numpy(self.contour.vertex_ids) if self.contour is not None else none}
        for name, t in buffers.items():
            self.register_buffer(name, t.to(model.triangles.device), persistent=False)

    @torch.no_grad()
    def correspondences(self, vertices_cam: torch.Tensor, camera, target: torch.Tensor):
        """Model-vertex ids (B, 68, 3), weights (B, 68, 3) and which landmarks are defined (B, 68).

        The outline search runs on the CPU; its results return to the tensors' device."""
        b = vertices_cam.shape[0]
        ids = self.fixed_ids.expand(b, -1, -1).clone()
        w = self.fixed_weights.to(vertices_cam.dtype).expand(b, -1, -1).clone()
        defined = self.valid.expand(b, -1).clone()
        if self.contour is None:
            return ids, w, defined
        cam = vertices_cam.detach()[:, self.contour_vertices]
        q = self.queries
        cids, cw, found = self.contour.select(cam.cpu(), camera.project(cam).cpu(), target.detach()[:, q].cpu(),
                                              self.sides.cpu(), camera.kind == "perspective")
        ids[:, q] = self.contour_vertices[cids.to(ids.device)]
        w[:, q] = cw.to(w)
        defined[:, q] = found.to(defined.device)
        return ids, w, defined

    def forward(self, vertices_cam, camera, target, weight=None):
        if target.ndim != 3 or target.shape[1:] != (NUM_LANDMARKS, 2):
            raise ValueError(f"target must be (B, 68, 2) pixels, got {tuple(target.shape)}")
        target = target.to(vertices_cam)
        ids, w, defined = self.correspondences(vertices_cam, camera, target)
        weight = defined.to(target.dtype) if weight is None else weight.to(target) * defined
        pred = camera.project(landmark_points(vertices_cam, ids, w))
        metric = None
        if self.contour is not None and self.tangent_weight != 1.0:
            metric = contour_metric((pred - target).detach(), self.queries, self.tangent_weight)
        scale = 1.0 / (self.sigma * face_size(target, weight > 0))
        return landmark_loss(pred, target, weight, scale, self.robust, self.threshold, metric)


# ---- priors --------------------------------------------------------------------------------
def tikhonov(coefficients: torch.Tensor, weight, centre: torch.Tensor | None = None) -> torch.Tensor:
    """``weight * |c - centre|^2`` per face, (B,): coefficients (B, K); weight a number or (K,)."""
    c = coefficients if centre is None else coefficients - centre
    if isinstance(weight, torch.Tensor) and weight.ndim:
        return (weight * c * c).sum(1)
    return weight * c.square().sum(1)


@dataclass
class PriorWeights:
    """Weights of the coefficient priors (coefficients are N(0, 1) in the model's std units).

    identity, texture: weights of ``|alpha|^2`` and ``|gamma|^2``; expression: of ``|beta|^2`` for PCA
    expressions; blendshape_sigma: prior std of blendshape weights (weight ``1 / sigma^2``).
    """

    identity: float = 1.0
    expression: float = 1.0
    blendshape_sigma: float = 1.0
    texture: float = 1.0

    def expression_weight(self, model) -> float:
        """The weight of ``|beta|^2`` for this model's kind of expressions."""
        if model.expression_kind == "blendshapes":
            return 1.0 / self.blendshape_sigma ** 2
        return self.expression


class PriorLoss(nn.Module):
    """``forward(params) -> (B,)``: the Tikhonov priors of identity, expression and texture of a model's
    :class:`~morph3d.model.FaceParams` (or a dict with those tensors)."""

    def __init__(self, model, weights: PriorWeights | None = None):
        super().__init__()
        self.weights = weights or PriorWeights()
        self.expression = self.weights.expression_weight(model)

    def forward(self, params):
        t = params if isinstance(params, dict) else params.tensors()
        w = self.weights
        return (tikhonov(t["identity"], w.identity) + tikhonov(t["expression"], self.expression)
                + tikhonov(t["texture"], w.texture))


# ---- perceptual ----------------------------------------------------------------------------
def feature_distance(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor], distance: str = "cosine",
                     weights: Sequence[float] | None = None) -> torch.Tensor:
    """Weighted sum over feature levels of a distance per face, (B,).

    a, b: matching lists of (B, ...) features. 'cosine': ``1 - cos`` of the flattened features (identity
    embeddings); 'l2': the squared difference of channel-normalised (B, C, H, W) features, summed over
    channels and averaged over positions (as in LPIPS without learned weights).
    """
    if distance not in PERCEPTUAL_DISTANCES:
        raise ValueError(f"distance must be one of {PERCEPTUAL_DISTANCES}, got {distance!r}")
    if len(a) != len(b) or not len(a):
        raise ValueError(f"need the same non-zero number of feature levels, got {len(a)} and {len(b)}")
    weights = [1.0] * len(a) if weights is None else list(weights)
    total = 0.0
    for fa, fb, w in zip(a, b, weights):
        if distance == "cosine":
            d = 1.0 - torch.nn.functional.cosine_similarity(fa.flatten(1), fb.flatten(1), dim=1, eps=1e-8)
        else:
            na = fa / fa.norm(dim=1, keepdim=True).clamp_min(1e-10)
            nb = fb / fb.norm(dim=1, keepdim=True).clamp_min(1e-10)
            d = (na - nb).square().sum(1).flatten(1).mean(1)
        total = total + w * d
    return total


class PerceptualLoss(nn.Module):
    """The perceptual slot: ``forward(images, reference) -> (B,)`` compares ``features(images)`` with
    ``features(reference)`` by :func:`feature_distance`.

    features: a callable (an nn.Module is registered, so it follows ``.to()``) mapping (B, 3, H, W)
    images to one (B, ...) tensor or a list of them (one per layer); it owns its input conventions
    (colour space, resizing, normalisation). The reference's features are not differentiated.
    """

    def __init__(self, features: Callable[[torch.Tensor], torch.Tensor | Sequence[torch.Tensor]],
                 distance: str = "cosine", weights: Sequence[float] | None = None):
        super().__init__()
        if not callable(features):
            raise TypeError(f"features must be callable (a feature network), got {type(features).__name__}")
        if distance not in PERCEPTUAL_DISTANCES:
            raise ValueError(f"distance must be one of {PERCEPTUAL_DISTANCES}, got {distance!r}")
        self.features, self.distance, self.weights = features, distance, weights

    def _levels(self, images):
        out = self.features(images)
        return [out] if isinstance(out, torch.Tensor) else list(out)

    def forward(self, images, reference):
        with torch.no_grad():
            ref = self._levels(reference)
        return feature_distance(self._levels(images), ref, self.distance, self.weights)


__all__ = ["LandmarkLoss", "PERCEPTUAL_DISTANCES", "PHOTO_LOSSES", "PerceptualLoss", "PhotometricLoss", "PriorLoss",
           "PriorWeights", "ROBUST_LOSSES", "contour_metric", "face_size", "feature_distance", "landmark_loss",
           "landmark_points", "landmark_residuals", "photometric_loss", "robust_loss", "tikhonov"]
