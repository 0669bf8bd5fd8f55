import math

import numpy as np
import pytest
import torch

from morph3d.model import Camera, load_model, shade
from morph3d.render import landmark_visibility, render_face
from render_fixtures import directional_lighting, quad_model, sphere_model


def _quad_params(model, size=64, distance=500.0, kind="perspective", focal=None):
    p = model.default_params(1, (size, size))
    p.camera = Camera.create(1, (size, size), focal=focal, kind=kind)
    p.translation[0, 2] = -distance
    return p


def _count_inside(centre, half):
    """Integer pixel centres strictly inside (centre - half, centre + half)."""
    lo, hi = centre - half, centre + half
    return int(math.ceil(hi) - math.floor(lo) - 1)


@pytest.mark.parametrize("kind", ["perspective", "orthographic"])
def test_flat_quad_depth_normals_and_area(kind):
    model = quad_model(half=50.0)
    size, dist = 64, 487.0
    focal = 96.0 if kind == "perspective" else 0.193  # pixels per mm for the orthographic camera
    p = _quad_params(model, size, dist, kind, focal)
    r = render_face(model, p, antialias=False)
    half_px = 50.0 * (focal / dist if kind == "perspective" else focal)
    n_side = _count_inside(31.5, half_px)
    fg = r.mask[0, 0] > 0.5
    assert int(fg.sum()) == n_side * n_side
    ys, xs = torch.nonzero(fg, as_tuple=True)
    assert xs.min() == math.floor(31.5 - half_px) + 1 and ys.max() == math.ceil(31.5 + half_px) - 1
    torch.testing.assert_close(r.depth[0, 0][fg], torch.full((n_side ** 2,), dist), atol=2e-3, rtol=0)
    assert (r.depth[0, 0][~fg] == 0).all()
    normals = r.normals[0].permute(1, 2, 0)[fg]
    torch.testing.assert_close(normals, torch.tensor([0.0, 0.0, 1.0]).expand_as(normals), atol=1e-5, rtol=0)
    # the antialiased mask covers about the projected area (exact area, not the pixel-centre count)
    aa = render_face(model, p, outputs=("mask",)).mask
    area = (2 * half_px) ** 2
    assert abs(float(aa.sum()) - area) < 0.1 * 8 * half_px, (float(aa.sum()), area)
    assert ((aa > 0) & (aa < 1)).any()


def _ray_sphere_depth(size, focal, radius, dist):
    """Analytic depth (mm) of a sphere centred at (0, 0, -dist) per pixel centre, NaN where missed."""
    c = (size - 1) / 2.0
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    d = np.stack([(xs - c) / focal, -(ys - c) / focal, -np.ones_like(xs)], -1)
    centre = np.array([0.0, 0.0, -dist])
    a = (d * d).sum(-1)
    b = -2.0 * (d @ centre)
    disc = b * b - 4 * a * (centre @ centre - radius ** 2)
    t = (-b - np.sqrt(np.where(disc >= 0, disc, np.nan))) / (2 * a)
    points = d * t[..., None]
    return t, (points - centre) / radius


def test_sphere_depth_and_normals_match_ray_casting():
    model = sphere_model(radius=80.0, n_lat=32, n_lon=64)
    size, focal, dist = 96, 144.0, 500.0
    p = model.default_params(1, (size, size))
    p.camera = Camera.create(1, (size, size), focal=focal)
    r = render_face(model, p, outputs=("depth", "normals", "mask"))
    depth, normal = _ray_sphere_depth(size, focal, 80.0, dist)
    interior = torch.from_numpy(normal[..., 2] > 0.5)  # facing the camera within 60 degrees
    assert interior.sum() > 1000
    got = r.depth[0, 0].double()
    assert (got[interior] - torch.from_numpy(depth)[interior]).abs().max() < 0.5  # mm (tessellation sag ~0.1)
    cos = (r.normals[0].permute(1, 2, 0).double()[interior] * torch.from_numpy(normal)[interior]).sum(-1)
    assert cos.min() > math.cos(math.radians(2.0))
    # background where the rays miss the sphere (one pixel of slack at the silhouette)
    missed = torch.from_numpy(np.isnan(depth))
    missed_core = missed & ~torch.nn.functional.max_pool2d((~missed)[None, None].float(), 3, 1, 1)[0, 0].bool()
    assert (r.depth[0, 0][missed_core] == 0).all() and (r.mask[0, 0][missed_core] == 0).all()


def test_landmarks_match_model_and_visibility_follows_facing():
    model = sphere_model()
    p = model.default_params(3, (96, 96))
    p.rotation[1, 0] = math.radians(90.0)
    p.rotation[2, 0] = math.radians(180.0)
    r = render_face(model, p, outputs=("landmarks", "depth"))
    geo = model(p)
    torch.testing.assert_close(r.landmarks_2d, geo.landmarks_2d)
    torch.testing.assert_close(r.landmarks_2d, p.camera.project(geo.landmarks_cam))
    # on a sphere a point is seen iff its normal faces the camera
    pts = geo.landmarks_cam
    facing = (pts - torch.tensor([0.0, 0.0, -500.0])) / 80.0
    cos_view = (facing * -pts).sum(-1) / pts.norm(dim=-1)
    clear = cos_view.abs() > 0.25  # grazing points are ambiguous at this resolution
    assert (r.landmark_visible[clear] == (cos_view > 0)[clear]).all()
    assert r.landmark_visible[0].all()  # frontal: every landmark (yaw -60..60 deg) is seen
    flipped = r.landmark_visible[0] & ~r.landmark_visible[1]
    assert 10 < int(flipped.sum()) < 68  # turning the head 90 degrees hides some
    assert int(r.landmark_visible[2].sum()) == 0  # turned away: all hidden
    # the depth buffer at a visible landmark's pixel is the landmark's own depth
    b, k = 0, 30
    u, v = r.landmarks_2d[b, k].round().long().tolist()
    assert abs(float(r.depth[b, 0, v, u]) + float(pts[b, k, 2])) < 2.0


def test_turning_a_face_hides_the_far_side_landmarks():
    try:
        model = load_model("open")
    except FileNotFoundError:
        pytest.skip("the default model asset is not built")
    p = model.default_params(4, (96, 96))
    for b, yaw in enumerate((0.0, 70.0, -70.0, 180.0)):
        p.rotation[b, 0] = math.radians(yaw)
    vis = render_face(model, p, outputs=("landmarks",)).landmark_visible
    assert vis[0].all()  # frontal: every landmark, the jaw contour included
    jaw_right, jaw_left = list(range(0, 8)), list(range(10, 17))  # the subject's right is on the image left
    eye_right, eye_left = list(range(36, 42)), list(range(42, 48))
    # yaw > 0 turns the nose to the image right: the subject's left side goes out of view
    assert vis[1, jaw_right].all() and not vis[1, jaw_left].any() and not vis[1, eye_left].any()
    assert vis[1, eye_right].all() and vis[1, 30]  # the nose tip stays in view
    assert vis[2, jaw_left].all() and not vis[2, jaw_right].any() and not vis[2, eye_right].any()
    assert not vis[3].any()  # seen from behind


def test_landmarks_outside_the_image_are_not_visible():
    model = sphere_model()
    p = model.default_params(1, (64, 64))
    p.translation[0, 0] = 150.0  # push the sphere half out of the image, to the right
    r = render_face(model, p, outputs=("landmarks", "depth"))
    u = r.landmarks_2d[0, :, 0]
    assert (u > 63.5).any() and (u < 63.5).any()
    assert not r.landmark_visible[0][u >= 63.5].any()
    assert r.landmark_visible[0][u < 62].all()
    # a tighter tolerance cannot make covered landmarks visible, nor a landmark hidden by a closer surface
    vis = landmark_visibility(model, model(p), r.rast, r.depth[:, 0], p.camera, tolerance_px=0.0)
    assert (vis <= r.landmark_visible).all()


def test_background_compositing_and_shading():
    model = sphere_model()
    p = model.default_params(2, (64, 64))
    p.rotation[1] = torch.tensor([0.4, -0.2, 0.1])
    p.texture[1] = torch.tensor([1.0, -1.0])
    p.lighting = directional_lighting(2)
    g = torch.Generator().manual_seed(0)
    bg = torch.rand(2, 3, 64, 64, generator=g)
    r = render_face(model, p, outputs=("image", "mask", "albedo", "normals"), background=bg)
    plain = render_face(model, p, outputs=("image", "mask"))
    empty = (r.mask == 0).expand_as(bg)
    full = (r.mask == 1).expand_as(bg)
    assert empty.float().mean() > 0.4 and full.float().mean() > 0.1
    torch.testing.assert_close(r.image[empty], bg[empty])
    torch.testing.assert_close(r.image[full], plain.image[full])
    torch.testing.assert_close(r.mask, plain.mask)
    assert (plain.image[empty] == 0).all()  # default background is black
    # per-pixel Lambertian SH shading of the rendered albedo and normals
    fg = full[:, 0]
    alb = r.albedo.permute(0, 2, 3, 1)
    nrm = r.normals.permute(0, 2, 3, 1)
    want = shade(alb.reshape(2, -1, 3), nrm.reshape(2, -1, 3), p.lighting).reshape(2, 64, 64, 3)
    torch.testing.assert_close(r.image.permute(0, 2, 3, 1)[fg], want[fg], atol=1e-5, rtol=1e-5)
    # ambient light renders the albedo itself; the second face's albedo differs
    p.lighting = model.default_params(2).lighting
    amb = render_face(model, p, outputs=("image", "albedo"), antialias=False)
    torch.testing.assert_close(amb.image, amb.albedo)
    assert (amb.albedo[1] - amb.albedo[0]).abs().max() > 0.05


def test_texture_map_is_sampled_through_uvs():
    model = quad_model(half=50.0)
    p = _quad_params(model, 64, 400.0, focal=96.0)
    ht, wt = 8, 16
    tex = torch.zeros(1, 3, ht, wt)
    tex[0, 0] = ((torch.arange(wt) + 0.5) / wt)[None, :]  # red = u
    tex[0, 1] = (1 - (torch.arange(ht) + 0.5) / ht)[:, None]  # green = v (row 0 is v = 1)
    r = render_face(model, p, outputs=("albedo", "mask"), texture=tex, antialias=False)
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    u = ((xs - 31.5) * 400.0 / 96.0 + 50.0) / 100.0
    v = (-(ys - 31.5) * 400.0 / 96.0 + 50.0) / 100.0
    inner = (u > 1 / wt) & (u < 1 - 1 / wt) & (v > 1 / ht) & (v < 1 - 1 / ht)
    assert inner.sum() > 100
    torch.testing.assert_close(r.albedo[0, 0][inner], u[inner], atol=1e-4, rtol=0)
    torch.testing.assert_close(r.albedo[0, 1][inner], v[inner], atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="no UV coordinates"):
        m = sphere_model()
        m.uv_coords = None
        render_face(m, m.default_params(1, (32, 32)), texture=tex)


def test_gradients_reach_every_parameter():
    model = sphere_model()
    p = model.default_params(1, (48, 48))
    p.lighting = directional_lighting(1)
    p.rotation[0] = torch.tensor([0.2, 0.1, 0.05])
    tensors = dict(p.tensors(), focal=p.camera.focal)
    for t in tensors.values():
        t.requires_grad_(True)
    r = render_face(model, p)
    g = torch.Generator().manual_seed(1)
    w = torch.rand(r.image.shape, generator=g)
    loss = (r.image * w).sum() + r.mask.sum() + 1e-3 * r.depth.sum() + r.normals[:, 0].sum()
    loss.backward()
    for name, t in tensors.items():
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0, name


def test_mask_gradient_matches_the_area_change():
    """Moving a quad closer grows its area A ~ 1/d^2: dA/dt_z = 2 A / d (t_z = -d)."""
    model = quad_model(half=50.0)
    p = _quad_params(model, 64, 487.0, focal=96.0)  # edges between pixel centres, not on a midpoint
    p.translation.requires_grad_(True)
    mask = render_face(model, p, outputs=("mask",)).mask
    mask.sum().backward()
    area = (2 * 50.0 * 96.0 / 487.0) ** 2
    expected = 2 * area / 487.0
    got = float(p.translation.grad[0, 2])
    assert 0.8 * expected < got < 1.2 * expected, (got, expected)
    assert abs(float(p.translation.grad[0, 0])) < 0.1 * expected  # symmetric: no net sideways pull


def test_batch_matches_single_renders():
    model = sphere_model()
    p = model.default_params(2, (48, 48))
    p.rotation[0, 0] = 0.5
    p.expression[1, 0] = 0.7
    p.lighting = directional_lighting(2)
    both = render_face(model, p)
    for b in range(2):
        one = render_face(model, p[b])
        for name in ("image", "mask", "depth", "normals"):
            torch.testing.assert_close(getattr(both, name)[b:b + 1], getattr(one, name), atol=1e-5, rtol=1e-5)
        assert (both.landmark_visible[b] == one.landmark_visible[0]).all()


def test_float64_matches_float32():
    model = sphere_model()
    p = model.default_params(1, (40, 40))
    p.rotation[0, 0] = 0.3
    p.lighting = directional_lighting(1)
    r32 = render_face(model, p)
    r64 = render_face(model.to(torch.float64), p.to(dtype=torch.float64))
    assert r64.image.dtype == torch.float64 and r64.depth.dtype == torch.float64
    torch.testing.assert_close(r64.image.float(), r32.image, atol=1e-4, rtol=0)
    torch.testing.assert_close(r64.depth.float(), r32.depth, atol=1e-2, rtol=0)
    assert (r64.landmark_visible == r32.landmark_visible).all()


def test_bad_inputs():
    model = sphere_model()
    p = model.default_params(1, (32, 32))
    with pytest.raises(ValueError, match="unknown render outputs"):
        render_face(model, p, outputs=("image", "colour"))
    with pytest.raises(ValueError, match="background"):
        render_face(model, p, background=torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="background"):
        render_face(model, p, background=torch.zeros(1, 4, 32, 32))
    with pytest.raises(ValueError, match="near"):
        render_face(model, p, near=600.0, far=500.0)
    with pytest.raises(TypeError, match="FaceParams"):
        render_face(model, {"identity": p.identity})
