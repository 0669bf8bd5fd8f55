"""Dense fit of the ``open`` model to MediaPipe Face Mesh's 468 points.

The open model's vertices 0-467 are MediaPipe's canonical-mesh vertices (``assets/README.md``), so
MediaPipe's 468 detected points are 2D observations of those very vertices: no landmark mapping, and
seven times as many constraints as the 68 iBUG points. Starting from a :class:`LandmarkFitter` result,
pose, identity and expression are refined by Levenberg-Marquardt on

    sum_i w_i rho(|proj(X_i) - m_i| / (point_sigma * size)) + identity_prior |alpha|^2 + |beta / blendshape_sigma|^2

(``rho`` Huber, ``size`` = sqrt of the area of the points' bounding box, ``X_i`` vertex i posed, ``m_i``
MediaPipe's point i, ``w_i`` = 1), with the camera of the starting fit held fixed (perspective focal or
orthographic scale). The points come from the detection when MediaPipe produced its landmarks, else from
MediaPipe run on a crop around the detection's box. In that second case the detection's own landmarks
(dlib's, more precise than MediaPipe's on the faces dlib finds) join the sum: the 51 inner iBUG points
(17-67; the jaw is left to MediaPipe's face oval, which follows the outline at any yaw) as the model's
landmark points with weight ``w_i = landmark_weight``.

The fitted model's 68 landmarks are read out as :class:`LandmarkFitter` does: jaw points (0-16) are the
nearest points of the projected outline to the detection's jaw points (so they follow the silhouette of a
turned head), the others the model's landmark points.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..model.camera import PERSPECTIVE, project_points
from ..model.pose import euler_to_matrix, matrix_to_euler
from .detect import Detection, mediapipe_in_box, mesh_to_ibug68
from .landmark_fit import LandmarkFitResult, LandmarkFitter, robust_loss
from .threads import torch_threads

NUM_MESH_POINTS = 468
INNER = list(range(17, 68))


@dataclass
class DenseFitConfig:
    iterations: int = 6
    point_sigma: float = 0.01        # MediaPipe point noise, fraction of the face size
    identity_prior: float = 1.0      # weight of |alpha|^2 (N(0, 1) identity coefficients)
    blendshape_sigma: float = 1.0    # prior std of blendshape weights (around 0)
    coefficient_limit: float = 4.0   # |identity coefficient| bound
    robust_threshold: float = 2.0    # Huber threshold, in units of point_sigma
    landmark_weight: float = 10.0    # weight of each inner iBUG landmark (dlib's) relative to a mesh point


@dataclass
class DenseFitResult:
    """params: refined FaceParams (B=1). landmarks_2d: (1, 68, 2) px, the fitted model's iBUG points.
    mesh_points: (468, 2) px, MediaPipe's points used (None when none were found: params are the start's).
    rms_px: root-mean-square error over the 468 MediaPipe points. seconds: wall time."""

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
        mean = model.vertices_mean.detach().cpu().double()
        basis = torch.cat([model.identity_basis.detach().cpu().double().reshape(n, 3, ki),
                           model.expression_basis.detach().cpu().double().reshape(n, 3, ke)], 2)
        # rows 0-467: MediaPipe's vertices; rows 468-518: the inner iBUG landmarks (barycentric points)
        tri = model.triangles.cpu()[model.landmark_faces.cpu()][INNER]  # (51, 3)
        bary = model.landmark_bary.detach().cpu().double()[INNER]
        self.landmark_ok = model.landmark_valid.cpu()[INNER]
        self.mean = torch.cat([mean[ids], (mean[tri] * bary[..., None]).sum(1)])  # (519, 3) mm
        self.basis = torch.cat([basis[ids], (basis[tri] * bary[..., None, None]).sum(1)])  # (519, 3, K)
        self.n_id, self.n_exp = ki, ke
        self.prior = torch.cat([torch.full((ki,), cfg.identity_prior, dtype=torch.float64),
                                torch.full((ke,), 1.0 / cfg.blendshape_sigma ** 2, dtype=torch.float64)])
        lim = cfg.coefficient_limit
        self.lower = torch.tensor([-lim] * ki + [0.0] * ke, dtype=torch.float64)
        self.upper = torch.tensor([lim] * ki + [1.0] * ke, dtype=torch.float64)
        self.outline = LandmarkFitter(model)  # its sliding-contour rule reads out the jaw landmarks

    def fit(self, image: np.ndarray, detection: Detection, start: LandmarkFitResult,
            index: int = 0) -> DenseFitResult:
        """Refine face ``index`` of ``start`` (a landmark fit of ``detection``'s landmarks in ``image``).

        image: (H, W, 3) uint8 RGB; MediaPipe is needed unless ``detection.mesh`` is set.
        """
        if detection.mesh is not None:
            return self.fit_points(detection.mesh, start, index=index, jaw=detection.landmarks)
        t0 = time.perf_counter()
        mesh = mediapipe_in_box(image, detection.box)
        if mesh is None:
            p = start.params[index:index + 1].to(dtype=torch.float64)
            return DenseFitResult(p, self._landmarks(p, detection.landmarks), None, float("nan"),
                                  time.perf_counter() - t0)
        result = self.fit_points(mesh, start, detection.landmarks, index)
        result.seconds = time.perf_counter() - t0
        return result

    def fit_points(self, points: np.ndarray, start: LandmarkFitResult, landmarks: np.ndarray | None = None,
                   index: int = 0, jaw: np.ndarray | None = None) -> DenseFitResult:
        """Refine face ``index`` of ``start`` on MediaPipe points (468, 2) px and optionally iBUG-68
        ``landmarks`` (68, 2) px from another detector (their inner 51 are fitted, their jaw points place
        the outline's landmarks); all finite. ``jaw``: (68, 2) px whose jaw points place the outline's
        landmarks when ``landmarks`` is not given (default: the 68 points mapped from ``points``)."""
        t0 = time.perf_counter()
        pts = torch.as_tensor(np.asarray(points, dtype=np.float64))
        if pts.shape != (NUM_MESH_POINTS, 2) or not torch.isfinite(pts).all():
            raise ValueError(f"MediaPipe points must be ({NUM_MESH_POINTS}, 2) finite pixels, got {tuple(pts.shape)}")
        weight = torch.ones(NUM_MESH_POINTS + len(INNER), dtype=torch.float64)
        weight[NUM_MESH_POINTS:] = 0.0
        target = torch.cat([pts, torch.zeros(len(INNER), 2, dtype=torch.float64)])
        if landmarks is not None:
            lm = torch.as_tensor(np.asarray(landmarks, dtype=np.float64))
            if lm.shape != (68, 2) or not torch.isfinite(lm).all():
                raise ValueError(f"landmarks must be (68, 2) finite pixels, got {tuple(lm.shape)}")
            target[NUM_MESH_POINTS:] = lm[INNER]
            weight[NUM_MESH_POINTS:] = self.config.landmark_weight * self.landmark_ok.double()
        with torch_threads(1):
            params, rms = self._refine(target, weight, start.params[index:index + 1].to(dtype=torch.float64))
            if landmarks is not None:
                jaw = landmarks
            elif jaw is None:
                jaw = mesh_to_ibug68(pts.numpy())
            return DenseFitResult(params, self._landmarks(params, jaw), pts.numpy(), rms, time.perf_counter() - t0)

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

    def _refine(self, target: torch.Tensor, weight: torch.Tensor, start):
        """target (519, 2) px and weight (519,): MediaPipe's points, then the inner iBUG landmarks."""
        cfg = self.config
        camera = start.camera
        rot = euler_to_matrix(start.rotation)[0]
        t = start.translation[0].clone()
        c = torch.cat([start.identity[0], start.expression[0]]).clamp(self.lower, self.upper)
        mesh = target[:NUM_MESH_POINTS].numpy()
        size = float(np.sqrt(max(np.ptp(mesh[:, 0]) * np.ptp(mesh[:, 1]), 1.0)))
        scale_r = 1.0 / (cfg.point_sigma * size)
        prior, k = self.prior, cfg.robust_threshold
        persp = camera.kind == PERSPECTIVE
        mu = 1e-3

        def cost_of(c_, rot_, t_):
            e = (self._evaluate(c_, rot_, t_, camera, False)[0] - target).norm(dim=-1) * scale_r
            return float((weight * robust_loss(e, "huber", k)[0]).sum() + (prior * c_ * c_).sum())

        cost = cost_of(c, rot, t)
        for _ in range(cfg.iterations):
            proj, jac = self._evaluate(c, rot, t, camera, True)
            r = proj - target
            _, irls = robust_loss(r.norm(dim=-1) * scale_r, "huber", k)
            wt = (irls * weight).sqrt() * scale_r
            jr = (jac * wt[:, None, None]).reshape(2 * len(target), -1)
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
        rms = float((proj - target)[:NUM_MESH_POINTS].square().sum(-1).mean().sqrt())
        p = start.clone()
        p.rotation = matrix_to_euler(rot)[None]
        p.translation = t[None]
        p.identity = c[None, :self.n_id]
        p.expression = c[None, self.n_id:]
        return p, rms

    def _landmarks(self, params, jaw_targets) -> torch.Tensor:
        """The fitted model's 68 iBUG points (1, 68, 2) px, jaw points on the outline nearest to
        ``jaw_targets`` (68, 2) px (NaN where the model defines none)."""
        m, cam_ = self.model, params.camera
        dt = m.vertices_mean.dtype
        verts = m.shape(params.identity.to(dt), params.expression.to(dt), None).double()
        cam = verts @ euler_to_matrix(params.rotation).transpose(1, 2) + params.translation[:, None]
        f, pp = cam_.focal.double(), cam_.principal.double()
        lm = project_points(m.landmarks(cam.to(dt)).double(), f, pp, cam_.kind, min_depth=1e-6)
        o = self.outline
        if len(o.contour_queries):
            vid = torch.from_numpy(o.contour.vertex_ids)
            img = project_points(cam[:, vid], f, pp, cam_.kind, min_depth=1e-6)
            q = o.contour_queries
            targets = torch.as_tensor(np.asarray(jaw_targets, dtype=np.float64))[None, q]
            ids, w, found = o.contour.select(cam[:, vid], img, targets, o.contour_sides, cam_.kind == PERSPECTIVE)
            on_outline = (img[0][ids[0]] * w[0][..., None]).sum(1)
            lm[0, q] = torch.where(found[0, :, None], on_outline, torch.full_like(on_outline, float("nan")))
        return lm
