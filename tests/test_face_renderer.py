"""FaceRenderer / RenderSettings: the module renders what render_face renders, rescales cameras through the
one rescaling rule, follows .to() without checkpointing the model, and validates its settings."""
import pytest
import torch

from morph3d.model import Camera, project_points
from morph3d.render import FaceRenderer, RenderSettings, render_face
from render_fixtures import sphere_model


@pytest.fixture(scope="module")
def model():
    return sphere_model()


def _params(model, size=(48, 64)):
    p = model.default_params(2, size)
    p.rotation[1, 0] = 0.4
    p.translation[:, 2] = -400.0
    return p


def test_module_matches_render_face(model):
    p = _params(model)
    settings = RenderSettings(outputs=("image", "mask", "depth"))
    out = FaceRenderer(model, settings)(p)
    ref = render_face(model, p, outputs=("image", "mask", "depth"))
    for name in ("image", "mask", "depth"):
        torch.testing.assert_close(getattr(out, name), getattr(ref, name))
    assert out.normals is None and out.landmarks_2d is None


def test_image_size_rescales_the_camera(model):
    p = _params(model, (32, 32))
    big = FaceRenderer(model, RenderSettings(image_size=(64, 64), outputs=("mask", "landmarks")))(p)
    assert big.mask.shape == (2, 1, 64, 64)
    small = render_face(model, p, outputs=("landmarks",))
    # pixel-edge coordinates scale by 2 (docs/conventions.md: pixel centres at integers)
    torch.testing.assert_close(big.landmarks_2d + 0.5, (small.landmarks_2d + 0.5) * 2, equal_nan=True)
    same = FaceRenderer(model, RenderSettings(image_size=(32, 32)))
    assert same.camera_params(p) is p


def test_background_and_gradients(model):
    p = _params(model)
    p.translation.requires_grad_(True)
    r = FaceRenderer(model, RenderSettings(outputs=("image", "mask"), background=(0.0, 1.0, 0.0)))
    out = r(p)
    corner = out.image[0, :, 0, 0]
    torch.testing.assert_close(corner, torch.tensor([0.0, 1.0, 0.0]))
    out.image.sum().backward()
    assert float(p.translation.grad.abs().sum()) > 0
    explicit = r(p.detach(), background=torch.zeros(3, 48, 64))
    assert float(explicit.image[0, :, 0, 0].abs().sum()) == 0.0


def test_model_follows_to_but_stays_out_of_the_state_dict(model):
    m = sphere_model()
    r = FaceRenderer(m)
    assert r.state_dict() == {} and list(r.parameters()) == []
    holder = torch.nn.Sequential(torch.nn.Linear(2, 2), r)
    assert all(not k.startswith("1.") for k in holder.state_dict())
    holder.to(torch.float64)
    assert m.vertices_mean.dtype == torch.float64
    out = r(_params(m).to(dtype=torch.float64))
    assert out.image.dtype == torch.float64
    assert "sphere" in repr(r) or "model=" in repr(r)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="render outputs"):
        RenderSettings(outputs=("image", "colour"))
    with pytest.raises(ValueError, match="render outputs"):
        RenderSettings(outputs=())
    with pytest.raises(ValueError, match="image_size must be positive"):
        RenderSettings(image_size=(0, 10))
    with pytest.raises(ValueError, match="3 linear RGB"):
        RenderSettings(background=(1.0, 0.0))
    with pytest.raises(ValueError, match="unknown rasterization backend"):
        RenderSettings(backend="opengl")
    assert RenderSettings(outputs="mask").outputs == ("mask",)
    with pytest.raises(TypeError, match="FaceParams"):
        FaceRenderer(sphere_model())(torch.zeros(1, 257))


def test_one_rescaling_rule_for_resize_and_crop():
    cam = Camera.create(2, (100, 80), dtype=torch.float64)
    pts = torch.tensor([[[10.0, -5.0, -400.0], [-20.0, 30.0, -380.0]]], dtype=torch.float64).expand(2, -1, -1)
    uv = cam.project(pts)
    # a crop: the window of side 40 px from (12.5, 30) resampled to 80 x 80
    crop = cam.rescaled(2.0, (80, 80), offset=(12.5, 30.0))
    torch.testing.assert_close(crop.project(pts) + 0.5, (uv + 0.5 - torch.tensor([12.5, 30.0]).double()) * 2.0)
    torch.testing.assert_close(cam.resized((200, 160)).project(pts) + 0.5, (uv + 0.5) * 2)
    with pytest.raises(ValueError, match="same scale on both axes"):
        cam.rescaled((2.0, 1.0), (200, 80))
    ortho = Camera.create(2, (100, 80), kind="orthographic", dtype=torch.float64)
    with pytest.raises(ValueError, match="same scale on both axes"):  # one scale serves both axes
        ortho.resized((100, 160))
    torch.testing.assert_close(ortho.resized((50, 40)).project(pts) + 0.5, (ortho.project(pts) + 0.5) / 2)


def test_the_one_projection_function():
    pts = torch.tensor([[[10.0, -5.0, -400.0], [0.0, 0.0, 0.0]]], dtype=torch.float64)
    f, pp = torch.tensor([800.0], dtype=torch.float64), torch.tensor([[50.0, 40.0]], dtype=torch.float64)
    uv = project_points(pts, f, pp)
    torch.testing.assert_close(uv[0, 0], torch.tensor([50 + 800 * 10 / 400, 40 - 800 * -5 / 400], dtype=torch.float64))
    assert not torch.isfinite(uv[0, 1]).all()
    assert torch.isfinite(project_points(pts, f, pp, min_depth=1e-6)).all()
    ortho = project_points(pts, torch.tensor([2.0], dtype=torch.float64), pp, "orthographic")
    torch.testing.assert_close(ortho[0, 0], torch.tensor([70.0, 50.0], dtype=torch.float64))
