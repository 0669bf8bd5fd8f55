import math

import numpy as np
import pytest
import torch

from morph3d.model import Camera, load_model
from morph3d.model.pose import euler_to_matrix
from morph3d.render import flow_to_grid, render_face, render_flow, warp_by_flow
from render_fixtures import directional_lighting, quad_model, sphere_model


def test_warp_by_integer_and_half_pixel_shifts():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 10, 12, generator=g, dtype=torch.float64)
    flow = torch.zeros(2, 2, 10, 12, dtype=torch.float64)
    flow[:, 0], flow[:, 1] = 2.0, -1.0
    out = warp_by_flow(img, flow)
    torch.testing.assert_close(out[:, :, 1:, :10], img[:, :, :9, 2:])  # out[y, x] = img[y - 1, x + 2]
    assert (out[:, :, 0] == 0).all() and (out[:, :, :, 10:] == 0).all()  # samples outside the image are 0
    flow = torch.zeros_like(flow)
    flow[:, 0] = 0.5
    out = warp_by_flow(img, flow)
    torch.testing.assert_close(out[..., :11], 0.5 * (img[..., :11] + img[..., 1:]))
    valid = torch.zeros(2, 1, 10, 12, dtype=torch.bool)
    valid[:, :, 3:6, 4:9] = True
    masked = warp_by_flow(img, flow, valid)
    assert (masked[~valid.expand_as(masked)] == 0).all()
    torch.testing.assert_close(masked[valid.expand_as(masked)], out[valid.expand_as(out)])
    # pixel centres map to the align_corners=False grid
    grid = flow_to_grid(torch.zeros(1, 2, 4, 8))
    torch.testing.assert_close(grid[0, 0, :, 0], (2 * torch.arange(8.0) + 1) / 8 - 1)
    torch.testing.assert_close(grid[0, :, 0, 1], (2 * torch.arange(4.0) + 1) / 4 - 1)


def test_warp_is_differentiable():
    g = torch.Generator().manual_seed(1)
    img = torch.rand(1, 3, 8, 8, generator=g, requires_grad=True)
    flow = (torch.rand(1, 2, 8, 8, generator=g) - 0.5).requires_grad_(True)
    warp_by_flow(img, flow).sum().backward()
    assert img.grad.abs().sum() > 0 and flow.grad.abs().sum() > 0


def test_flow_is_zero_for_identical_params():
    model = sphere_model()
    p = model.default_params(2, (64, 64))
    p.rotation[1] = torch.tensor([0.3, -0.2, 0.1])
    p.expression[1, 0] = 0.5
    flow, valid = render_flow(model, p, p)
    fg = render_face(model, p, outputs=("mask",), antialias=False).mask > 0.5
    assert (valid == fg).all()
    assert flow.abs().max() < 1e-3


def test_flow_of_a_translated_quad_is_constant():
    model = quad_model(half=50.0)
    tgt = model.default_params(1, (64, 64))
    tgt.camera = Camera.create(1, (64, 64), focal=96.0)
    src = tgt.clone()
    src.translation[0, 0] += 10.0  # mm to the right
    src.translation[0, 1] += 5.0  # mm up = image rows up
    flow, valid = render_flow(model, tgt, src)
    v = valid[0, 0]
    assert v.sum() > 250
    torch.testing.assert_close(flow[0, 0][v], torch.full((int(v.sum()),), 96.0 * 10.0 / 500.0), atol=1e-3, rtol=0)
    torch.testing.assert_close(flow[0, 1][v], torch.full((int(v.sum()),), -96.0 * 5.0 / 500.0), atol=1e-3, rtol=0)
    fg = render_face(model, tgt, outputs=("mask",), antialias=False).mask[0, 0] > 0.5
    assert (v <= fg).all() and v.sum() > 0.75 * fg.sum() and (flow[0][:, ~fg] == 0).all()
    torch.testing.assert_close(flow[0, 0][fg], torch.full((int(fg.sum()),), 96.0 * 10.0 / 500.0), atol=1e-3, rtol=0)


def test_flow_on_a_rotating_sphere_matches_geometry_and_occlusion():
    """Target frontal, source turned 60 degrees: compare with ray casting and the source facing."""
    model = sphere_model(radius=80.0, n_lat=32, n_lon=64)
    size, focal, dist = 64, 96.0, 500.0
    tgt = model.default_params(1, (size, size))
    tgt.camera = Camera.create(1, (size, size), focal=focal)
    src = tgt.clone()
    src.rotation[0, 0] = math.radians(60.0)
    flow, valid = render_flow(model, tgt, src)
    # analytic: the point seen at each target pixel, rotated, projected
    c = (size - 1) / 2.0
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    d = np.stack([(xs - c) / focal, -(ys - c) / focal, -np.ones_like(xs)], -1)
    centre = np.array([0.0, 0.0, -dist])
    a, b = (d * d).sum(-1), -2.0 * (d @ centre)
    disc = b * b - 4 * a * (centre @ centre - 80.0 ** 2)
    hit = disc > 0
    t = (-b - np.sqrt(np.where(hit, disc, 0))) / (2 * a)
    model_pt = d * t[..., None] - centre
    rot = euler_to_matrix(src.rotation.double())[0].numpy()
    src_pt = model_pt @ rot.T + centre
    q = np.stack([c + focal * src_pt[..., 0] / -src_pt[..., 2], c - focal * src_pt[..., 1] / -src_pt[..., 2]], -1)
    normal_s = (src_pt - centre) / 80.0
    cos_view = (normal_s * -src_pt).sum(-1) / np.linalg.norm(src_pt, axis=-1)
    v = valid[0, 0].numpy()
    assert v.sum() > 200 and (~v & hit).sum() > 200
    expected = q - np.stack([xs, ys], -1)
    facing = v & (model_pt[..., 2] / 80.0 > 0.3)  # at grazing target pixels the polygon and sphere part
    err = np.abs(flow[0].permute(1, 2, 0).numpy() - expected)[facing]
    assert facing.sum() > 200 and err.max() < 0.25  # pixels (tessellation)
    assert (cos_view[v] > -0.05).all()  # nothing valid is on the far side in the source
    clearly_seen = hit & (cos_view > 0.5)  # away from the source silhouette (1 px ~ cos 0.36 here)
    assert (v[clearly_seen]).mean() > 0.97
    assert not v[~hit].any()


def _psnr(a, b):
    return 10 * math.log10(1.0 / float(((a - b) ** 2).mean()))


def _psnr_model():
    try:
        return load_model("open")
    except (FileNotFoundError, ImportError):
        return sphere_model(radius=80.0, n_lat=32, n_lon=64)


def test_warping_the_source_render_reproduces_the_target():
    """Smooth albedo, ambient + a mild directional light, a head turn and an expression change."""
    model = _psnr_model()
    size = 128
    tgt = model.default_params(1, (size, size))
    tgt.camera = Camera.create(1, (size, size), focal=2.2 * size)
    tgt.lighting = directional_lighting(1, direction=(0.3, 0.3, 1.0), ambient=0.8, strength=0.2)
    tgt.texture[:] = 0.5
    src = tgt.clone()
    src.rotation[0] = torch.tensor([math.radians(8.0), math.radians(-3.0), 0.0])
    names = model.expression_names
    src.expression[0, names.index("jaw_open") if "jaw_open" in names else 0] = 0.6
    target = render_face(model, tgt, outputs=("image",), antialias=False).image
    source = render_face(model, src, outputs=("image",), antialias=False).image
    flow, valid = render_flow(model, tgt, src)
    assert valid.float().mean() > 0.15 and flow.abs().max() > 4.0
    warped = warp_by_flow(source, flow, valid)
    v = valid.expand_as(target)
    psnr = _psnr(warped[v], target[v])
    assert psnr > 35.0, psnr
    assert _psnr(source[v], target[v]) < psnr - 5.0  # the unwarped source is far off
    # under ambient light the colour is the albedo alone, which the warp carries over almost exactly
    tgt.lighting = src.lighting = model.default_params(1).lighting
    target = render_face(model, tgt, outputs=("image",), antialias=False).image
    source = render_face(model, src, outputs=("image",), antialias=False).image
    assert _psnr(warp_by_flow(source, flow, valid)[v], target[v]) > 40.0


def test_flow_gradients_and_errors():
    model = sphere_model()
    tgt = model.default_params(1, (32, 32))
    src = tgt.clone()
    src.rotation.requires_grad_(True)
    flow, valid = render_flow(model, tgt, src)
    (flow * valid).sum().backward()
    assert src.rotation.grad.abs().sum() > 0
    other = model.default_params(1, (48, 48))
    with pytest.raises(ValueError, match="image size"):
        render_flow(model, tgt, other)
    with pytest.raises(ValueError, match="batch"):
        render_flow(model, tgt, model.default_params(2, (32, 32)))
    with pytest.raises(ValueError, match="flow must be"):
        warp_by_flow(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
