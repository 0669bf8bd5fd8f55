"""Photometric refinement and its face crops."""
import numpy as np
import pytest
import torch

from morph3d.fitting import LandmarkFitter, PhotometricConfig, fit_photometric
from morph3d.fitting.crop import Crop
from morph3d.model import Camera
from morph3d.model.lighting import NUM_SH, ambient_lighting
from morph3d.render import linear_to_srgb, render_face
from test_fit_landmarks import SIZE, annotate, face_data, face_model, jaw_reference_vertices, posed  # noqa: F401


@pytest.mark.parametrize("kind", ["perspective", "orthographic"])
def test_crop_camera_sees_what_the_crop_shows(kind):
    cam = Camera.create(2, (300, 400), kind=kind, dtype=torch.float64)
    pts = torch.tensor([[[10.0, -20.0, -500.0], [-35.0, 40.0, -450.0]]] * 2, dtype=torch.float64)
    crop = Crop.around(np.array([[120.0, 80.0], [220.0, 200.0]]), 64, 1.3)
    full = cam.project(pts)
    seen = crop.camera(cam, 1).project(pts[1:])
    torch.testing.assert_close(seen[0], crop.to_crop(full[1]))
    torch.testing.assert_close(crop.to_image(crop.to_crop(full[1])), full[1])


def test_crop_resamples_the_window():
    img = np.zeros((50, 60, 3), np.uint8)
    img[20:30, 30:40] = 255  # a white square, centre (34.5, 24.5)
    crop = Crop(left=25.0, top=15.0, side=20.0, size=40)  # the window [24.5, 44.5) x [14.5, 34.5) in pixels
    pix, inside = crop.image(img)
    assert inside.min() == 1.0
    ys, xs = np.nonzero(pix[..., 0] > 127)
    centre = crop.to_image(np.array([xs.mean(), ys.mean()]))
    np.testing.assert_allclose(centre, [34.5, 24.5], atol=0.3)
    off = Crop(left=-10.0, top=-10.0, side=20.0, size=20)
    _, inside = off.image(img)
    assert inside[:9, :9].max() == 0 and inside[11:, 11:].min() == 1


def test_photometric_refinement_explains_the_photo(face_model):
    model = face_model
    p = posed(model, 20.0, -5.0, 3.0, seed=7)
    light = ambient_lighting(1, 0.7).reshape(1, 3, NUM_SH)
    light[:, :, 3] = 0.8  # light from the viewer's right (+x)
    light[:, :, 2] = 0.6  # and from the camera
    p.lighting = light.reshape(1, -1)
    if model.albedo_dim:
        p.texture[:] = 0.8 * torch.randn(1, model.albedo_dim, generator=torch.Generator().manual_seed(1))
    bg = torch.full((1, 3) + SIZE, 0.2)
    with torch.no_grad():
        photo = render_face(model, p, outputs=("image",), background=bg).image
    image = (linear_to_srgb(photo[0]).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    lm, conf = annotate(model, p, jaw_reference_vertices(model))
    fit = LandmarkFitter(model).fit(lm[None], SIZE, confidence=conf[None])
    cfg = PhotometricConfig(size=96, steps=10, progress=False)
    res = fit_photometric(model, [image], fit, lm[None].numpy(), cfg)
    # the refined render explains the photo far better than the landmark fit under ambient light
    crop = res.crops[0]
    cam = crop.camera(fit.params.camera, 0)
    start = fit.params
    with torch.no_grad():
        before = render_face(model, type(start)(**{**start.tensors(), "camera": cam})).image
    m = res.mask
    err = lambda img: float((m * (img - res.photo).abs()).sum() / (3 * m.sum()))  # noqa: E731
    assert err(res.render) < 0.3 * err(before) and err(res.render) < 0.02, (err(res.render), err(before))
    # never worse on the landmarks
    assert float(res.error_after[0]) <= float(res.error_before[0]) + 1e-9
    # light from the viewer's right: the x coefficient (index 3) relative to the constant one
    est = res.params.lighting.reshape(3, NUM_SH)
    ratio = est[:, 3] / est[:, 0]
    assert (ratio > 0.5 * 0.8 / float(light[0, 0, 0])).all() and (est[:, 1].abs() < 0.1 * est[:, 0]).all(), est
    assert res.landmarks_2d.shape == (1, 68, 2) and res.params.camera.image_size == SIZE


def test_refinement_stops_once_converged(face_model):
    model = face_model
    p = posed(model, 10.0, 0.0, 0.0, seed=3)
    with torch.no_grad():
        photo = render_face(model, p, outputs=("image",)).image
    image = (linear_to_srgb(photo[0]).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    lm, conf = annotate(model, p, jaw_reference_vertices(model))
    fit = LandmarkFitter(model).fit(lm[None], SIZE, confidence=conf[None])
    # every objective falls by less than its own size over 2 steps: stop after 3
    cfg = PhotometricConfig(size=48, steps=20, tolerance=1.0, window=2, progress=False)
    assert len(fit_photometric(model, [image], fit, lm[None].numpy(), cfg).loss) == 3
    with pytest.raises(ValueError, match="tolerance"):
        PhotometricConfig(tolerance=-1.0)
