"""Fitting pose, identity and expression to 2D iBUG-68 landmarks (batched, Levenberg-Marquardt).

Model: the landmarks of ``vertices = mean + identity_basis @ alpha + expression_basis @ beta``, posed
``X = R X_model + t`` and projected by a perspective camera (fixed focal length; the distance sets the
scale) or a scaled-orthographic one (the scale ``s`` px/mm is fitted).

Objective, per image (residuals in units of ``landmark_sigma`` x face size, face size = sqrt of the area
of the landmarks' bounding box)::

    sum_i rho(|proj(X_i) - x_i| / (sigma * size)) + identity_prior * |alpha|^2 + expression prior

with ``rho`` Huber or Geman-McClure (robust to a few bad landmarks). The expression prior is
``expression_prior * |beta|^2`` for PCA expressions (N(0, 1) coefficients) and
``|beta / blendshape_sigma|^2`` for blendshape weights, which are also kept in ``blendshape_range``;
PCA coefficients are kept within +-``coefficient_limit``.

Steps: a closed-form scaled-orthographic pose from the affine camera of the mean shape's inner
landmarks, then a few pose-only and full Levenberg-Marquardt iterations with analytic Jacobians
(rotation updated multiplicatively, ``R <- exp([d]x) R``). The jaw landmarks (iBUG 0-16) slide along the
outline (``contour.py``) and their correspondences are renewed at every iteration. Landmarks the model
does not define are skipped.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..model.camera import ORTHOGRAPHIC, PERSPECTIVE, Camera, project_points
from ..model.face_definitions import IBUG68, NUM_LANDMARKS
from ..model.lighting import ambient_lighting
from ..model.params import DEFAULT_DISTANCE_MM, FaceParams
from ..model.pose import matrix_to_euler
from .contour import ContourSet, sliding_landmarks
from .losses import (ROBUST_LOSSES, PriorWeights, contour_metric, face_size, landmark_loss, landmark_residuals,
                     robust_loss, tikhonov)
from .pose_init import affine_camera, pose_from_affine
from .threads import torch_threads

JAW = IBUG68.jaw
CONTOUR_MODES = ("sliding", "fixed")


@dataclass
class LandmarkFitConfig:
    """Settings of :class:`LandmarkFitter` (defaults measured on real faces, see benchmarks/fit_accuracy.py)."""

    iterations: int = 6              # full LM iterations (after the pose-only ones)
    pose_iterations: int = 2         # LM iterations on pose only, first
    identity_components: int | None = 80   # leading identity components fitted (None: all)
    expression_components: int | None = 64  # leading expression components fitted (None: all)
    landmark_sigma: float = 0.015    # landmark noise, fraction of the face size
    identity_prior: float = 1.0      # weight of |alpha|^2
    expression_prior: float = 1.0    # weight of |beta|^2 (PCA expressions)
    blendshape_sigma: float = 1.0    # prior std of blendshape weights (around 0)
    blendshape_range: tuple[float, float] = (0.0, 1.0)
    coefficient_limit: float = 4.0   # |coefficient| bound for N(0, 1) coefficients
    robust: str = "huber"            # 'huber', 'geman_mcclure' or 'none'
    robust_threshold: float = 2.0    # in units of landmark_sigma
    contour: str = "sliding"         # jaw landmarks: 'sliding' or 'fixed' (see LandmarkFitter)
    contour_tangent_weight: float = 0.0  # weight of the along-outline residual of sliding landmarks
    camera: str = PERSPECTIVE        # 'perspective' (fixed focal) or 'orthographic' (fitted scale)
    threads: int | None = None       # intra-op threads while fitting (None: torch's setting; threads.py)

    def __post_init__(self):
        if self.robust not in ROBUST_LOSSES:
            raise ValueError(f"robust must be one of {ROBUST_LOSSES}, got {self.robust!r}")
        if self.camera not in (PERSPECTIVE, ORTHOGRAPHIC):
            raise ValueError(f"camera must be '{PERSPECTIVE}' or '{ORTHOGRAPHIC}', got {self.camera!r}")
        if self.contour not in CONTOUR_MODES:
            raise ValueError(f"contour must be one of {CONTOUR_MODES}, got {self.contour!r}")
        if self.iterations < 0 or self.pose_iterations < 0:
            raise ValueError("iteration counts must be >= 0")
        if self.landmark_sigma <= 0:
            raise ValueError("landmark_sigma must be > 0")

    @property
    def priors(self) -> PriorWeights:
        """The shape priors as :class:`~morph3d.fitting.losses.PriorWeights` (texture unused here)."""
        return PriorWeights(identity=self.identity_prior, expression=self.expression_prior,
                            blendshape_sigma=self.blendshape_sigma)


@dataclass
class LandmarkFitResult:
    """What :meth:`LandmarkFitter.fit` returns for B images.

    params: fitted FaceParams (texture 0, ambient light). landmarks_2d: (B, 68, 2) the fitted model's
    landmarks in the image, px (NaN where the model defines none). used: (B, 68) landmarks that took
    part. vertex_ids / weights: (B, 68, 3) final model-vertex correspondences of each landmark.
    rotation_matrix: (B, 3, 3). rms_px: (B,) root-mean-square landmark error over the used ones.
    seconds: wall time of the whole batch. history: the objective (B,) after each iteration.
    """

    params: FaceParams
    landmarks_2d: torch.Tensor
    used: torch.Tensor
    vertex_ids: torch.Tensor
    weights: torch.Tensor
    rotation_matrix: torch.Tensor
    rms_px: torch.Tensor
    seconds: float
    history: list = field(default_factory=list)


def _skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) with skew(a) @ b = a x b."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], -1).reshape(v.shape + (3,))


def _rodrigues(w: torch.Tensor) -> torch.Tensor:
    """Axis-angle (B, 3) -> rotation matrices (B, 3, 3)."""
    theta = w.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    k = _skew(w / theta)
    th = theta[..., None]
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(k)
    return eye + torch.sin(th) * k + (1 - torch.cos(th)) * (k @ k)


class LandmarkFitter:
    """Fits a :class:`~morph3d.model.MorphableModel` to 68 landmarks per image; build once per model.

    Jaw landmarks (iBUG 0-16) with ``config.contour``:
    - ``'sliding'`` (default; needs the model's ``contour_right`` / ``contour_left``): renewed at every
      iteration along the outline and silhouette (``contour.py``);
    - ``'fixed'``: the model's own jaw landmark points, whatever the pose.
    Either way, landmarks the model does not define (and cannot slide) are skipped.
    """

    def __init__(self, model, config: LandmarkFitConfig | None = None):
        self.model = model
        self.config = cfg = config or LandmarkFitConfig()
        ki, ke = model.identity_dim, model.expression_dim
        self.n_id = ki if cfg.identity_components is None else min(ki, cfg.identity_components)
        self.n_exp = ke if cfg.expression_components is None else min(ke, cfg.expression_components)
        self.blendshapes = model.expression_kind == "blendshapes"
        n = model.num_vertices
        mean = model.vertices_mean.detach().cpu().double().numpy()
        valid = model.landmark_valid.cpu().numpy().copy()
        lm_tri = model.triangles.cpu().numpy()[model.landmark_faces.cpu().numpy()]  # (68, 3)
        self.contour = ContourSet.from_model(model)
        extra = self.contour.vertex_ids if self.contour.available else np.zeros(0, np.int64)
        table = np.unique(np.concatenate([lm_tri[valid].reshape(-1), extra]))
        local = np.full(n, -1, np.int64)
        local[table] = np.arange(len(table))
        self.table = torch.from_numpy(table)
        self.mean = torch.from_numpy(mean[table])  # (M, 3) float64
        idb = model.identity_basis.detach().cpu().reshape(n, 3, ki)[:, :, :self.n_id]
        exb = model.expression_basis.detach().cpu().reshape(n, 3, ke)[:, :, :self.n_exp]
        self.basis = torch.cat([idb, exb], dim=2)[self.table].double()  # (M, 3, K)
        self.fixed_ids = torch.from_numpy(np.where(valid[:, None], local[lm_tri], 0))
        self.fixed_w = model.landmark_bary.detach().cpu().double() * torch.from_numpy(valid)[:, None]
        self.valid = torch.from_numpy(valid)
        # jaw landmarks whose correspondences come from the contour candidates
        self.sliding = self.contour.available and cfg.contour == "sliding"
        if self.contour.available:
            self.contour_local = torch.from_numpy(local[self.contour.vertex_ids])
        self.contour_queries, self.contour_sides = sliding_landmarks(valid) if self.sliding else \
            (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
        self.definable = self.valid.clone()
        self.definable[self.contour_queries] = True
        self.is_contour = torch.zeros(NUM_LANDMARKS, dtype=torch.bool)
        self.is_contour[self.contour_queries] = True
        priors = cfg.priors
        self.prior = torch.cat([torch.full((self.n_id,), priors.identity, dtype=torch.float64),
                                torch.full((self.n_exp,), priors.expression_weight(model), dtype=torch.float64)])
        lim = cfg.coefficient_limit
        lo_e, hi_e = cfg.blendshape_range if self.blendshapes else (-lim, lim)
        self.lower = torch.tensor([-lim] * self.n_id + [lo_e] * self.n_exp, dtype=torch.float64)
        self.upper = torch.tensor([lim] * self.n_id + [hi_e] * self.n_exp, dtype=torch.float64)
        inner = self.valid.clone()
        inner[list(JAW)] = False
        self.init_landmarks = inner if int(inner.sum()) >= 6 else self.valid.clone()
        if int(self.init_landmarks.sum()) < 4:
            raise ValueError(f"model '{model.name}' defines only {int(self.valid.sum())} of the 68 landmarks; "
                             "landmark fitting needs at least 4 outside the jaw")

    @property
    def num_params(self) -> int:
        return 6 + self.n_id + self.n_exp

    # ---- geometry --------------------------------------------------------------------------
    def _project(self, cam: torch.Tensor, f: torch.Tensor, pp: torch.Tensor) -> torch.Tensor:
        """Camera-frame points (B, L, 3) -> pixels (B, L, 2); f: focal px or scale px/mm (B,)."""
        return project_points(cam, f, pp, self.config.camera, min_depth=1e-6)

    def _sources(self, c, rot, t, f, pp, target):
        """Per-landmark table ids (B, 68, 3), weights (B, 68, 3) and availability (B, 68) for the
        current parameters (a jaw landmark is unavailable when no outline edge is on its side)."""
        b = c.shape[0]
        ids = self.fixed_ids.expand(b, -1, -1).clone()
        w = self.fixed_w.expand(b, -1, -1).clone()
        found = torch.ones(b, NUM_LANDMARKS, dtype=torch.bool)
        if len(self.contour_queries) == 0:
            return ids, w, found
        cl = self.contour_local
        pos = self.mean[cl] + torch.einsum("mik,bk->bmi", self.basis[cl], c)
        cam = pos @ rot.transpose(1, 2) + t[:, None]
        img = self._project(cam, f, pp)
        q = self.contour_queries
        cids, cw, ok = self.contour.select(cam, img, target[:, q], self.contour_sides,
                                           self.config.camera == PERSPECTIVE)
        ids[:, q] = cl[cids]
        w[:, q] = cw
        found[:, q] = ok
        return ids, w, found

    def _evaluate(self, c, rot, t, f, pp, ids, wts, jacobian: bool):
        """Projected landmarks (B, 68, 2) and, if asked, their Jacobian (B, 68, 2, P)."""
        mean = (self.mean[ids] * wts[..., None]).sum(2)  # (B, 68, 3)
        basis = (self.basis[ids] * wts[..., None, None]).sum(2)  # (B, 68, 3, K)
        pts = mean + torch.einsum("blik,bk->bli", basis, c)
        rp = pts @ rot.transpose(1, 2)
        cam = rp + t[:, None]
        proj = self._project(cam, f, pp)
        if not jacobian:
            return proj, None
        x, y, z = cam.unbind(-1)
        zero = torch.zeros_like(x)
        fb = f[:, None].expand_as(x)
        if self.config.camera == PERSPECTIVE:
            d = (-z).clamp_min(1e-6)
            jp = torch.stack([fb / d, zero, fb * x / d ** 2, zero, -fb / d, -fb * y / d ** 2], -1)
        else:
            jp = torch.stack([fb, zero, zero, zero, -fb, zero], -1)
        jp = jp.reshape(x.shape + (2, 3))
        j_rot = jp @ -_skew(rp)
        if self.config.camera == PERSPECTIVE:
            j_t = jp
        else:  # tx, ty and log-scale
            j_t = torch.cat([jp[..., :2], torch.stack([fb * x, -fb * y], -1)[..., None]], -1)
        j_c = jp @ rot[:, None] @ basis
        return proj, torch.cat([j_rot, j_t, j_c], -1)

    def _metric(self, r: torch.Tensor) -> torch.Tensor:
        """(B, 68, 2, 2) residual transforms of residuals r (B, 68, 2) (:func:`~.losses.contour_metric`)."""
        return contour_metric(r, self.contour_queries, self.config.contour_tangent_weight)

    def _robust(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return robust_loss(e, self.config.robust, self.config.robust_threshold)

    def _apply(self, c, rot, t, f, step):
        """Parameters after an LM step (B, P): rotation multiplicatively, bounds enforced."""
        rot = _rodrigues(step[:, :3]) @ rot
        if self.config.camera == PERSPECTIVE:
            t = t + step[:, 3:6]
            t = torch.cat([t[:, :2], t[:, 2:].clamp(max=-50.0)], 1)
        else:
            t = torch.cat([t[:, :2] + step[:, 3:5], t[:, 2:]], 1)
            f = f * torch.exp(step[:, 5].clamp(-1, 1))
        c = torch.minimum(torch.maximum(c + step[:, 6:], self.lower), self.upper)
        return c, rot, t, f

    # ---- fitting ---------------------------------------------------------------------------
    def fit(self, landmarks, image_size: tuple[int, int], focal: float | None = None,
            confidence=None) -> LandmarkFitResult:
        """Fit B images of one size.

        landmarks: (B, 68, 2) px, 0-based, finite. image_size: (height, width). focal: perspective focal
        length in px (default: ``Camera.create``'s, 1.5 x the longer side). confidence: optional (B, 68)
        weights in [0, 1] (0 = ignore that landmark).

        The system is tiny: ``config.threads = 1`` is often much faster on a busy machine (``threads.py``).
        """
        with torch_threads(self.config.threads):
            return self._fit(landmarks, image_size, focal, confidence)

    def _fit(self, landmarks, image_size, focal, confidence) -> LandmarkFitResult:
        start = time.perf_counter()
        cfg = self.config
        target, conf, use = self._targets(landmarks, confidence)
        b = target.shape[0]
        h, w = (int(s) for s in image_size)
        pp = torch.tensor([(w - 1) / 2.0, (h - 1) / 2.0], dtype=torch.float64).expand(b, 2)
        scale = 1.0 / (cfg.landmark_sigma * face_size(target, use))  # (B,) residuals in units of sigma x size
        c, rot, t, f = self._start(target, conf, use, pp, (h, w), focal)
        mu = torch.full((b,), 1e-3, dtype=torch.float64)
        history = []
        ids, wts, found = self._sources(c, rot, t, f, pp, target)
        for it in range(cfg.pose_iterations + cfg.iterations):
            if self.sliding and it > 0:
                ids, wts, found = self._sources(c, rot, t, f, pp, target)
            weight = conf * (use & found)
            c, rot, t, f, mu, cost = self._lm_step(c, rot, t, f, mu, pp, target, weight, scale, ids, wts,
                                                   full=it >= cfg.pose_iterations)
            history.append(cost)

        if self.sliding:
            ids, wts, found = self._sources(c, rot, t, f, pp, target)
        act = use & found
        proj, _ = self._evaluate(c, rot, t, f, pp, ids, wts, jacobian=False)
        defined = self.definable[None] & (found | ~self.is_contour[None])
        lm2d = torch.where(defined[..., None], proj, torch.full_like(proj, float("nan")))
        err = ((proj - target).square().sum(-1) * act).sum(1) / act.sum(1).clamp_min(1)
        params = self._to_params(c, rot, t, f, pp, (h, w))
        return LandmarkFitResult(params=params, landmarks_2d=lm2d.float(), used=act, vertex_ids=self.table[ids],
                                 weights=wts.float(), rotation_matrix=rot.float(), rms_px=err.sqrt().float(),
                                 seconds=time.perf_counter() - start, history=history)

    def _targets(self, landmarks, confidence):
        """Checked targets (B, 68, 2) float64 px, confidences (B, 68) and the landmarks used (B, 68)."""
        target = torch.as_tensor(np.asarray(landmarks, dtype=np.float64) if not isinstance(landmarks, torch.Tensor)
                                 else landmarks.detach().cpu().double())
        if target.ndim == 2:
            target = target[None]
        if target.ndim != 3 or target.shape[1:] != (NUM_LANDMARKS, 2):
            raise ValueError(f"landmarks must be (B, 68, 2) pixels, got {tuple(target.shape)}")
        if not torch.isfinite(target).all():
            raise ValueError("landmarks contain NaN or infinite values; mark missing ones with confidence 0")
        b = target.shape[0]
        conf = torch.ones(b, NUM_LANDMARKS, dtype=torch.float64) if confidence is None else \
            torch.as_tensor(confidence, dtype=torch.float64).reshape(b, NUM_LANDMARKS).clamp(0, 1)
        use = self.definable[None] & (conf > 0)
        if int(use.sum(1).min()) < 6:
            raise ValueError("fewer than 6 usable landmarks in an image; cannot fit")
        return target, conf, use

    def _start(self, target, conf, use, pp, image_size, focal):
        """Closed-form start from the affine camera of the mean shape's inner landmarks: (c, rot, t, f)."""
        b = target.shape[0]
        persp = self.config.camera == PERSPECTIVE
        mean_lm = (self.mean[self.fixed_ids] * self.fixed_w[..., None]).sum(1)  # (68, 3)
        init_w = (self.init_landmarks[None] & use).double() * conf
        a, bb = affine_camera(mean_lm.expand(b, -1, -1), target, init_w)
        centre = (init_w[..., None] * mean_lm).sum(1) / init_w.sum(1, keepdim=True)
        f0 = torch.full((b,), float(focal if focal is not None else 1.5 * max(image_size)), dtype=torch.float64)
        rot, t, s = pose_from_affine(a, bb, centre, pp, f0 if persp else None)
        if not persp:
            t[:, 2] = -DEFAULT_DISTANCE_MM
        return torch.zeros(b, self.n_id + self.n_exp, dtype=torch.float64), rot, t, f0 if persp else s

    def _cost(self, proj, c, target, weight, scale, metric):
        """The objective (B,): robust landmark term + coefficient priors (the losses of ``losses.py``)."""
        return (landmark_loss(proj, target, weight, scale, self.config.robust, self.config.robust_threshold, metric)
                + tikhonov(c, self.prior))

    def _lm_step(self, c, rot, t, f, mu, pp, target, weight, scale, ids, wts, full: bool):
        """One Levenberg-Marquardt iteration (pose only unless ``full``) on the IRLS-weighted residuals.

        weight: (B, 68) landmark weights; mu: (B,) damping. Returns (c, rot, t, f, mu, cost)."""
        b = c.shape[0]
        prior = self.prior
        proj, jac = self._evaluate(c, rot, t, f, pp, ids, wts, jacobian=True)
        metric = self._metric(proj - target)
        r = landmark_residuals(proj, target, metric)
        jac = metric @ jac
        rho, irls = self._robust(r.norm(dim=-1) * scale[:, None])
        wt = (irls * weight).sqrt() * scale[:, None]  # (B, 68)
        npar = self.num_params if full else 6
        jr = (jac * wt[..., None, None]).reshape(b, 2 * NUM_LANDMARKS, -1)[..., :npar]
        rr = (r * wt[..., None]).reshape(b, 2 * NUM_LANDMARKS)
        hess = jr.transpose(1, 2) @ jr
        grad = (jr.transpose(1, 2) @ rr[..., None])[..., 0]
        if full:
            zeros = torch.zeros(b, 6, dtype=torch.float64)
            hess = hess + torch.diag_embed(torch.cat([zeros[0], prior]))
            grad = grad + torch.cat([zeros, prior * c], 1)
            # coefficients held at a bound they are pushed against leave the system (active set)
            gc = grad[:, 6:]
            held = ((c <= self.lower + 1e-9) & (gc > 0)) | ((c >= self.upper - 1e-9) & (gc < 0))
            free = torch.cat([torch.ones(b, 6, dtype=torch.bool), ~held], 1)
            hess = hess * (free[:, :, None] & free[:, None, :]) + torch.diag_embed((~free).double())
            grad = grad * free
        cost = (rho * weight).sum(1) + tikhonov(c, prior)
        diag = torch.diagonal(hess, dim1=1, dim2=2)
        todo = torch.ones(b, dtype=torch.bool)
        for _ in range(4):  # Levenberg-Marquardt: shrink the step of images whose cost rose
            damped = hess + torch.diag_embed(mu[:, None] * diag + 1e-9)
            step = -torch.linalg.solve(damped, grad[..., None])[..., 0]
            step = torch.cat([step, torch.zeros(b, self.num_params - npar, dtype=torch.float64)], 1)
            c1, rot1, t1, f1 = self._apply(c, rot, t, f, step)
            proj1 = self._evaluate(c1, rot1, t1, f1, pp, ids, wts, False)[0]
            cost1 = self._cost(proj1, c1, target, weight, scale, metric)
            ok = todo & (cost1 <= cost)
            c = torch.where(ok[:, None], c1, c)
            rot = torch.where(ok[:, None, None], rot1, rot)
            t = torch.where(ok[:, None], t1, t)
            f = torch.where(ok, f1, f)
            cost = torch.where(ok, cost1, cost)
            mu = torch.where(ok, (mu / 3).clamp_min(1e-7), torch.where(todo, mu * 8, mu))
            todo = todo & ~ok
            if not todo.any():
                break
        return c, rot, t, f, mu, cost

    def _to_params(self, c, rot, t, f, pp, image_size) -> FaceParams:
        model = self.model
        dev, dt = model.vertices_mean.device, model.vertices_mean.dtype
        b = c.shape[0]
        ident = torch.zeros(b, model.identity_dim, dtype=torch.float64)
        ident[:, :self.n_id] = c[:, :self.n_id]
        expr = torch.zeros(b, model.expression_dim, dtype=torch.float64)
        expr[:, :self.n_exp] = c[:, self.n_id:]
        cam = Camera(f.clone(), pp.clone(), image_size, self.config.camera)
        p = FaceParams(identity=ident, expression=expr, texture=torch.zeros(b, model.albedo_dim, dtype=torch.float64),
                       rotation=matrix_to_euler(rot), translation=t.clone(),
                       lighting=ambient_lighting(b, dtype=torch.float64), camera=cam,
                       articulation=None if not model.has_articulation else
                       torch.zeros(b, model.num_joints, 3, dtype=torch.float64))
        return p.to(device=dev, dtype=dt)


def fit_landmarks(model, landmarks, image_size: tuple[int, int], config: LandmarkFitConfig | None = None,
                  **kw) -> LandmarkFitResult:
    """One-off :meth:`LandmarkFitter.fit` (build a :class:`LandmarkFitter` to fit many batches)."""
    return LandmarkFitter(model, config).fit(landmarks, image_size, **kw)
