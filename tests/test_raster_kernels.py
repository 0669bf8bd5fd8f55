"""Kernel paths of rasterize / interpolate: the scratch cache, gradients computed only when asked
for, pure-torch references of the backward passes, and thread-count determinism of every path
(single-image slabs, whole images per thread, leftover images, parallel attribute gradients)."""
import threading

import numpy as np
import pytest
import torch

from morph3d._ext import ops
from morph3d.render import release_scratch, scratch_info, set_scratch_limit
from morph3d.render.rasterize import antialias, interpolate, rasterize
from raster_reference import icosphere, perspective_clip


def _scene(batch=1, subdivisions=3, seed=0, dtype=torch.float64):
    """A bumpy sphere seen in perspective, jittered per image: (pos (B, N, 4), tri (F, 3) int32)."""
    verts, tri = icosphere(subdivisions)
    rng = np.random.default_rng(seed)
    verts = verts * rng.uniform(0.9, 1.1, (len(verts), 1))
    pos = torch.tensor(np.stack([perspective_clip(verts + rng.normal(0, 0.02, verts.shape)) for _ in range(batch)]),
                       dtype=dtype)
    return pos, torch.tensor(tri, dtype=torch.int32)


def _with_threads(n, fn):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# Pure-torch references.

def _reference_rast_grad(pos, tri, rast, grad_rast):
    """d loss / d pos for loss = sum(grad_rast[..., :3] * (u, v, z/w)), by autograd through the
    homogeneous barycentrics of each covered pixel's triangle (the triangle ids from rast)."""
    H, W = rast.shape[1:3]
    p = pos.detach().clone().requires_grad_(True)
    ids = rast[..., 3].long() - 1
    b, y, x = torch.nonzero(ids >= 0, as_tuple=True)
    corners = p[b[:, None], tri.long()[ids[b, y, x]]]  # (K, 3, 4)
    g = grad_rast[b, y, x]
    P = corners[..., [0, 1, 3]]                         # (X, Y, W)
    x, y = x.to(p.dtype), y.to(p.dtype)
    px = torch.stack([(2 * x + 1) / W - 1, (2 * y + 1) / H - 1, torch.ones_like(x)], -1)
    e = torch.stack([torch.linalg.det(torch.stack([P[:, (i + 1) % 3], P[:, (i + 2) % 3], px], 1))
                     for i in range(3)], -1)
    bc = e / e.sum(-1, keepdim=True)
    zw = (bc * corners[..., 2]).sum(-1) / (bc * corners[..., 3]).sum(-1)
    (g[:, 0] * bc[:, 0] + g[:, 1] * bc[:, 1] + g[:, 2] * zw).sum().backward()
    return p.grad


def _reference_interpolate(attr, rast, tri):
    """interpolate in plain torch ops (differentiable w.r.t. attr and rast's u, v)."""
    ids = rast[..., 3].long() - 1
    covered = (ids >= 0)[..., None]
    corners = tri.long()[ids.clamp(min=0)]               # (B, H, W, 3)
    if attr.shape[0] == 1:
        a = attr[0][corners]                             # (B, H, W, 3, C)
    else:
        a = torch.stack([attr[b][corners[b]] for b in range(rast.shape[0])])
    u, v = rast[..., 0:1], rast[..., 1:2]
    out = u * a[..., 0, :] + v * a[..., 1, :] + (1 - u - v) * a[..., 2, :]
    return torch.where(covered, out, torch.zeros_like(out))


# ---------------------------------------------------------------------------------------------
# Scratch cache.

def test_scratch_is_cached_reused_and_released():
    # one thread: with more, how many scratch sets a call leases depends on how its chunks overlap in time
    _with_threads(1, _scratch_is_cached_reused_and_released)


def _scratch_is_cached_reused_and_released():
    pos, tri = _scene(2)
    release_scratch()
    assert scratch_info()["cached_bytes"] == 0
    rast = rasterize(pos, tri, (48, 40))
    info = scratch_info()
    assert info["cached_bytes"] > 0 and info["leased_bytes"] == 0
    assert torch.equal(rasterize(pos, tri, (48, 40)), rast)  # reused buffers: same result
    assert scratch_info()["cached_bytes"] == info["cached_bytes"]  # and nothing new allocated
    assert release_scratch() == info["cached_bytes"]
    assert scratch_info()["cached_bytes"] == 0
    assert torch.equal(rasterize(pos, tri, (48, 40)), rast)


def test_scratch_limit_bounds_the_cache():
    pos, tri = _scene(1)
    old = set_scratch_limit(0)
    try:
        rast = rasterize(pos, tri, (40, 40))
        assert scratch_info() == {"cached_bytes": 0, "leased_bytes": 0, "limit_bytes": 0}
        set_scratch_limit(1 << 20)
        assert torch.equal(rasterize(pos, tri, (40, 40)), rast)
        assert 0 < scratch_info()["cached_bytes"] <= 1 << 20
    finally:
        assert set_scratch_limit(old) == 1 << 20
    for bad, exc in ((-1, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(exc, match="nbytes"):
            set_scratch_limit(bad)


def test_concurrent_calls_from_two_threads_match_serial_results():
    scenes = [_scene(2, seed=s, dtype=torch.float32) for s in (1, 2)]

    def work(pos, tri):
        p = pos.clone().requires_grad_(True)
        attr = torch.linspace(0, 1, pos.shape[1] * 3).reshape(pos.shape[1], 3).requires_grad_(True)
        rast = rasterize(p, tri, (70, 64))
        img = interpolate(attr, rast, tri)
        (img * img).sum().backward()
        return rast, img, p.grad, attr.grad

    serial = [work(*s) for s in scenes]
    results = [[None] * 8 for _ in scenes]

    def loop(k):
        for i in range(8):
            results[k][i] = work(*scenes[k])

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(2):
        for got in results[k]:
            assert all(torch.equal(a, b) for a, b in zip(got, serial[k]))
    assert scratch_info()["leased_bytes"] == 0


# ---------------------------------------------------------------------------------------------
# Backward passes against the references.

@pytest.mark.parametrize("batch, res", [(1, (50, 46)), (3, (40, 36))])
def test_rasterize_backward_matches_torch_reference(batch, res):
    pos, tri = _scene(batch)
    rast = ops().rasterize_fwd(pos, tri, *res)
    grad = torch.rand(rast.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    got = ops().rasterize_bwd(pos, tri, rast, grad)
    want = _reference_rast_grad(pos, tri, rast, grad)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9 * want.abs().max().item())
    grad[..., 2] = 0  # the path without depth gradients
    want = _reference_rast_grad(pos, tri, rast, grad)
    torch.testing.assert_close(ops().rasterize_bwd(pos, tri, rast, grad), want, rtol=1e-9,
                               atol=1e-9 * want.abs().max().item())


@pytest.mark.parametrize("shared", [True, False])
def test_interpolate_matches_torch_reference_and_skips_unneeded_gradients(shared):
    pos, tri = _scene(2)
    rast = rasterize(pos, tri, (30, 34))
    attr = torch.rand(1 if shared else 2, pos.shape[1], 3, dtype=torch.float64)
    g = torch.rand(2, 30, 34, 3, dtype=torch.float64)
    a = attr.clone().requires_grad_(True)
    r = rast.clone().requires_grad_(True)
    ref = _reference_interpolate(a, r, tri)
    ref_ga, ref_gr = torch.autograd.grad(ref, (a, r), g)
    ref_gr[..., 2:] = 0  # the kernel gives no gradient to z/w and ids
    out = ops().interpolate_fwd(attr, rast, tri)
    torch.testing.assert_close(out, ref.detach(), rtol=0, atol=1e-12)
    ga, gr = ops().interpolate_bwd(attr, rast, tri, g)
    torch.testing.assert_close(ga, ref_ga, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gr, ref_gr, rtol=1e-12, atol=1e-12)
    only_attr = ops().interpolate_bwd(attr, rast, tri, g, True, False)
    only_rast = ops().interpolate_bwd(attr, rast, tri, g, False, True)
    assert only_attr[1] is None and torch.equal(only_attr[0], ga)
    assert only_rast[0] is None and torch.equal(only_rast[1], gr)
    assert ops().interpolate_bwd(attr, rast, tri, g, False, False) == (None, None)


def test_interpolate_autograd_asks_only_for_needed_gradients():
    pos, tri = _scene(1)
    rast = rasterize(pos, tri, (20, 20))
    attr = torch.rand(pos.shape[1], 2, dtype=torch.float64, requires_grad=True)
    interpolate(attr, rast, tri).sum().backward()  # rast needs no gradient
    uv = rast[..., :2].clone().requires_grad_(True)
    fixed = torch.rand(pos.shape[1], 2, dtype=torch.float64)
    interpolate(fixed, torch.cat([uv, rast[..., 2:]], -1), tri).sum().backward()  # attributes need none
    assert attr.grad is not None and uv.grad is not None
    assert torch.autograd.gradcheck(lambda a: interpolate(a, rast, tri), (attr,))
    assert torch.autograd.gradcheck(lambda b: interpolate(fixed, torch.cat([b, rast[..., 2:]], -1), tri), (uv,))


# ---------------------------------------------------------------------------------------------
# Thread-count determinism of every kernel path.

@pytest.mark.parametrize("batch, res", [
    (1, (300, 260)),  # one image in two slabs of pixels
    (3, (64, 72)),    # whole images per thread and a leftover image
    (4, (40, 40)),
])
def test_kernels_are_bitwise_identical_for_1_2_3_threads(batch, res):
    pos, tri = _scene(batch, subdivisions=4, dtype=torch.float32)
    attr_shared = torch.rand(1, pos.shape[1], 4, generator=torch.Generator().manual_seed(1))
    attr_batch = torch.rand(batch, pos.shape[1], 4, generator=torch.Generator().manual_seed(2))
    gen = torch.Generator().manual_seed(4)
    grad_rast = torch.rand(batch, *res, 4, generator=gen)
    grad_img = torch.rand(batch, *res, 4, generator=gen)

    def run():
        o = ops()
        rast = o.rasterize_fwd(pos, tri, *res)
        outs = [rast, o.rasterize_bwd(pos, tri, rast, grad_rast)]
        for attr in (attr_shared, attr_batch):
            outs.append(o.interpolate_fwd(attr, rast, tri))
            outs.extend(o.interpolate_bwd(attr, rast, tri, grad_img))
            outs.append(o.interpolate_bwd(attr, rast, tri, grad_img, True, False)[0])
        return outs

    one, two, three = (_with_threads(n, run) for n in (1, 2, 3))
    assert (one[0][..., 3] > 0).float().mean() > 0.2
    for a, b, c in zip(one, two, three):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_antialias_backward_skips_unneeded_gradients():
    pos, tri = _scene(2, dtype=torch.float32)
    rast = ops().rasterize_fwd(pos, tri, 40, 44)
    color = torch.rand(2, 40, 44, 3, generator=torch.Generator().manual_seed(5))
    adj = ops().antialias_topology(tri)
    out, facing, alpha = ops().antialias_fwd(color, rast, pos, tri, adj)
    assert (alpha != 0).any()
    g = torch.rand(color.shape, generator=torch.Generator().manual_seed(6))
    args = (color, rast, pos, tri, adj, facing, alpha, g)
    grad_color, grad_pos = ops().antialias_bwd(*args)
    assert grad_pos.abs().sum() > 0
    only_color = ops().antialias_bwd(*args, True, False)
    only_pos = ops().antialias_bwd(*args, False, True)
    assert only_color[1] is None and torch.equal(only_color[0], grad_color)
    assert only_pos[0] is None and torch.equal(only_pos[1], grad_pos)
    assert ops().antialias_bwd(*args, False, False) == (None, None)


def test_input_checks_passed_once_are_redone_after_in_place_edits():
    pos, tri = _scene(1, subdivisions=1)
    rast = rasterize(pos, tri, (16, 16))
    color = torch.rand(1, 16, 16, 3, dtype=torch.float64)
    attr = torch.rand(pos.shape[1], 3, dtype=torch.float64)
    interpolate(attr, rast, tri)  # rasterize vouched for rast's ids, and pos was checked once
    rast[0, 0, 0, 3] = tri.shape[0] + 5
    with pytest.raises(ValueError, match="outside"):
        interpolate(attr, rast, tri)
    with pytest.raises(ValueError, match="outside"):
        interpolate(attr, rasterize(pos, tri, (16, 16)), tri[:3])  # ids from another tri
    rast = rasterize(pos, tri, (16, 16))
    pos[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        antialias(color, rast, pos, tri)
