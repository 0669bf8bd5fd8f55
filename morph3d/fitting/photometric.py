"""Photometric refinement (analysis by synthesis) after a landmark fit.

Each face is cropped to ``size`` x ``size`` around its landmarks and rendered with the differentiable
renderer in the crop's camera. Adam minimises, per face,

    photo_weight * mean_p(m_p |render_p - photo_p|)       (per-pixel L2 norm of linear RGB, robust)
    + sum_i |proj_i - x_i|^2 / (landmark_sigma * size)^2  (the landmark term of the landmark fit)
    + |alpha|^2 + expression prior + texture_prior |gamma|^2 + lighting_prior |L - L0|^2

with the mask ``m`` = rendered coverage x the model's skin regions (eyes, brows, lips, nose holes,
hair are left out) x the pixels inside the photo x a skin-colour weight of the photo (chroma near the
median chroma of the face, which drops hair, glasses and occluders). The jaw landmarks keep the
correspondences of the landmark fit. Lighting (27 SH) starts from its linear least-squares solution
under the mean albedo. The landmark term has the landmark fit's weight, so the refinement moves the
geometry only where the image supports it; the result is checked and the landmark-fit geometry kept
for any face whose landmark error grew by more than ``landmark_tolerance``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..model.geometry import barycentric_points
from ..model.lighting import BAND_FACTORS, BAND_OF_COEFFICIENT, NUM_SH, ambient_lighting, sh_basis
from ..model.params import FaceParams
from ..render import region_segmentation, render_face, srgb_to_linear
from .crop import Crop
from .landmark_fit import LandmarkFitResult

_NON_SKIN = {"eye", "eyes", "eyeball", "eyeballs", "brow", "brows", "eyebrow", "eyebrows", "lip", "lips",
             "mouth", "teeth", "tongue", "hair", "scalp", "ear", "ears", "neck", "nostril", "nostrils"}


@dataclass
class PhotometricConfig:
    """Settings of :func:`fit_photometric`."""

    size: int = 224                 # crop resolution, px
    margin: float = 1.5             # crop side / longer side of the landmarks' box
    steps: int = 40                 # Adam steps
    photo_weight: float = 50.0
    landmark_sigma: float = 0.02    # as in LandmarkFitConfig
    identity_prior: float = 1.0
    expression_prior: float = 1.0   # PCA expressions; blendshapes use blendshape_sigma
    blendshape_sigma: float = 0.5
    blendshape_range: tuple[float, float] = (0.0, 1.0)
    texture_prior: float = 1.0
    lighting_prior: float = 0.01
    landmark_tolerance: float = 0.05  # relative growth of the landmark RMS accepted
    progress: bool = True           # tqdm bar over the steps


@dataclass
class PhotometricResult:
    """params: refined FaceParams in the original images' cameras. landmarks_2d: (B, 68, 2) px in the
    original images. render / photo / mask: (B, 3|3|1, S, S) crops (linear RGB) at the end. crops: the
    Crop of each face. rms_before / rms_after: (B,) landmark RMS px (original image) of the landmark fit
    and of the result. kept_landmark_geometry: (B,) faces whose geometry reverted to the landmark fit.
    loss: per-step total loss (mean over faces). seconds: wall time."""

    params: FaceParams
    landmarks_2d: torch.Tensor
    render: torch.Tensor
    photo: torch.Tensor
    mask: torch.Tensor
    crops: list
    rms_before: torch.Tensor
    rms_after: torch.Tensor
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


def _solve_lighting(albedo, normals, photo, mask, ridge: float = 1e-3) -> torch.Tensor:
    """Linear least-squares SH lighting (B, 27): photo ~ albedo * sum_k A_k L_k Y_k(n) / pi on the mask."""
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


def fit_photometric(model, images: list[np.ndarray], fit: LandmarkFitResult, targets,
                    config: PhotometricConfig | None = None) -> PhotometricResult:
    """Refine a landmark fit of B faces against their photos.

    images: B (H, W, 3) uint8 RGB photos (the same array may appear for several faces); fit: the
    :class:`LandmarkFitResult` of these faces in those images; targets: (B, 68, 2) the landmarks that
    fit used, px.
    """
    cfg = config or PhotometricConfig()
    start = time.perf_counter()
    dev, dt = model.vertices_mean.device, model.vertices_mean.dtype
    base = fit.params.to(device=dev, dtype=dt)
    b = base.batch_size
    if len(images) != b:
        raise ValueError(f"{len(images)} images for {b} fitted faces")
    targets = torch.as_tensor(np.asarray(targets), dtype=dt, device=dev).reshape(b, 68, 2)
    used = fit.used.to(dev)
    s = cfg.size

    # crops, their cameras and photos
    crops, cams, photos, inside = [], [], [], []
    for i in range(b):
        crop = Crop.around(targets[i].cpu().numpy(), s, cfg.margin)
        pix, ins = crop.image(images[i])
        crops.append(crop)
        cams.append(crop.camera(base.camera, i))
        photos.append(torch.from_numpy(pix.copy()).permute(2, 0, 1).to(dev, dt) / 255.0)
        inside.append(torch.from_numpy(ins)[None].to(dev, dt))
    photo = srgb_to_linear(torch.stack(photos))
    inside = torch.stack(inside)
    cam = cams[0].__class__(torch.cat([c.focal for c in cams]), torch.cat([c.principal for c in cams]), (s, s),
                            base.camera.kind)
    tgt = torch.stack([crops[i].to_crop(targets[i]) for i in range(b)])
    lo = torch.where(used[..., None], tgt, torch.full_like(tgt, float("inf"))).amin(1)
    hi = torch.where(used[..., None], tgt, torch.full_like(tgt, -float("inf"))).amax(1)
    face_size = (hi - lo).prod(-1).clamp_min(1.0).sqrt()
    lm_scale = 1.0 / (cfg.landmark_sigma * face_size)
    lm_faces = fit.vertex_ids.to(dev)
    lm_w = fit.weights.to(dev, dt)
    # landmarks without a model point project vertex 0 (finite, and masked out by `used`)
    lm_w = torch.where(lm_w.sum(-1, keepdim=True) > 0, lm_w, lm_w.new_tensor([1.0, 0.0, 0.0]))

    def landmarks_of(vertices_cam, camera):
        pts = (vertices_cam[torch.arange(b, device=dev)[:, None, None], lm_faces] * lm_w[..., None]).sum(2)
        return camera.project(pts)

    # the mask: coverage x skin regions x inside the photo x skin colour
    start_params = FaceParams(identity=base.identity, expression=base.expression, texture=base.texture,
                              rotation=base.rotation, translation=base.translation, lighting=base.lighting,
                              camera=cam, articulation=base.articulation)
    with torch.no_grad():
        first = render_face(model, start_params, outputs=("albedo", "normals", "mask"))
        labels, _ = region_segmentation(model, first.rast)
        skin_region = torch.cat([torch.zeros(1, dtype=torch.bool), torch.tensor(
            [not (set(n.lower().replace("-", "_").split("_")) & _NON_SKIN) for n in model.region_names])])
        region = skin_region.to(dev)[labels].to(dt) * inside
        weight = region * _chroma_weight(photo, region * (first.mask > 0.99).to(dt))
        lighting0 = _solve_lighting(first.albedo, first.normals, photo, weight * (first.mask > 0.99).to(dt))

    blend = model.expression_kind == "blendshapes"
    names = ("identity", "expression", "texture", "rotation", "translation", "lighting")
    init = {"identity": base.identity, "expression": base.expression, "texture": base.texture,
            "rotation": base.rotation, "translation": base.translation, "lighting": lighting0}
    var = {k: v.detach().clone().requires_grad_(True) for k, v in init.items()}
    lrs = {"identity": 0.05, "expression": 0.02 if blend else 0.05, "texture": 0.05, "rotation": 0.003,
           "translation": 0.5, "lighting": 0.05}
    opt = torch.optim.Adam([{"params": [var[k]], "lr": lrs[k]} for k in names])
    exp_prior = (1.0 / cfg.blendshape_sigma ** 2) if blend else cfg.expression_prior
    history = []

    def objective(render_out, v):
        m = weight * render_out.mask
        diff = (render_out.image - photo).square().sum(1, keepdim=True).add(1e-8).sqrt()
        photo_term = (m * diff).sum((1, 2, 3)) / m.sum((1, 2, 3)).clamp_min(1.0)
        lm = landmarks_of(render_out.geometry.vertices_cam, cam)
        d2 = torch.where(used, (lm - tgt).square().sum(-1), torch.zeros_like(lm[..., 0]))
        e2 = (d2 * lm_scale[:, None] ** 2).sum(1)
        prior = (cfg.identity_prior * v["identity"].square().sum(1) + exp_prior * v["expression"].square().sum(1)
                 + cfg.texture_prior * v["texture"].square().sum(1)
                 + cfg.lighting_prior * (v["lighting"] - lighting0).square().sum(1))
        return cfg.photo_weight * photo_term + e2 + prior, lm

    bar = tqdm(range(cfg.steps), desc="photometric", unit="step", leave=False, disable=not cfg.progress)
    for _ in bar:
        opt.zero_grad()
        p = FaceParams(**{k: var[k] for k in names}, camera=cam, articulation=base.articulation)
        out = render_face(model, p, outputs=("image", "mask"))
        loss, _ = objective(out, var)
        loss.sum().backward()
        opt.step()
        with torch.no_grad():
            if blend:
                var["expression"].clamp_(*cfg.blendshape_range)
        history.append(float(loss.detach().mean()))
        bar.set_postfix(loss=f"{history[-1]:.2f}")

    with torch.no_grad():
        final = FaceParams(**{k: var[k].detach() for k in names}, camera=cam, articulation=base.articulation)
        out = render_face(model, final, outputs=("image", "mask"))
        lm_after = landmarks_of(out.geometry.vertices_cam, cam)
        lm_before = landmarks_of(model(start_params).vertices_cam, cam)

        def rms(lm):
            d = torch.where(used, (lm - tgt).square().sum(-1), torch.zeros_like(lm[..., 0]))
            return (d.sum(1) / used.sum(1)).sqrt() / torch.tensor([c.scale for c in crops], dtype=dt, device=dev)

        rms_before, rms_after = rms(lm_before), rms(lm_after)
        keep = rms_after > rms_before * (1 + cfg.landmark_tolerance)
        geo = {k: torch.where(keep[:, None], init[k], var[k].detach())
               for k in ("identity", "expression", "rotation", "translation")}
        result = FaceParams(identity=geo["identity"], expression=geo["expression"], texture=var["texture"].detach(),
                            rotation=geo["rotation"], translation=geo["translation"],
                            lighting=var["lighting"].detach(), camera=base.camera, articulation=base.articulation)
        lm_crop = torch.where(keep[:, None, None], lm_before, lm_after)
        lm_img = torch.stack([crops[i].to_image(lm_crop[i]) for i in range(b)])
        lm_img = torch.where(torch.isfinite(fit.landmarks_2d.to(dev)), lm_img, torch.full_like(lm_img, float("nan")))
        rms_after = torch.where(keep, rms_before, rms_after)
    return PhotometricResult(params=result, landmarks_2d=lm_img, render=out.image.detach(), photo=photo,
                             mask=(weight * out.mask).detach(), crops=crops, rms_before=rms_before,
                             rms_after=rms_after, kept_landmark_geometry=keep, loss=history,
                             seconds=time.perf_counter() - start)
