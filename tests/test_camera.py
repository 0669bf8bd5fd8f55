import pytest
import torch

from morph3d.model import Camera


def test_perspective_projection_of_known_points():
    cam = Camera.create(1, (200, 300), focal=1000.0, dtype=torch.float64)
    assert cam.principal[0].tolist() == [149.5, 99.5]
    pts = torch.tensor([[[0.0, 0.0, -500.0], [50.0, 0.0, -500.0], [0.0, 25.0, -1000.0]]], dtype=torch.float64)
    uv = cam.project(pts)[0]
    torch.testing.assert_close(uv, torch.tensor([[149.5, 99.5], [249.5, 99.5], [149.5, 74.5]], dtype=torch.float64))


def test_orthographic_projection():
    cam = Camera.create(2, (100, 100), focal=2.0, kind="orthographic", dtype=torch.float64)
    pts = torch.tensor([[10.0, -5.0, -3.0]], dtype=torch.float64).expand(2, 1, 3)
    torch.testing.assert_close(cam.project(pts)[:, 0], torch.tensor([[69.5, 59.5]] * 2, dtype=torch.float64))


@pytest.mark.parametrize("kind", ["perspective", "orthographic"])
def test_clip_space_agrees_with_pixel_projection(kind):
    cam = Camera.create(1, (64, 96), focal=120.0 if kind == "perspective" else 0.5, kind=kind,
                        dtype=torch.float64)
    cam.principal += torch.tensor([[3.0, -2.0]], dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    pts = torch.randn(1, 20, 3, generator=g, dtype=torch.float64) * 30 + torch.tensor([0, 0, -400.0],
                                                                                       dtype=torch.float64)
    clip = cam.to_clip(pts, near=10, far=2000)
    ndc = clip[..., :3] / clip[..., 3:]
    uv = cam.project(pts)
    h, w = cam.image_size
    torch.testing.assert_close((ndc[..., 0] + 1) * w / 2 - 0.5, uv[..., 0])
    torch.testing.assert_close((ndc[..., 1] + 1) * h / 2 - 0.5, uv[..., 1])
    assert ((ndc[..., 2] > -1) & (ndc[..., 2] < 1)).all()
    # nearer points get smaller depth
    near = cam.to_clip(torch.tensor([[[0, 0, -100.0]]], dtype=torch.float64))
    far = cam.to_clip(torch.tensor([[[0, 0, -900.0]]], dtype=torch.float64))
    assert (near[..., 2] / near[..., 3]) < (far[..., 2] / far[..., 3])


def test_resized_camera_keeps_projection_relative():
    cam = Camera.create(1, (100, 100), focal=300.0, dtype=torch.float64)
    big = cam.resized((200, 200))
    pts = torch.tensor([[[12.0, -7.0, -400.0]]], dtype=torch.float64)
    torch.testing.assert_close((big.project(pts) + 0.5), (cam.project(pts) + 0.5) * 2)


def test_bad_camera():
    with pytest.raises(ValueError, match="kind"):
        Camera.create(1, (10, 10), kind="fisheye")
    with pytest.raises(ValueError, match="image_size"):
        Camera.create(1, (0, 10))
