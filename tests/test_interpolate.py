"""interpolate: values, broadcasting, and gradients w.r.t. attributes and rast's (u, v)."""
import pytest
import torch

from morph3d.render.rasterize import interpolate, rasterize


def _scene(dtype=torch.float64):
    pos = torch.tensor([[[-0.9, -0.9, 0.1, 1.0], [0.9, -0.7, 0.2, 1.2], [0.0, 0.9, 0.0, 0.8],
                         [0.8, 0.8, -0.5, 1.0]]], dtype=dtype)
    tri = torch.tensor([[0, 1, 2], [1, 3, 2]])
    return pos, tri


def test_values_are_barycentric_combinations():
    pos, tri = _scene()
    rast = rasterize(pos, tri, (12, 10))
    attr = torch.rand(4, 5, dtype=torch.float64)
    out = interpolate(attr, rast, tri)
    assert out.shape == (1, 12, 10, 5)
    ids = rast[0, ..., 3].long() - 1
    u, v = rast[0, ..., 0], rast[0, ..., 1]
    for j in range(12):
        for i in range(10):
            t = ids[j, i].item()
            if t < 0:
                assert torch.all(out[0, j, i] == 0)
                continue
            a0, a1, a2 = attr[tri[t]]
            expect = u[j, i] * a0 + v[j, i] * a1 + (1 - u[j, i] - v[j, i]) * a2
            torch.testing.assert_close(out[0, j, i], expect, rtol=0, atol=1e-12)
    assert (ids >= 0).sum() > 40


def test_interpolating_positions_recovers_pixel_centres():
    # Interpolating clip x/w, y/w of an affine triangle gives each pixel's NDC centre.
    pos, tri = _scene()
    pos[..., 3] = 1.0
    rast = rasterize(pos, tri, (12, 10))
    xy = interpolate(pos[0, :, :2], rast, tri)[0]
    cov = rast[0, ..., 3] > 0
    jj, ii = torch.meshgrid(torch.arange(12), torch.arange(10), indexing="ij")
    torch.testing.assert_close(xy[..., 0][cov], ((2 * ii.double() + 1) / 10 - 1)[cov], rtol=0, atol=1e-12)
    torch.testing.assert_close(xy[..., 1][cov], ((2 * jj.double() + 1) / 12 - 1)[cov], rtol=0, atol=1e-12)


def test_broadcast_and_batched_attributes_agree():
    pos, tri = _scene()
    pos = pos.repeat(3, 1, 1)
    pos[1, :, 0] += 0.1
    pos[2, :, 1] -= 0.2
    rast = rasterize(pos, tri, (9, 11))
    attr = torch.rand(4, 2, dtype=torch.float64)
    shared = interpolate(attr, rast, tri)
    single = interpolate(attr[None], rast, tri)
    per_batch = interpolate(attr[None].repeat(3, 1, 1), rast, tri)
    assert torch.equal(shared, single) and torch.equal(shared, per_batch)


def test_gradcheck_attributes_and_barycentrics():
    pos, tri = _scene()
    rast = rasterize(pos, tri, (6, 7))
    uv = rast[..., :2].clone().requires_grad_(True)
    rest = rast[..., 2:]
    attr = torch.rand(1, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: interpolate(a, torch.cat([b, rest], -1), tri), (attr, uv))
    shared = torch.rand(4, 3, dtype=torch.float64, requires_grad=True)
    pos2 = pos.repeat(2, 1, 1)
    pos2[1, :, 0] += 0.15
    rast2 = rasterize(pos2, tri, (6, 7))
    assert torch.autograd.gradcheck(lambda a: interpolate(a, rast2, tri), (shared,))


def test_uv_triangles_index_a_different_attribute_table():
    # interpolate only needs tri to index attributes (e.g. separate UV indices).
    pos, tri = _scene()
    rast = rasterize(pos, tri, (8, 8))
    uv_table = torch.rand(6, 2, dtype=torch.float64)
    uv_tri = torch.tensor([[5, 4, 3], [0, 1, 2]])
    out = interpolate(uv_table, rast, uv_tri)
    t = rast[0, 4, 4, 3].long().item() - 1
    u, v = rast[0, 4, 4, :2]
    a = uv_table[uv_tri[t]]
    torch.testing.assert_close(out[0, 4, 4], u * a[0] + v * a[1] + (1 - u - v) * a[2])


def test_dtype_follows_attributes():
    pos, tri = _scene(torch.float32)
    rast = rasterize(pos, tri, (8, 8))
    assert interpolate(torch.rand(4, 2, dtype=torch.float64), rast, tri).dtype == torch.float64
    assert interpolate(torch.rand(4, 2), rast, tri).dtype == torch.float32
    with pytest.raises(TypeError, match="float32 or float64"):
        interpolate(torch.rand(4, 2).half(), rast, tri)
