"""Gradients of rasterize (through u, v, z/w) against finite differences and gradcheck."""
import numpy as np
import torch

from morph3d.render.rasterize import interpolate, rasterize
from raster_reference import icosphere, perspective_clip


def _sphere_scene(subdivisions=1, seed=0):
    verts, tri = icosphere(subdivisions)
    rng = np.random.default_rng(seed)
    verts = verts * rng.uniform(0.8, 1.2, (len(verts), 1))  # bumpy, so triangles differ
    return torch.tensor(perspective_clip(verts))[None], torch.tensor(tri)


def test_gradients_match_finite_differences_on_stable_pixels():
    pos, tri = _sphere_scene()
    res = (40, 36)
    gen = torch.Generator().manual_seed(0)
    attr = torch.rand(pos.shape[1], 3, generator=gen, dtype=torch.float64)
    weights = torch.rand(1, *res, 4, generator=gen, dtype=torch.float64)

    def loss(p, mask):
        rast = rasterize(p, tri, res)
        img = interpolate(attr, rast, tri)
        feats = torch.cat([img, rast[..., 2:3]], -1)  # colours and z/w
        return (feats * weights * mask).sum()

    h = 1e-6
    for k in range(4):
        d = torch.randn(pos.shape, generator=gen, dtype=torch.float64)
        ids = [rasterize(pos + s * h * d, tri, res)[..., 3] for s in (-1, 0, 1)]
        mask = ((ids[0] == ids[1]) & (ids[1] == ids[2]) & (ids[1] > 0))[..., None].double()
        assert mask.sum() > 400
        p = pos.clone().requires_grad_(True)
        loss(p, mask).backward()
        analytic = (p.grad * d).sum().item()
        numeric = ((loss(pos + h * d, mask) - loss(pos - h * d, mask)) / (2 * h)).item()
        assert abs(analytic - numeric) <= 1e-6 * max(1.0, abs(numeric)), (k, analytic, numeric)


def test_gradcheck_float64():
    # Two triangles with different w (perspective), one partly occluding the other.
    pos = torch.tensor([[[-0.7, -0.6, 0.2, 1.0], [0.9, -0.8, 0.1, 1.3], [0.1, 0.8, 0.3, 0.9],
                         [-0.4, 0.5, -0.2, 1.1], [0.6, 0.3, -0.3, 0.8], [0.0, -0.7, -0.1, 1.2]]],
                       dtype=torch.float64, requires_grad=True)
    tri = torch.tensor([[0, 1, 2], [3, 4, 5]])
    rast = rasterize(pos, tri, (7, 9))
    assert set(rast[..., 3].unique().tolist()) == {0.0, 1.0, 2.0}
    assert torch.autograd.gradcheck(lambda p: rasterize(p, tri, (7, 9))[..., :3], (pos,), eps=1e-6, atol=1e-6,
                                     fast_mode=True)


def test_gradcheck_with_vertices_behind_the_eye():
    # One vertex has w < 0: the visible part's barycentrics still have exact gradients.
    pos = torch.tensor([[[-0.5, -0.6, 0.0, 1.0], [0.7, -0.4, 0.2, 1.5], [0.2, 0.6, -0.3, -0.4]]],
                       dtype=torch.float64, requires_grad=True)
    tri = torch.tensor([[0, 1, 2]])
    rast = rasterize(pos, tri, (8, 8))
    assert 0 < (rast[..., 3] > 0).sum() < 64
    assert torch.autograd.gradcheck(lambda p: rasterize(p, tri, (8, 8))[..., :3], (pos,), eps=1e-6, atol=1e-6,
                                     fast_mode=True)


def test_float32_gradients_agree_with_float64():
    pos, tri = _sphere_scene(2, seed=1)
    res = (32, 32)
    attr = torch.rand(pos.shape[1], 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = []
    for dtype in (torch.float64, torch.float32):
        p = pos.detach().to(dtype).clone().requires_grad_(True)
        rast = rasterize(p, tri, res)
        (interpolate(attr.to(dtype), rast, tri).sum() + rast[..., 2].sum()).backward()
        grads.append(p.grad.double())
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-3 * grads[0].abs().max().item())


def test_translation_gradient_of_uv_is_analytic():
    # An affine (w = 1) triangle moved along x: u at a pixel changes by -(du/dx_ndc) per unit.
    pos = torch.tensor([[[-0.8, -0.8, 0.0, 1.0], [0.8, -0.8, 0.0, 1.0], [-0.8, 0.8, 0.0, 1.0]]],
                       dtype=torch.float64, requires_grad=True)
    tri = torch.tensor([[0, 1, 2]])
    rast = rasterize(pos, tri, (16, 16))
    covered = rast[0, ..., 3] > 0
    # u weights vertex 0, v vertex 1: v = (x + 0.8) / 1.6 so dv/d(shift of all x) = -1 / 1.6 per pixel.
    rast[0, ..., 1][covered].sum().backward()
    total_dx = pos.grad[0, :, 0].sum().item()
    assert abs(total_dx - (-covered.sum().item() / 1.6)) < 1e-9
