"""Photometric refinement (analysis by synthesis) after a landmark fit.

Each face is cropped to ``size`` x ``size`` around its landmarks and rendered with the differentiable
renderer in the crop's camera. Adam minimises, per face,

    photo_weight * mean_p(m_p |render_p - photo_p|)     (per-pixel L2 norm of linear RGB, robust;
                                                         ``photo_loss`` picks another distance)
    + sum_i rho(|proj_i - x_i| / (landmark_sigma * size))   (the landmark term of the landmark fit)
    + |alpha|^2 + expression prior + texture_prior |gamma|^2 + lighting_prior |L - L0|^2

over a fixed set of pixels: the weights ``m`` = the start's rendered coverage x the model's skin
regions (eyes, brows, lips, mouth, ears, hair are left out) x the pixels inside the photo x a
skin-colour weight of the photo (chroma near the median chroma of the face, which drops hair, glasses
and occluders). A set that followed the render would reward shrinking the face onto the pixels it
explains best. The jaw landmarks keep the correspondences of the landmark fit; priors and the robust
loss ``rho`` are those of ``config.landmarks`` (a :class:`LandmarkFitConfig`). The terms are the
functions of ``losses.py``.

Start: on the landmark fit's geometry, lighting (27 SH coefficients) and albedo coefficients are
solved in closed form, alternately (``closed_form_rounds``): both enter the rendered colour linearly
when the other is fixed (linear least squares on the mean squared residual in units of
``photo_sigma``, with the albedo prior). Then up to ``steps`` Adam steps refine every parameter jointly,
with small steps so that geometry moves only where the image supports it; the refinement stops earlier
once every face's objective has converged (``tolerance``, ``window``). The landmark term keeps the
landmark fit's weight; the result is checked, and any face whose mean landmark error grew (by more than
``landmark_tolerance``, relative; 0 by default) keeps the landmark fit's geometry (pose, identity,
expression) with the refined albedo and lighting, so the refinement never worsens the landmark fit.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..model.camera import Camera
from ..model.face_definitions import NON_SKIN_PARTS, NUM_LANDMARKS, regions_without
from ..model.lighting import BAND_FACTORS, BAND_OF_COEFFICIENT, NUM_SH, ambient_lighting, irradiance, sh_basis
from ..model.params import FaceParams
from ..render import interpolate, region_segmentation, render_face, srgb_to_linear
from .adam import Adam
from .crop import Crop
from .landmark_fit import LandmarkFitConfig, LandmarkFitResult
from .losses import PHOTO_LOSSES, face_size, landmark_loss, landmark_points, photometric_loss, tikhonov
from .threads import torch_threads

GEOMETRY = ("identity", "expression", "rotation", "translation")
NAMES = ("identity", "expression", "texture", "rotation", "translation", "lighting")
LEARNING_RATES = {"identity": 0.003, "expression": 0.003, "texture": 0.01, "rotation": 1e-4, "translation": 0.03,
                  "lighting": 0.01}


@dataclass
class PhotometricConfig:
    """Settings of :func:`fit_photometric`."""

    size: int = 224                 # crop resolution, px
    margin: float = 1.5             # crop side / longer side of the landmarks' box
    steps: int = 30                 # Adam steps, at most
    tolerance: float = 1e-4         # stop early once no face's objective fell by more than this fraction
    window: int = 5                 # over the last ``window`` steps (tolerance 0: always take every step)
    closed_form_rounds: int = 2     # alternations of the lighting / albedo least-squares start
    photo_weight: float = 50.0
    photo_loss: str = "l21"         # per-pixel distance: 'l21', 'l2', 'l1' or 'huber' (losses.photometric_loss)
    huber_delta: float = 0.1        # threshold of the 'huber' photo loss, linear RGB
    photo_sigma: float = 0.05       # colour noise of the closed-form start, linear RGB
    landmarks: LandmarkFitConfig | None = None  # landmark term and shape priors (default: the defaults)
    texture_prior: float = 1.0
    lighting_prior: float = 0.01
    landmark_tolerance: float = 0.0  # relative growth of the mean landmark error accepted
    progress: bool = True           # tqdm bar over the steps
    threads: int | None = None      # intra-op threads while fitting (None: torch's setting; threads.py)

    def __post_init__(self):
        if self.photo_loss not in PHOTO_LOSSES:
            raise ValueError(f"photo_loss must be one of {PHOTO_LOSSES}, got {self.photo_loss!r}")
        if self.size < 8 or self.steps < 0 or self.closed_form_rounds < 0:
            raise ValueError("need size >= 8 px and steps, closed_form_rounds >= 0")
        if self.tolerance < 0 or self.window < 1:
            raise ValueError("need tolerance >= 0 and window >= 1")


@dataclass
class PhotometricResult:
    """params: refined FaceParams in the original images' cameras. landmarks_2d: (B, 68, 2) px in the
    original images. render / photo / mask: (B, 3|3|1, S, S) crops (linear RGB) at the end. crops: the
    Crop of each face. error_before / error_after: (B,) mean landmark error, px of the original image,
    of the landmark fit and of the result (never larger: see ``landmark_tolerance``).
    kept_landmark_geometry: (B,) faces whose geometry reverted to the landmark fit. loss: per step, the
    photometric, landmark and prior terms (means over faces). seconds: wall time."""

    params: FaceParams
    landmarks_2d: torch.Tensor
    render: torch.Tensor
    photo: torch.Tensor
    mask: torch.Tensor
    crops: list
    error_before: torch.Tensor
    error_after: torch.Tensor
    kept_landmark_geometry: torch.Tensor
    loss: list
    seconds: float


def _chroma_weight(photo: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Soft skin-colour weight (B, 1, S, S): chroma close to the median chroma inside ``region``."""
    s = photo.sum(1, keepdim=True).clamp_min(1e-4)
    chroma = photo[:, :2] / s  # r, g chromaticity
    out = []
    for b in range(photo.shape[0]):
        sel = region[b, 0] > 0.5
        if int(sel.sum()) < 20:
            out.append(torch.ones_like(s[b]))
            continue
        c = chroma[b][:, sel]
        med = c.median(dim=1).values
        mad = (c - med[:, None]).abs().median(dim=1).values.clamp_min(0.01)
        d2 = (((chroma[b] - med[:, None, None]) / (2.5 * mad[:, None, None])) ** 2).sum(0, keepdim=True)
        out.append(torch.exp(-0.5 * d2))
    return torch.stack(out)


def _solve_lighting(albedo, normals, photo, mask, ridge: float = 1e-5) -> torch.Tensor:
    """Linear least-squares SH lighting (B, 27): photo ~ albedo * sum_k A_k L_k Y_k(n) / pi on the mask
    (a ``ridge`` per pixel pulls towards unit ambient light where the normals do not decide)."""
    b = photo.shape[0]
    band = torch.tensor([BAND_FACTORS[BAND_OF_COEFFICIENT[k]] / math.pi for k in range(NUM_SH)],
                        dtype=photo.dtype, device=photo.device)
    y = sh_basis(normals.permute(0, 2, 3, 1)) * band  # (B, S, S, 9)
    out = ambient_lighting(b, dtype=photo.dtype, device=photo.device).reshape(b, 3, NUM_SH).clone()
    for i in range(b):
        sel = mask[i, 0] > 0.5
        if int(sel.sum()) < 50:
            continue
        basis = y[i][sel]  # (P, 9)
        for ch in range(3):
            a = albedo[i, ch][sel][:, None] * basis
            rhs = photo[i, ch][sel]
            gram = a.T @ a + ridge * a.shape[0] * torch.eye(NUM_SH, dtype=a.dtype, device=a.device)
            prior = out[i, ch]
            out[i, ch] = torch.linalg.solve(gram, a.T @ rhs + ridge * a.shape[0] * prior)
    return out.reshape(b, 3 * NUM_SH)


def _solve_texture(basis, mean, shading, photo, mask, sigma: float, prior: float) -> torch.Tensor:
    """Albedo coefficients (B, Ka) by linear least squares, the lighting fixed: minimises the mean over
    the mask of |photo - shading * (mean + basis @ gamma)|^2 / sigma^2 plus ``prior * |gamma|^2`` (a
    mean, not a sum, over pixels: their errors are correlated, not independent).

    basis: (B, H, W, 3, Ka) per-pixel albedo basis; mean: (B, 3, H, W); shading: (B, 3, H, W) E(n)/pi."""
    b, ka = basis.shape[0], basis.shape[-1]
    out = torch.zeros(b, ka, dtype=photo.dtype, device=photo.device)
    for i in range(b):
        sel = mask[i, 0] > 0.5
        if int(sel.sum()) < 50:
            continue
        sh = shading[i].permute(1, 2, 0)[sel]  # (P, 3)
        norm = sigma * float(sel.sum()) ** 0.5
        a = (basis[i][sel] * sh[..., None]).reshape(-1, ka) / norm  # (3P, Ka)
        rhs = ((photo[i] - shading[i] * mean[i]).permute(1, 2, 0)[sel]).reshape(-1) / norm
        gram = a.T @ a + prior * torch.eye(ka, dtype=a.dtype, device=a.device)
        out[i] = torch.linalg.solve(gram, a.T @ rhs)
    return out


def fit_photometric(model, images: list[np.ndarray], fit: LandmarkFitResult, targets,
                    config: PhotometricConfig | None = None) -> PhotometricResult:
    """Refine a landmark fit of B faces against their photos.

    images: B (H, W, 3) uint8 RGB photos (the same array may appear for several faces); fit: the
    :class:`LandmarkFitResult` of these faces in those images; targets: (B, 68, 2) the landmarks that
    fit used, px.
    """
    cfg = config or PhotometricConfig()
    with torch_threads(cfg.threads):
        return _fit_photometric(model, images, fit, targets, cfg)


def _fit_photometric(model, images, fit, targets, cfg: PhotometricConfig) -> PhotometricResult:
    start = time.perf_counter()
    dev, dt = model.vertices_mean.device, model.vertices_mean.dtype
    base = fit.params.to(device=dev, dtype=dt)
    b = base.batch_size
    if len(images) != b:
        raise ValueError(f"{len(images)} images for {b} fitted faces")
    targets = torch.as_tensor(np.asarray(targets), dtype=dt, device=dev).reshape(b, NUM_LANDMARKS, 2)
    used = fit.used.to(dev)
    crops, cam, photo, inside, tgt = _crop_faces(images, targets, base.camera, cfg.size, cfg.margin, dev, dt)
    init = base.tensors()
    init.pop("articulation", None)
    start_params = FaceParams(**init, camera=cam, articulation=base.articulation)
    with torch.no_grad():
        first = render_face(model, start_params, outputs=("albedo", "normals", "mask"))
        weight = _fit_mask(model, first, photo, inside)
        init["texture"], init["lighting"] = _closed_form_start(model, first, photo, weight, base.texture, cfg)

    lm_cfg = cfg.landmarks or LandmarkFitConfig()
    priors = lm_cfg.priors
    exp_prior = priors.expression_weight(model)
    lm_scale = 1.0 / (lm_cfg.landmark_sigma * face_size(tgt, used))
    lm_ids, lm_w = _landmark_sources(fit, dev, dt)
    lighting0 = init["lighting"]

    def objective(out, v):  # the photometric, landmark and prior terms, each (B,)
        photo_term = photometric_loss(out.image, photo, weight, cfg.photo_loss, cfg.huber_delta)
        lm = cam.project(landmark_points(out.geometry.vertices_cam, lm_ids, lm_w))
        lm_term = landmark_loss(lm, tgt, used, lm_scale, lm_cfg.robust, lm_cfg.robust_threshold)
        prior = (tikhonov(v["identity"], priors.identity) + tikhonov(v["expression"], exp_prior)
                 + tikhonov(v["texture"], cfg.texture_prior) + tikhonov(v["lighting"], cfg.lighting_prior, lighting0))
        return cfg.photo_weight * photo_term, lm_term, prior

    clamp = lm_cfg.blendshape_range if model.expression_kind == "blendshapes" else None
    var, history = _refine(model, init, cam, base.articulation, objective, cfg, clamp)

    with torch.no_grad():
        refined = FaceParams(**var, camera=cam, articulation=base.articulation)
        lm_crop = cam.project(landmark_points(model(refined).vertices_cam, lm_ids, lm_w))
        lm_after = torch.stack([crops[i].to_image(lm_crop[i]) for i in range(b)])
        lm_before = fit.landmarks_2d.to(dev, dt)
        err_before, err_after = _mean_error(lm_before, targets, used), _mean_error(lm_after, targets, used)
        keep = err_after > err_before * (1 + cfg.landmark_tolerance)
        final = {k: torch.where(keep[:, None], init[k], var[k]) if k in GEOMETRY else var[k] for k in NAMES}
        out = render_face(model, FaceParams(**final, camera=cam, articulation=base.articulation),
                          outputs=("image", "mask"))
        result = FaceParams(**final, camera=base.camera, articulation=base.articulation)
        lm_img = torch.where(keep[:, None, None] | ~torch.isfinite(lm_before), lm_before, lm_after)
        err_after = torch.where(keep, err_before, err_after)
    return PhotometricResult(params=result, landmarks_2d=lm_img, render=out.image.detach(), photo=photo,
                             mask=weight, crops=crops, error_before=err_before,
                             error_after=err_after, kept_landmark_geometry=keep, loss=history,
                             seconds=time.perf_counter() - start)


def _crop_faces(images, targets, camera: Camera, size: int, margin: float, dev, dt):
    """Square crops around each face's landmarks: the Crops, their batched camera, the photos (B, 3, S, S)
    linear RGB, the pixels inside the original image (B, 1, S, S) and the targets in crop pixels (B, 68, 2)."""
    crops, cams, photos, inside = [], [], [], []
    for i in range(len(images)):
        crop = Crop.around(targets[i].cpu().numpy(), size, margin)
        pix, ins = crop.image(images[i])
        crops.append(crop)
        cams.append(crop.camera(camera, i))
        photos.append(torch.from_numpy(pix.copy()).permute(2, 0, 1).to(dev, dt) / 255.0)
        inside.append(torch.from_numpy(ins)[None].to(dev, dt))
    cam = Camera(torch.cat([c.focal for c in cams]), torch.cat([c.principal for c in cams]), (size, size),
                 camera.kind)
    tgt = torch.stack([crops[i].to_crop(targets[i]) for i in range(len(images))])
    return crops, cam, srgb_to_linear(torch.stack(photos)), torch.stack(inside), tgt


def _fit_mask(model, first, photo, inside) -> torch.Tensor:
    """The pixel weights (B, 1, S, S) of the fit: the start's coverage x the model's skin regions x the
    pixels inside the photo x the photo's skin-colour weight."""
    labels, _ = region_segmentation(model, first.rast)
    skin = torch.from_numpy(regions_without(model.region_names, NON_SKIN_PARTS))
    skin_region = torch.cat([torch.zeros(1, dtype=torch.bool), skin]).to(photo.device)
    region = skin_region[labels].to(photo.dtype) * inside
    covered = (first.mask > 0.99).to(photo.dtype)
    return region * _chroma_weight(photo, region * covered) * covered


def _closed_form_start(model, first, photo, mask, texture, cfg: PhotometricConfig):
    """Albedo coefficients (B, Ka) and lighting (B, 27) by alternating linear least squares on the start's
    geometry (``first``: a render with albedo, normals and rast)."""
    b, s = photo.shape[0], photo.shape[-1]
    normals, albedo = first.normals, first.albedo
    texture = texture.clone()
    lighting = _solve_lighting(albedo, normals, photo, mask)
    if not model.albedo_dim:
        return texture, lighting
    ka = model.albedo_dim
    covered = (first.mask > 0.99).to(photo.dtype)
    basis = interpolate(model.albedo_basis.reshape(model.num_vertices, 3 * ka), first.rast,
                        model.triangles).reshape(b, s, s, 3, ka)
    mean = interpolate(model.albedo_mean, first.rast, model.triangles).permute(0, 3, 1, 2)
    for _ in range(cfg.closed_form_rounds):
        shading = irradiance(normals.permute(0, 2, 3, 1).reshape(b, -1, 3), lighting) / math.pi
        shading = shading.reshape(b, s, s, 3).permute(0, 3, 1, 2)
        texture = _solve_texture(basis, mean, shading, photo, mask, cfg.photo_sigma, cfg.texture_prior)
        albedo = mean + torch.einsum("bhwck,bk->bchw", basis, texture) * covered
        lighting = _solve_lighting(albedo, normals, photo, mask)
    return texture, lighting


def _landmark_sources(fit: LandmarkFitResult, dev, dt):
    """The landmark fit's vertex ids (B, 68, 3) and weights; landmarks without a model point take vertex 0
    (finite, and left out by ``used``)."""
    w = fit.weights.to(dev, dt)
    w = torch.where(w.sum(-1, keepdim=True) > 0, w, w.new_tensor([1.0, 0.0, 0.0]))
    return fit.vertex_ids.to(dev), w


def _refine(model, init, cam, articulation, objective, cfg: PhotometricConfig, clamp):
    """At most ``cfg.steps`` Adam steps on every parameter from ``init``; blendshape weights kept in
    ``clamp``. Stops early once every face's objective has fallen by at most ``cfg.tolerance`` of its
    value over the last ``cfg.window`` steps. Returns the final tensors by name and the per-step means of
    the objective's terms."""
    var = {k: v.detach().clone().requires_grad_(True) for k, v in init.items()}
    opt = Adam([(var[k], LEARNING_RATES[k]) for k in NAMES])
    history, totals = [], []
    bar = tqdm(range(cfg.steps), desc="photometric", unit="step", leave=False, disable=not cfg.progress)
    for _ in bar:
        opt.zero_grad()
        p = FaceParams(**{k: var[k] for k in NAMES}, camera=cam, articulation=articulation)
        terms = objective(render_face(model, p, outputs=("image", "mask")), var)
        total = sum(terms)
        total.sum().backward()
        opt.step()
        if clamp is not None:
            with torch.no_grad():
                var["expression"].clamp_(*clamp)
        history.append([float(x.detach().mean()) for x in terms])
        bar.set_postfix(loss=f"{sum(history[-1]):.2f}")
        totals.append(total.detach())
        if cfg.tolerance > 0 and len(totals) > cfg.window:
            fall = totals[-1 - cfg.window] - totals[-1]
            if bool((fall <= cfg.tolerance * totals[-1].abs()).all()):
                break
    return {k: v.detach() for k, v in var.items()}, history


def _mean_error(lm, targets, used) -> torch.Tensor:
    """Mean landmark distance (B,) over the used landmarks, px of the original image."""
    d = torch.where(used, (lm - targets).norm(dim=-1), torch.zeros_like(lm[..., 0]))
    return d.sum(1) / used.sum(1)
