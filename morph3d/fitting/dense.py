"""Dense fit of the ``open`` model to MediaPipe Face Mesh's 468 points.

The open model's vertices 0-467 are MediaPipe's canonical-mesh vertices (``assets/README.md``), so
MediaPipe's 468 detected points are 2D observations of those very vertices: no landmark mapping, and
seven times as many constraints as the 68 iBUG points. Starting from a :class:`LandmarkFitter` result,
pose, identity and expression are refined by Levenberg-Marquardt on

    sum_i rho(|proj(X_i) - m_i| / (point_sigma * size)) + identity_prior |alpha|^2 + |beta / blendshape_sigma|^2

(``rho`` Huber, ``size`` = sqrt of the area of the points' bounding box, ``X_i`` vertex i posed, ``m_i``
MediaPipe's point i), with the camera of the starting fit held fixed (perspective focal or orthographic
scale). The points come from the detection when MediaPipe produced its landmarks, else from MediaPipe
run on a crop around the detection's box.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..model.camera import PERSPECTIVE, project_points
from ..model.pose import euler_to_matrix, matrix_to_euler
from .detect import Detection, mediapipe_in_box
from .landmark_fit import LandmarkFitResult, robust_loss
from .threads import torch_threads

NUM_MESH_POINTS = 468


@dataclass
class DenseFitConfig:
    iterations: int = 6
    point_sigma: float = 0.01        # MediaPipe point noise, fraction of the face size
    identity_prior: float = 1.0      # weight of |alpha|^2 (N(0, 1) identity coefficients)
    blendshape_sigma: float = 1.0    # prior std of blendshape weights (around 0)
    coefficient_limit: float = 4.0   # |identity coefficient| bound
    robust_threshold: float = 2.0    # Huber threshold, in units of point_sigma


@dataclass
class DenseFitResult:
    """params: refined FaceParams (B=1). landmarks_2d: (1, 68, 2) px, the fitted model's iBUG points.
    mesh_points: (468, 2) px, MediaPipe's points used (None when none were found: params are the start's).
    rms_px: root-mean-square error over the 468 points. seconds: wall time."""

    params: object
    landmarks_2d: torch.Tensor
    mesh_points: np.ndarray | None
    rms_px: float
    seconds: float


def _skew(v: torch.Tensor) -> torch.Tensor:
    z = torch.zeros_like(v[..., 0])
    x, y, w = v.unbind(-1)
    return torch.stack([z, -w, y, w, z, -x, -y, x, z], -1).reshape(v.shape + (3,))


def _rotation_step(w: torch.Tensor) -> torch.Tensor:
    """exp([w]x) for small rotation vectors w (3,)."""
    theta = w.norm().clamp_min(1e-12)
    k = _skew(w / theta)
    return torch.eye(3, dtype=w.dtype) + torch.sin(theta) * k + (1 - torch.cos(theta)) * (k @ k)


class DenseFitter:
    """Refines a landmark fit of the ``open`` model on MediaPipe's 468 points; build once per model."""

    def __init__(self, model, config: DenseFitConfig | None = None):
        if getattr(model, "source_format", None) != "open" or model.num_vertices < NUM_MESH_POINTS:
            raise ValueError(f"the dense fit needs the 'open' model (its vertices 0-467 are MediaPipe's), "
                             f"not '{getattr(model, 'name', model)}'; load it with load_model('open')")
        if model.expression_kind != "blendshapes":
            raise ValueError("the dense fit expects the open model's blendshape expressions")
        self.model = model
        self.config = cfg = config or DenseFitConfig()
        n, ki, ke = model.num_vertices, model.identity_dim, model.expression_dim
        ids = slice(0, NUM_MESH_POINTS)
        self.mean = model.vertices_mean.detach().cpu().double()[ids]  # (468, 3) mm
        idb = model.identity_basis.detach().cpu().double().reshape(n, 3, ki)[ids]
        exb = model.expression_basis.detach().cpu().double().reshape(n, 3, ke)[ids]
        self.basis = torch.cat([idb, exb], 2)  # (468, 3, K)
        self.n_id, self.n_exp = ki, ke
        self.prior = torch.cat([torch.full((ki,), cfg.identity_prior, dtype=torch.float64),
                                torch.full((ke,), 1.0 / cfg.blendshape_sigma ** 2, dtype=torch.float64)])
        lim = cfg.coefficient_limit
        self.lower = torch.tensor([-lim] * ki + [0.0] * ke, dtype=torch.float64)
        self.upper = torch.tensor([lim] * ki + [1.0] * ke, dtype=torch.float64)

    def fit(self, image: np.ndarray, detection: Detection, start: LandmarkFitResult,
            index: int = 0) -> DenseFitResult:
        """Refine face ``index`` of ``start`` (a landmark fit of ``detection``'s landmarks in ``image``).

        image: (H, W, 3) uint8 RGB; MediaPipe is needed unless ``detection.mesh`` is set.
        """
        t0 = time.perf_counter()
        mesh = detection.mesh if detection.mesh is not None else mediapipe_in_box(image, detection.box)
        with torch_threads(1):
            if mesh is None:
                p = start.params[index:index + 1].to(dtype=torch.float64)
                return DenseFitResult(p, self._landmarks(p), None, float("nan"), time.perf_counter() - t0)
            params, rms = self._refine(torch.as_tensor(np.asarray(mesh, dtype=np.float64)),
                                       start.params[index:index + 1].to(dtype=torch.float64))
            return DenseFitResult(params, self._landmarks(params), np.asarray(mesh), rms, time.perf_counter() - t0)

    def fit_points(self, points: np.ndarray, start: LandmarkFitResult, index: int = 0) -> DenseFitResult:
        """Refine face ``index`` of ``start`` on given MediaPipe points (468, 2) px (finite)."""
        t0 = time.perf_counter()
        pts = torch.as_tensor(np.asarray(points, dtype=np.float64))
        if pts.shape != (NUM_MESH_POINTS, 2) or not torch.isfinite(pts).all():
            raise ValueError(f"MediaPipe points must be ({NUM_MESH_POINTS}, 2) finite pixels, got {tuple(pts.shape)}")
        with torch_threads(1):
            params, rms = self._refine(pts, start.params[index:index + 1].to(dtype=torch.float64))
            return DenseFitResult(params, self._landmarks(params), pts.numpy(), rms, time.perf_counter() - t0)

    # ---- internals ---------------------------------------------------------------------------
    def _project(self, cam_pts, camera):
        return project_points(cam_pts[None], camera.focal, camera.principal, camera.kind, min_depth=1e-6)[0]

    def _evaluate(self, c, rot, t, camera, jacobian: bool):
        pts = self.mean + torch.einsum("nik,k->ni", self.basis, c)
        rp = pts @ rot.T
        cam = rp + t
        proj = self._project(cam, camera)
        if not jacobian:
            return proj, None
        f = camera.focal[0]
        x, y, z = cam.unbind(-1)
        zero = torch.zeros_like(x)
        if camera.kind == PERSPECTIVE:
            d = (-z).clamp_min(1e-6)
            jp = torch.stack([f / d, zero, f * x / d ** 2, zero, -f / d, -f * y / d ** 2], -1)
        else:
            jp = torch.stack([f + zero, zero, zero, zero, -f + zero, zero], -1)
        jp = jp.reshape(-1, 2, 3)
        j_rot = jp @ -_skew(rp)
        j_c = jp @ rot @ self.basis
        return proj, torch.cat([j_rot, jp, j_c], -1)  # (468, 2, 6 + K)

    def _refine(self, target: torch.Tensor, start):
        cfg = self.config
        camera = start.camera
        rot = euler_to_matrix(start.rotation)[0]
        t = start.translation[0].clone()
        c = torch.cat([start.identity[0], start.expression[0]]).clamp(self.lower, self.upper)
        size = float(np.sqrt(max(np.ptp(target[:, 0].numpy()) * np.ptp(target[:, 1].numpy()), 1.0)))
        scale_r = 1.0 / (cfg.point_sigma * size)
        prior, k = self.prior, cfg.robust_threshold
        persp = camera.kind == PERSPECTIVE
        mu = 1e-3

        def cost_of(c_, rot_, t_):
            e = (self._evaluate(c_, rot_, t_, camera, False)[0] - target).norm(dim=-1) * scale_r
            return float(robust_loss(e, "huber", k)[0].sum() + (prior * c_ * c_).sum())

        cost = cost_of(c, rot, t)
        for _ in range(cfg.iterations):
            proj, jac = self._evaluate(c, rot, t, camera, True)
            r = proj - target
            _, irls = robust_loss(r.norm(dim=-1) * scale_r, "huber", k)
            wt = irls.sqrt() * scale_r
            jr = (jac * wt[:, None, None]).reshape(2 * NUM_MESH_POINTS, -1)
            if not persp:  # an orthographic camera has no depth to fit
                jr[:, 5] = 0.0
            rr = (r * wt[:, None]).reshape(-1)
            hess = jr.T @ jr
            grad = jr.T @ rr
            hess[6:, 6:] += torch.diag(prior)
            grad[6:] += prior * c
            held = ((c <= self.lower + 1e-9) & (grad[6:] > 0)) | ((c >= self.upper - 1e-9) & (grad[6:] < 0))
            free = torch.cat([torch.ones(6, dtype=torch.bool), ~held])
            hess = hess * (free[:, None] & free[None, :]) + torch.diag((~free).double())
            grad = grad * free
            diag = torch.diagonal(hess)
            for _ in range(4):  # Levenberg-Marquardt: shrink the step while the cost rises
                step = -torch.linalg.solve(hess + torch.diag(mu * diag + 1e-9), grad)
                rot1 = _rotation_step(step[:3]) @ rot
                t1 = t + step[3:6]
                if persp:
                    t1[2] = t1[2].clamp(max=-50.0)
                c1 = (c + step[6:]).clamp(self.lower, self.upper)
                cost1 = cost_of(c1, rot1, t1)
                if cost1 <= cost:
                    c, rot, t, cost, mu = c1, rot1, t1, cost1, max(mu / 3, 1e-7)
                    break
                mu *= 8
        proj, _ = self._evaluate(c, rot, t, camera, False)
        rms = float((proj - target).square().sum(-1).mean().sqrt())
        p = start.clone()
        p.rotation = matrix_to_euler(rot)[None]
        p.translation = t[None]
        p.identity = c[None, :self.n_id]
        p.expression = c[None, self.n_id:]
        return p, rms

    def _landmarks(self, params) -> torch.Tensor:
        """The fitted model's 68 iBUG points (1, 68, 2) px (NaN where the model defines none)."""
        m = self.model
        dt = m.vertices_mean.dtype
        verts = m.shape(params.identity.to(dt), params.expression.to(dt), None).double()
        cam = verts @ euler_to_matrix(params.rotation).transpose(1, 2) + params.translation[:, None]
        lm = m.landmarks(cam.to(dt)).double()
        return project_points(lm, params.camera.focal.double(), params.camera.principal.double(),
                              params.camera.kind, min_depth=1e-6)
