"""Landmark fitting: Jacobians, closed-form start, recovery of known parameters, sliding jaw contour,
batching, robustness. Runs on the embedded 'open' model (or the SFM from ../shared if 'open' is absent)."""
import math

import numpy as np
import pytest
import torch

from conftest import SHARED
from morph3d.fitting import LandmarkFitConfig, LandmarkFitter
from morph3d.fitting.landmark_fit import _rodrigues
from morph3d.fitting.pose_init import affine_camera, pose_from_affine
from morph3d.model import MorphableModel
from morph3d.model.canonical import landmark_faces_from_vertices
from morph3d.model.loaders import load_canonical
from morph3d.model.pose import euler_to_matrix

SIZE = (400, 400)
SFM = SHARED / "models" / "sfm" / "sfm_shape_3448.bin"


@pytest.fixture(scope="module")
def face_data():
    for source in ("open", SFM):
        try:
            return load_canonical(str(source))
        except (FileNotFoundError, ValueError):
            continue
    pytest.skip("neither the open model nor ../shared's SFM is available")


@pytest.fixture(scope="module")
def face_model(face_data):
    return MorphableModel(face_data)


@pytest.fixture(scope="module", params=["open", "sfm"])
def each_model_data(request):
    """Both the open model and the SFM (the SFM only with ../shared)."""
    source = "open" if request.param == "open" else SFM
    try:
        return load_canonical(str(source))
    except (FileNotFoundError, ValueError):
        pytest.skip(f"{source} is not available")


def jaw_reference_vertices(model) -> np.ndarray:
    """Model vertices of the jaw landmarks 0-16 on the frontal outline: the model's own jaw landmarks
    where defined, else points spread along its (ordered) contour lists."""
    tri = model.triangles.numpy()
    own = tri[model.landmark_faces.numpy(), model.landmark_bary.numpy().argmax(1)]
    valid = model.landmark_valid.numpy()
    ref = np.empty(17, np.int64)
    pick = np.round(np.linspace(1, len(model.contour_right) - 2, 8)).astype(int)
    ref[:8] = model.contour_right.numpy()[pick]
    ref[9:] = model.contour_left.numpy()[pick][::-1]
    ref[8] = own[8]
    return np.where(valid[:17], own[:17], ref)


def annotate(model, params, ref):
    """Annotator-style landmarks of a posed face: the inner ones and the chin from the model; the other
    jaw points on the visible outline, i.e. the outermost projected vertex (on that side of the face)
    at the image row of the corresponding frontal-outline vertex."""
    out = model(params)
    lm = out.landmarks_2d[0].clone()
    pts = params.camera.project(out.vertices_cam)[0]
    x = model.vertices_mean[:, 0]
    central = x.abs() < 0.1 * (x.max() - x.min())
    for j in [*range(8), *range(9, 17)]:
        left = j > 8
        r = pts[ref[j]]
        band = ((pts[:, 1] - r[1]).abs() < 2.0) & ~central & ((x > 0) == left)
        u = torch.cat([pts[band, 0], r[:1]])
        lm[j] = torch.stack([u.max() if left else u.min(), r[1]])
    conf = torch.isfinite(lm).all(1).double()
    return torch.nan_to_num(lm).double(), conf


def posed(model, yaw, pitch, roll, seed=0, expression=None):
    p = model.default_params(1, image_size=SIZE)
    g = torch.Generator().manual_seed(seed)
    p.identity[:] = 0.6 * torch.randn(1, model.identity_dim, generator=g)
    if expression is not None:
        p.expression[:] = expression
    p.rotation[0] = torch.tensor([math.radians(a) for a in (yaw, pitch, roll)])
    p.translation[0] = torch.tensor([6.0, -4.0, -650.0])
    return p


def pose_deg(result):
    return np.degrees(result.params.rotation[0].double().numpy())


# ---- building blocks --------------------------------------------------------------------------
def test_affine_start_recovers_orthographic_pose():
    g = torch.Generator().manual_seed(1)
    pts = torch.randn(2, 30, 3, generator=g, dtype=torch.float64) * 40
    angles = torch.tensor([[0.4, -0.2, 0.1], [-0.7, 0.3, -0.25]], dtype=torch.float64)
    rot = euler_to_matrix(angles)
    s = torch.tensor([1.7, 0.6], dtype=torch.float64)
    cam = pts @ rot.transpose(1, 2)
    uv = torch.stack([100 + s[:, None] * cam[..., 0], 80 - s[:, None] * cam[..., 1]], -1)
    a, b = affine_camera(pts, uv, torch.ones(2, 30, dtype=torch.float64))
    r_est, t_est, s_est = pose_from_affine(a, b, pts.mean(1), torch.tensor([[100.0, 80.0]] * 2, dtype=torch.float64),
                                           None)
    torch.testing.assert_close(r_est, rot)
    torch.testing.assert_close(s_est, s)
    torch.testing.assert_close(t_est[:, :2], torch.zeros(2, 2, dtype=torch.float64), atol=1e-6, rtol=0)


@pytest.mark.parametrize("camera", ["perspective", "orthographic"])
def test_analytic_jacobian_matches_finite_differences(face_model, camera):
    fitter = LandmarkFitter(face_model, LandmarkFitConfig(camera=camera, identity_components=10,
                                                          expression_components=5))
    g = torch.Generator().manual_seed(3)
    k = fitter.n_id + fitter.n_exp
    c = 0.3 * torch.rand(1, k, generator=g, dtype=torch.float64)
    rot = euler_to_matrix(torch.tensor([[0.3, -0.2, 0.1]], dtype=torch.float64))
    t = torch.tensor([[5.0, -3.0, -600.0]], dtype=torch.float64)
    f = torch.tensor([900.0 if camera == "perspective" else 1.5], dtype=torch.float64)
    pp = torch.tensor([[200.0, 180.0]], dtype=torch.float64)
    ids, w = fitter.fixed_ids[None], fitter.fixed_w[None]
    _, jac = fitter._evaluate(c, rot, t, f, pp, ids, w, jacobian=True)

    def project(step):
        c1, r1, t1, f1 = fitter._apply(c, rot, t, f, step[None])
        return fitter._evaluate(c1, r1, t1, f1, pp, ids, w, jacobian=False)[0][0]

    h = 1e-6  # central differences in float64
    eye = torch.eye(fitter.num_params, dtype=torch.float64) * h
    ref = torch.stack([(project(e) - project(-e)) / (2 * h) for e in eye], dim=-1)
    valid = fitter.valid
    torch.testing.assert_close(jac[0][valid], ref[valid], rtol=1e-5, atol=1e-5)


def test_rodrigues_is_a_rotation():
    w = torch.tensor([[0.3, -1.2, 0.5], [1e-9, 0, 0]], dtype=torch.float64)
    r = _rodrigues(w)
    torch.testing.assert_close(r @ r.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(2, 3, 3))
    axis_rot = r[0] @ (w[0] / w[0].norm())
    torch.testing.assert_close(axis_rot, w[0] / w[0].norm())  # the axis is fixed


# ---- recovery -----------------------------------------------------------------------------------
def test_recovers_pose_and_expression(each_model_data):
    """Pose to a fraction of a degree; an expression to within 30 % of its weight, and no other
    expression stronger (expressions 2D landmarks can see: jaw opening, smiles, brows, ...)."""
    model = MorphableModel(each_model_data)
    ref = jaw_reference_vertices(model)
    truth = (22.0, -9.0, 6.0)
    fitter = LandmarkFitter(model)
    wanted = [n for n in ("jaw_open", "smile_left", "brow_raise_left") if n in model.expression_names]
    chosen = [model.expression_names.index(n) for n in wanted] or list(range(min(3, model.expression_dim)))
    for k in chosen:
        expr = torch.zeros(1, model.expression_dim)
        expr[0, k] = 0.7 if model.expression_kind == "blendshapes" else 1.5
        p = posed(model, *truth, expression=expr)
        p.identity.zero_()  # the mean face, so that identity cannot stand in for the expression
        lm, conf = annotate(model, p, ref)
        r = fitter.fit(lm[None], SIZE, confidence=conf[None])
        np.testing.assert_allclose(pose_deg(r), truth, atol=0.5)
        fitted = r.params.expression[0]
        assert int(fitted.abs().argmax()) == k, (k, fitted)
        assert abs(float(fitted[k] - expr[0, k])) < 0.3 * float(expr[0, k]), (k, fitted)
        assert float(r.rms_px) < 1.0


def test_sliding_contour_recovers_yaw_of_a_turned_face(each_model_data):
    """At 40 degrees of yaw the jaw landmarks on the far side sit on the cheek's silhouette: sliding
    correspondences follow it, fixed jaw vertices (the frontal outline) cannot."""
    ref = jaw_reference_vertices(MorphableModel(each_model_data))
    data = dict(each_model_data)
    lf, lb = landmark_faces_from_vertices(ref, data["triangles"])
    data["landmark_faces"] = np.concatenate([lf, data["landmark_faces"][17:]])
    data["landmark_bary"] = np.concatenate([lb, data["landmark_bary"][17:]])
    model = MorphableModel(data)  # the same face, with the frontal-outline vertices as jaw landmarks
    errors = {}
    for yaw in (40.0, -40.0):
        truth = np.array([yaw, 6.0, -4.0])
        lm, conf = annotate(model, posed(model, *truth, seed=2), ref)
        for mode in ("sliding", "fixed"):
            r = LandmarkFitter(model, LandmarkFitConfig(contour=mode)).fit(lm[None], SIZE, confidence=conf[None])
            errors[(yaw, mode)] = np.abs(pose_deg(r) - truth)
    for yaw in (40.0, -40.0):
        assert errors[(yaw, "sliding")][0] < 2.5, errors
        assert errors[(yaw, "fixed")][0] > errors[(yaw, "sliding")][0] + 2.0, errors


def test_batch_equals_one_at_a_time(face_model):
    ref = jaw_reference_vertices(face_model)
    marks = []
    for i, pose in enumerate([(10, 0, 0), (-30, 8, 3), (45, -5, -8)]):
        lm, _ = annotate(face_model, posed(face_model, *pose, seed=i), ref)
        marks.append(lm)
    marks = torch.stack(marks)
    fitter = LandmarkFitter(face_model)
    together = fitter.fit(marks, SIZE)
    for i in range(3):
        alone = fitter.fit(marks[i:i + 1], SIZE)
        torch.testing.assert_close(together.params.rotation[i], alone.params.rotation[0], atol=1e-4, rtol=0)
        torch.testing.assert_close(together.landmarks_2d[i], alone.landmarks_2d[0], atol=1e-3, rtol=0,
                                   equal_nan=True)


def test_robust_loss_resists_bad_landmarks(face_model):
    ref = jaw_reference_vertices(face_model)
    truth = np.array([15.0, 5.0, 0.0])
    lm, conf = annotate(face_model, posed(face_model, *truth, seed=4), ref)
    bad = lm.clone()
    bad[[30, 48, 54]] += torch.tensor([[60.0, 0.0], [0.0, 55.0], [-50.0, 40.0]], dtype=bad.dtype)
    err = {}
    for loss in ("huber", "none"):
        r = LandmarkFitter(face_model, LandmarkFitConfig(robust=loss)).fit(bad[None], SIZE, confidence=conf[None])
        good = [i for i in range(17, 68) if i not in (30, 48, 54) and conf[i] > 0]
        err[loss] = float((r.landmarks_2d[0, good].double() - lm[good]).norm(dim=-1).mean())
    assert err["huber"] < 0.6 * err["none"], err


def test_orthographic_camera_fits_a_distant_face(face_model):
    ref = jaw_reference_vertices(face_model)
    p = posed(face_model, -18.0, 7.0, 3.0, seed=5)
    p.translation[0, 2] = -5000.0
    p.camera.focal[:] = 6000.0
    lm, conf = annotate(face_model, p, ref)
    r = LandmarkFitter(face_model, LandmarkFitConfig(camera="orthographic")).fit(lm[None], SIZE, confidence=conf[None])
    np.testing.assert_allclose(pose_deg(r), [-18.0, 7.0, 3.0], atol=1.5)
    assert r.params.camera.kind == "orthographic"
    assert abs(float(r.params.camera.focal[0]) - 6000.0 / 5000.0) < 0.08  # px per mm


def test_undefined_landmarks_are_skipped(face_data):
    data = dict(face_data)
    lf = data["landmark_faces"].copy()
    lf[[31, 35, 60]] = -1
    data["landmark_faces"] = lf
    model = MorphableModel(data)
    ref = jaw_reference_vertices(model)
    lm, conf = annotate(model, posed(model, 12.0, -4.0, 2.0, seed=6), ref)
    lm = torch.where(torch.isfinite(lm), lm, torch.zeros_like(lm))
    fitter = LandmarkFitter(model)
    a = fitter.fit(lm[None], SIZE, confidence=conf[None])
    moved = lm.clone()
    moved[[31, 35, 60]] += 80.0  # wherever they are, they must not matter
    b = fitter.fit(moved[None], SIZE, confidence=conf[None])
    assert torch.isnan(a.landmarks_2d[0, [31, 35, 60]]).all() and not a.used[0, [31, 35, 60]].any()
    torch.testing.assert_close(a.params.rotation, b.params.rotation)


def test_bad_inputs_are_refused(face_model):
    fitter = LandmarkFitter(face_model)
    with pytest.raises(ValueError, match=r"\(B, 68, 2\)"):
        fitter.fit(np.zeros((1, 67, 2)), SIZE)
    bad = np.full((1, 68, 2), 50.0)
    bad[0, 3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fitter.fit(bad, SIZE)
    with pytest.raises(ValueError, match="contour must be"):
        LandmarkFitConfig(contour="elastic")
