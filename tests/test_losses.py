"""The shared loss terms (morph3d.fitting.losses): values against hand computations, masks, robust
kernels, the landmark term with the sliding jaw contour on the open model, priors and the perceptual slot."""
import math

import pytest
import torch

from morph3d.fitting import LandmarkFitConfig
from morph3d.fitting.losses import (LandmarkLoss, PerceptualLoss, PhotometricLoss, PriorLoss, PriorWeights,
                                    contour_metric, face_size, feature_distance, landmark_loss, landmark_points,
                                    photometric_loss, robust_loss, tikhonov)
from morph3d.model import IBUG68, load_model


@pytest.fixture(scope="module")
def open_model():
    try:
        return load_model("open")
    except (FileNotFoundError, ValueError):
        pytest.skip("the embedded open model is not available")


def _turned_params(model, yaw=0.5):
    p = model.default_params(1, (256, 256))
    p.rotation[0, 0] = yaw
    return p


# ---- robust kernels and photometric --------------------------------------------------------
def test_robust_kernels_match_their_formulas():
    e = torch.tensor([0.0, 1.0, 2.0, 5.0], dtype=torch.float64)
    rho, w = robust_loss(e, "huber", 2.0)
    torch.testing.assert_close(rho, torch.tensor([0.0, 1.0, 4.0, 2 * 2 * 5 - 4], dtype=torch.float64))
    torch.testing.assert_close(w, torch.tensor([1.0, 1.0, 1.0, 0.4], dtype=torch.float64))
    rho, w = robust_loss(e, "geman_mcclure", 2.0)
    torch.testing.assert_close(rho, e * e / (1 + (e / 2) ** 2))
    # IRLS weight = rho'(e) / 2e, checked by autograd
    x = e[1:].clone().requires_grad_(True)
    robust_loss(x, "geman_mcclure", 2.0)[0].sum().backward()
    torch.testing.assert_close(x.grad / (2 * x.detach()), w[1:])
    with pytest.raises(ValueError, match="robust must be one of"):
        robust_loss(e, "cauchy", 1.0)


def test_photometric_loss_is_the_masked_mean_of_the_pixel_distance():
    g = torch.Generator().manual_seed(0)
    render, photo = torch.rand(2, 3, 5, 4, generator=g), torch.rand(2, 3, 5, 4, generator=g)
    weight = (torch.rand(2, 1, 5, 4, generator=g) > 0.4).float() * 0.5
    norm = (render - photo).square().sum(1, keepdim=True).sqrt()
    for kind, dist in (("l21", norm), ("l2", norm ** 2), ("l1", (render - photo).abs().sum(1, keepdim=True))):
        expect = (weight * dist).sum((1, 2, 3)) / weight.sum((1, 2, 3))
        torch.testing.assert_close(photometric_loss(render, photo, weight, kind), expect, atol=1e-4, rtol=1e-5)
    # pixels outside the mask do not matter
    changed = photo.clone()
    changed[weight.expand_as(photo) == 0] = 7.0
    torch.testing.assert_close(photometric_loss(render, changed, weight), photometric_loss(render, photo, weight))
    with pytest.raises(ValueError, match="photometric loss must be one of"):
        photometric_loss(render, photo, weight, "ssim")
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        photometric_loss(render, photo, weight[:, :, :3])


def test_huber_photo_loss_is_continuous_and_linear_beyond_delta():
    photo = torch.zeros(1, 3, 1, 4)
    render = torch.zeros(1, 3, 1, 4)
    render[0, 0, 0] = torch.tensor([0.05, 0.1 - 1e-6, 0.1 + 1e-6, 0.5])
    weight = torch.zeros(1, 1, 1, 4)
    per_pixel = []
    for i in range(4):
        weight.zero_()
        weight[..., i] = 1.0
        per_pixel.append(float(PhotometricLoss("huber", delta=0.1)(render, photo, weight)))
    assert per_pixel[0] == pytest.approx(0.5 * 0.05 ** 2 / 0.1, rel=1e-3)
    assert per_pixel[1] == pytest.approx(per_pixel[2], abs=1e-5)
    assert per_pixel[3] == pytest.approx(0.5 - 0.05, rel=1e-4)


# ---- landmarks -----------------------------------------------------------------------------
def test_landmark_loss_weights_scales_and_masks():
    pred = torch.tensor([[[0.0, 0.0], [3.0, 4.0], [float("nan"), 1.0]]], requires_grad=True)
    target = torch.zeros(1, 3, 2)
    weight = torch.tensor([[1.0, 0.5, 0.0]])
    scale = torch.tensor([0.1])
    loss = landmark_loss(pred, target, weight, scale, robust="none")
    assert float(loss.detach()) == pytest.approx(0.5 * (5 * 0.1) ** 2)
    loss.backward()  # the NaN landmark is dropped and leaves no NaN gradient
    assert torch.isfinite(pred.grad).all()
    huber = landmark_loss(pred.detach(), target, weight, scale, robust="huber", threshold=0.2)
    assert float(huber) == pytest.approx(0.5 * (2 * 0.2 * 0.5 - 0.04))


def test_contour_metric_measures_the_normal_component():
    r = torch.tensor([[[3.0, 4.0], [1.0, 2.0]]], dtype=torch.float64)
    m = contour_metric(r, torch.tensor([0]), tangent_weight=0.0)
    torch.testing.assert_close(m[0, 1], torch.eye(2, dtype=torch.float64))
    out = (m @ r[..., None])[..., 0]
    torch.testing.assert_close(out[0, 0], torch.tensor([5.0, 0.0], dtype=torch.float64))
    m = contour_metric(r, torch.tensor([0]), tangent_weight=1.0)  # a rotation: lengths kept
    assert float((m[0, 0] @ torch.tensor([-4.0, 3.0], dtype=torch.float64)).norm()) == pytest.approx(5.0)


def test_face_size_uses_only_used_points():
    pts = torch.tensor([[[0.0, 0.0], [10.0, 40.0], [1000.0, 1000.0]]])
    used = torch.tensor([[True, True, False]])
    assert float(face_size(pts, used)) == pytest.approx(20.0)


def test_landmark_loss_module_is_zero_at_the_truth_and_recovers_translation(open_model):
    model = open_model
    p = _turned_params(model, 0.2)
    geo = model(p)
    target = torch.nan_to_num(geo.landmarks_2d.detach(), nan=0.0)
    loss_fn = LandmarkLoss(model, contour="fixed")
    assert float(loss_fn(geo.vertices_cam, p.camera, target)) < 1e-6
    # undefined landmarks take no part, whatever their target
    if not bool(model.landmark_valid.all()):
        far = target.clone()
        far[:, ~model.landmark_valid] = 1e4
        assert float(loss_fn(geo.vertices_cam, p.camera, far)) < 1e-6

    # a translation moves every camera-frame vertex by the same offset
    shift = torch.tensor([[6.0, -4.0, 0.0]], requires_grad=True)
    opt = torch.optim.Adam([shift], lr=0.5)
    start = geo.vertices_cam.detach()
    for _ in range(60):
        opt.zero_grad()
        loss_fn(start + shift[:, None], p.camera, target).sum().backward()
        opt.step()
    torch.testing.assert_close(shift.detach()[0, :2], torch.zeros(2), atol=0.3, rtol=0)


def test_sliding_jaw_landmarks_follow_the_outline_of_a_turned_head(open_model):
    model = open_model
    p = _turned_params(model, 0.6)
    geo = model(p)
    guess = torch.nan_to_num(geo.landmarks_2d.detach(), nan=0.0)
    sliding = LandmarkLoss(model, contour="sliding")
    assert sliding.contour is not None, "the open model has outline candidates"
    ids, w, defined = sliding.correspondences(geo.vertices_cam, p.camera, guess)
    outline = p.camera.project(landmark_points(geo.vertices_cam, ids, w))
    jaw = list(IBUG68.jaw)
    assert bool(defined[0, jaw].all())
    # jaw targets on the projected outline: their nearest outline points are themselves
    target = guess.clone()
    target[:, jaw] = outline[:, jaw]
    assert float(sliding(geo.vertices_cam, p.camera, target)) < 1e-3
    fixed = LandmarkLoss(model, contour="fixed")
    assert float(fixed(geo.vertices_cam, p.camera, target)) > 100 * float(sliding(geo.vertices_cam, p.camera, target))
    with pytest.raises(ValueError, match=r"\(B, 68, 2\)"):
        sliding(geo.vertices_cam, p.camera, target[:, :60])


# ---- priors and the perceptual slot --------------------------------------------------------
def test_priors_are_tikhonov_in_std_units(open_model):
    c = torch.tensor([[1.0, -2.0, 0.5]])
    assert float(tikhonov(c, 2.0)) == pytest.approx(2 * 5.25)
    assert float(tikhonov(c, torch.tensor([1.0, 0.0, 4.0]))) == pytest.approx(1 + 1)
    assert float(tikhonov(c, 1.0, centre=c)) == 0.0
    weights = PriorWeights(identity=2.0, expression=5.0, blendshape_sigma=0.5, texture=3.0)
    assert open_model.expression_kind == "blendshapes"
    assert weights.expression_weight(open_model) == pytest.approx(4.0)
    p = open_model.default_params(2)
    p.identity[:, 0] = 1.0
    p.expression[:, 0] = 0.5
    p.texture[:, :2] = 1.0 if open_model.albedo_dim >= 2 else 0.0
    expect = 2.0 + 4.0 * 0.25 + (3.0 * 2 if open_model.albedo_dim >= 2 else 0.0)
    torch.testing.assert_close(PriorLoss(open_model, weights)(p), torch.full((2,), expect))
    # the landmark fit's config gives the same weights
    cfg = LandmarkFitConfig(identity_prior=2.0, expression_prior=5.0, blendshape_sigma=0.5)
    assert cfg.priors.expression_weight(open_model) == pytest.approx(4.0)


def test_perceptual_slot_compares_features_of_a_supplied_network():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 3))
    layers = lambda x: [net[:2](x), net(x)]  # noqa: E731
    a = torch.rand(2, 3, 12, 12, requires_grad=True)
    b = torch.rand(2, 3, 12, 12)
    for distance in ("cosine", "l2"):
        loss = PerceptualLoss(layers, distance=distance, weights=[1.0, 0.5])
        same = loss(b, b)
        torch.testing.assert_close(same, torch.zeros(2), atol=1e-6, rtol=0)
        d = loss(a, b)
        assert d.shape == (2,) and bool((d > 0).all())
        d.sum().backward()
        assert a.grad is not None and float(a.grad.abs().sum()) > 0
        a.grad = None
    # cosine ignores feature scale, as identity embeddings need
    emb = torch.randn(3, 16)
    torch.testing.assert_close(feature_distance([emb], [3 * emb]), torch.zeros(3), atol=1e-6, rtol=0)
    one = torch.eye(16)[:2]
    assert float(feature_distance([one[:1]], [one[1:]])[0]) == pytest.approx(1.0)
    module = PerceptualLoss(net)
    assert any(n.startswith("features.") for n, _ in module.named_parameters())
    with pytest.raises(TypeError, match="callable"):
        PerceptualLoss(42)
    with pytest.raises(ValueError, match="distance must be one of"):
        PerceptualLoss(net, distance="lpips")


def test_landmark_fit_cost_is_the_shared_landmark_and_prior_terms(open_model):
    """The LM fitter's objective is landmark_loss + tikhonov: recompute it from the result (fixed jaw)."""
    from morph3d.fitting import LandmarkFitter
    model = open_model
    p = _turned_params(model, 0.3)
    target = model(p).landmarks_2d.detach().double()
    cfg = LandmarkFitConfig(contour="fixed", iterations=3)
    fitter = LandmarkFitter(model, cfg)
    lm = torch.nan_to_num(target, nan=0.0)
    r = fitter.fit(lm, (256, 256), focal=float(p.camera.focal[0]))
    used = r.used
    pred = torch.nan_to_num(r.landmarks_2d.double(), nan=0.0)
    scale = 1.0 / (cfg.landmark_sigma * face_size(lm, used))
    coeffs = torch.cat([r.params.identity[:, :fitter.n_id], r.params.expression[:, :fitter.n_exp]], 1).double()
    cost = (landmark_loss(pred, lm, used.double(), scale, cfg.robust, cfg.robust_threshold)
            + tikhonov(coeffs, fitter.prior))
    assert float(cost) == pytest.approx(float(r.history[-1][0]), rel=1e-4, abs=1e-6)
    assert math.isfinite(float(cost))
