"""Forward rasterization: agreement with a reference rasterizer, watertightness, errors, backends."""
import sys

import numpy as np
import pytest
import torch

from morph3d.render import backends
from morph3d.render.rasterize import antialias, interpolate, rasterize
from raster_reference import face_model_mean, frontal_clip, icosphere, perspective_clip, reference_rasterize


def _compare(clip: np.ndarray, tri: np.ndarray, h: int, w: int, dtype=torch.float64, atol=1e-9, max_ambiguous=0.05):
    rast = rasterize(torch.tensor(clip, dtype=dtype)[None], torch.tensor(tri), (h, w))[0].numpy()
    ids, u, v, zw, amb = reference_rasterize(clip, tri, h, w)
    ok = ~amb
    assert amb.mean() <= max_ambiguous
    got_ids = rast[..., 3].astype(np.int64) - 1
    np.testing.assert_array_equal(got_ids[ok], ids[ok])
    cov = ok & (ids >= 0)
    assert cov.sum() > 0.1 * h * w  # the scene really covers pixels
    np.testing.assert_allclose(rast[..., 0][cov], u[cov], atol=atol)
    np.testing.assert_allclose(rast[..., 1][cov], v[cov], atol=atol)
    np.testing.assert_allclose(rast[..., 2][cov], zw[cov], atol=atol)
    bg = ok & (ids < 0)
    assert np.all(rast[bg] == 0)
    return rast, ids


def _random_soup(rng, faces: int, w_range=(0.3, 2.0)):
    w = rng.uniform(*w_range, size=(faces * 3, 1))
    xyz = rng.uniform(-1.3, 1.3, size=(faces * 3, 3))
    clip = np.concatenate([xyz * np.abs(w), w], 1)
    return clip, np.arange(faces * 3).reshape(faces, 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_soup_matches_reference(seed):
    rng = np.random.default_rng(seed)
    clip, tri = _random_soup(rng, 30)
    _compare(clip, tri, 24, 32)


def test_float32_matches_reference():
    rng = np.random.default_rng(7)
    clip, tri = _random_soup(rng, 25)
    clip = clip.astype(np.float32).astype(np.float64)  # the exact float32 values
    rast, _ = _compare(clip, tri, 20, 28, dtype=torch.float32, atol=2e-6)
    assert rast.dtype == np.float32


def test_vertices_behind_the_eye_are_clipped_exactly():
    # Triangles with some vertices at w <= 0: only the part in front of the eye is drawn.
    rng = np.random.default_rng(3)
    clip, tri = _random_soup(rng, 30, w_range=(-0.6, 1.5))
    assert (clip[:, 3] <= 0).any() and (clip[:, 3] > 0).any()
    _compare(clip, tri, 24, 24)


def test_near_and_far_planes_clip_like_nvdiffrast():
    # One big triangle with z/w = 2 y: only the band -0.5 <= y <= 0.5 has -1 <= z/w <= 1.
    clip = np.array([[-9, -3, -6, 1], [9, -3, -6, 1], [0, 3, 6, 1.0]])
    rast, ids = _compare(clip, np.array([[0, 1, 2]]), 16, 16)
    drawn = rast[..., 3] > 0
    assert drawn.any() and (~drawn).any()
    assert np.all(np.abs(rast[..., 2][drawn]) <= 1)
    rows = np.flatnonzero(drawn.any(1))
    np.testing.assert_array_equal(rows, np.arange(4, 12))  # row centres at y = (2 j + 1) / 16 - 1


def test_icosphere_perspective_matches_reference():
    verts, tri = icosphere(2)
    clip = perspective_clip(verts)
    rast, ids = _compare(clip, tri, 40, 40)
    # Only front faces are visible on a closed sphere although culling is off.
    normals = np.cross(verts[tri[:, 1]] - verts[tri[:, 0]], verts[tri[:, 2]] - verts[tri[:, 0]])
    centres = verts[tri].mean(1)
    facing = (normals * (np.array([0, 0, 3.0]) - centres)).sum(1) > 0
    visible = np.unique(ids[ids >= 0])
    assert facing[visible].all()


def test_face_model_mean_matches_reference():
    mesh = face_model_mean()
    if mesh is None:
        pytest.skip("assets/open_face_model.npz not built yet")
    verts, tri = mesh
    _compare(frontal_clip(verts), tri, 48, 48)


def _coverage_counts(clip: np.ndarray, tri: np.ndarray, h: int, w: int) -> np.ndarray:
    """How many triangles cover each pixel, rasterizing every triangle on its own."""
    pos = torch.tensor(clip)[None]
    count = np.zeros((h, w), np.int64)
    for t in range(len(tri)):
        rast = rasterize(pos, torch.tensor(tri[t:t + 1]), (h, w))
        count += (rast[0, ..., 3] > 0).numpy()
    return count


def _grid_triangles(n: int, flip_diagonals: bool) -> np.ndarray:
    """Triangles of an (n + 1) x (n + 1) vertex grid (row-major), two per cell."""
    tri = []
    for r in range(n):
        for c in range(n):
            a = r * (n + 1) + c
            b, d, e = a + 1, a + n + 1, a + n + 2
            tri += [[a, b, e], [a, e, d]] if flip_diagonals and (r + c) % 2 else [[a, b, d], [b, e, d]]
    return np.array(tri)


def _grid_clip(ticks_x: np.ndarray, ticks_y: np.ndarray) -> np.ndarray:
    gx, gy = np.meshgrid(ticks_x, ticks_y)
    n = gx.size
    return np.stack([gx.ravel(), gy.ravel(), np.zeros(n), np.ones(n)], 1)


@pytest.mark.parametrize("perspective", [False, True])
def test_pixel_aligned_grid_is_watertight(perspective):
    # Vertices on pixel centres and diagonals through pixel centres: every tie must be broken
    # consistently. The grid covers the whole 32 x 32 screen: each pixel exactly once.
    h = w = 32
    rng = np.random.default_rng(0)
    ticks = (2 * np.arange(-4, 37, 4) + 1) / w - 1  # every 4th pixel centre, beyond the screen
    clip = _grid_clip(ticks, ticks)
    clip[:, 2] = rng.uniform(-0.5, 0.5, len(clip))
    tri = _grid_triangles(len(ticks) - 1, flip_diagonals=True)
    if perspective:  # same projection, different homogeneous scale per vertex
        clip = clip * rng.uniform(0.5, 3.0, (len(clip), 1))
    count = _coverage_counts(clip, tri, h, w)
    np.testing.assert_array_equal(count, np.ones((h, w), np.int64))
    # The combined render covers every pixel as well.
    rast = rasterize(torch.tensor(clip)[None], torch.tensor(tri), (h, w))
    assert bool((rast[..., 3] > 0).all())


def test_jittered_grid_is_watertight():
    rng = np.random.default_rng(1)
    ticks = np.linspace(-1.2, 1.2, 10)
    clip = _grid_clip(ticks, ticks)
    inner = (np.abs(clip[:, :2]) < 1).all(1)  # the border stays put so the screen stays covered
    clip[inner, :2] += rng.uniform(-0.08, 0.08, (inner.sum(), 2))
    count = _coverage_counts(clip, _grid_triangles(9, flip_diagonals=False), 27, 23)
    np.testing.assert_array_equal(count, np.ones((27, 23), np.int64))


def test_closed_mesh_is_covered_exactly_twice_inside():
    # A ray through a closed convex mesh crosses it exactly twice (front and back): per-triangle
    # coverage is 0 or 2 everywhere, also on silhouette edges and shared vertices.
    verts, tri = icosphere(1)
    count = _coverage_counts(perspective_clip(verts), tri, 32, 32)
    assert set(np.unique(count)) == {0, 2}
    assert (count == 2).sum() > 100


def test_batch_elements_are_independent():
    verts, tri = icosphere(1)
    rng = np.random.default_rng(5)
    clips = [perspective_clip(verts + rng.normal(0, 0.05, verts.shape)) for _ in range(3)]
    together = rasterize(torch.tensor(np.stack(clips)), torch.tensor(tri), (20, 24))
    for b, clip in enumerate(clips):
        alone = rasterize(torch.tensor(clip)[None], torch.tensor(tri), (20, 24))
        assert torch.equal(together[b], alone[0])


@pytest.mark.parametrize("batch", [1, 2])
def test_results_do_not_depend_on_thread_count(batch):
    verts, tri = icosphere(3)
    pos = torch.tensor(perspective_clip(verts), dtype=torch.float32)[None].repeat(batch, 1, 1)
    pos[-1, :, 0] += 0.05
    tri_t = torch.tensor(tri)
    attr = torch.rand(len(verts), 3)

    def run():
        p = pos.clone().requires_grad_(True)
        a = attr.clone().requires_grad_(True)
        rast = rasterize(p, tri_t, (64, 48))
        img = antialias(interpolate(a, rast, tri_t), rast, p, tri_t)
        (img * torch.linspace(0, 1, 48)[:, None]).sum().backward()
        return rast, img, p.grad, a.grad

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run()
        torch.set_num_threads(2)
        two = run()
    finally:
        torch.set_num_threads(before)
    for x, y in zip(one, two):
        assert torch.equal(x, y)


# --------------------------------------------------------------------------------------------
# Errors.

def _scene():
    pos = torch.tensor([[[-0.5, -0.5, 0, 1], [0.5, -0.5, 0, 1], [0, 0.5, 0, 1]]])
    return pos, torch.tensor([[0, 1, 2]])


@pytest.mark.parametrize("bad, exc, match", [
    (lambda p, t: (p[0], t, (8, 8)), ValueError, r"\(B, N, 4\)"),
    (lambda p, t: (p[..., :3], t, (8, 8)), ValueError, r"\(B, N, 4\)"),
    (lambda p, t: (p.half(), t, (8, 8)), TypeError, "float32 or float64"),
    (lambda p, t: (p.long(), t, (8, 8)), TypeError, "float32 or float64"),
    (lambda p, t: (p.numpy(), t, (8, 8)), TypeError, "torch.Tensor"),
    (lambda p, t: (p[:0], t, (8, 8)), ValueError, "empty batch"),
    (lambda p, t: (p[:, :0], t, (8, 8)), ValueError, "no vertices"),
    (lambda p, t: (p.clone().index_fill_(1, torch.tensor([1]), float("nan")), t, (8, 8)), ValueError, "NaN"),
    (lambda p, t: (p.clone().index_fill_(1, torch.tensor([1]), float("inf")), t, (8, 8)), ValueError, "infinite"),
    (lambda p, t: (p, t[:0], (8, 8)), ValueError, "no triangles"),
    (lambda p, t: (p, t.float(), (8, 8)), TypeError, "int32 or int64"),
    (lambda p, t: (p, t[:, :2], (8, 8)), ValueError, r"\(F, 3\)"),
    (lambda p, t: (p, t + 1, (8, 8)), ValueError, r"indices must lie in \[0, 2\]"),
    (lambda p, t: (p, t - 1, (8, 8)), ValueError, r"indices must lie in \[0, 2\]"),
    (lambda p, t: (p, t, (8, 8193)), ValueError, "8192"),
    (lambda p, t: (p, t, (0, 8)), ValueError, "between 1 and"),
    (lambda p, t: (p, t, (8.0, 8)), TypeError, "integers"),
    (lambda p, t: (p, t, 8), TypeError, "pair"),
])
def test_rasterize_rejects_bad_input(bad, exc, match):
    pos, tri = _scene()
    with pytest.raises(exc, match=match):
        rasterize(*bad(pos, tri))


def test_interpolate_and_antialias_reject_bad_input():
    pos, tri = _scene()
    rast = rasterize(pos, tri, (8, 8))
    attr = torch.rand(3, 2)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 1\]"):
        interpolate(torch.rand(2, 2), rast, tri)
    with pytest.raises(ValueError, match="batch 3"):
        interpolate(torch.rand(3, 3, 2), rast, tri)
    with pytest.raises(ValueError, match="NaN"):
        interpolate(torch.full((3, 2), float("nan")), rast, tri)
    bad_ids = rast.clone()
    bad_ids[0, 4, 4, 3] = 5.0
    with pytest.raises(ValueError, match="outside"):
        interpolate(attr, bad_ids, tri)
    with pytest.raises(ValueError, match=r"\(B, H, W, 4\)"):
        interpolate(attr, rast[..., :3], tri)
    color = torch.rand(1, 8, 8, 3)
    with pytest.raises(ValueError, match="matching rast"):
        antialias(color[:, :4], rast, pos, tri)
    with pytest.raises(ValueError, match="batch"):
        antialias(color, rast, pos.repeat(2, 1, 1), tri)
    with pytest.raises(TypeError, match="float32 or float64"):
        antialias(color.half(), rast, pos, tri)
    with pytest.raises(ValueError, match="indices"):
        antialias(color, rast, pos, tri + 1)


def test_backend_selection_errors(monkeypatch):
    pos, tri = _scene()
    with pytest.raises(ValueError, match="unknown rasterization backend"):
        rasterize(pos, tri, (8, 8), backend="opengl")
    with pytest.raises(backends.BackendError, match="CUDA tensors"):
        rasterize(pos, tri, (8, 8), backend="nvdiffrast")
    assert backends.resolve_backend(None, torch.device("cpu")) == "cpu"
    assert backends.resolve_backend(None, torch.device("cuda", 0)) == "nvdiffrast"
    with pytest.raises(backends.BackendError, match=r"\.cpu\(\)"):
        backends.resolve_backend("cpu", torch.device("cuda", 0))
    with pytest.raises(backends.BackendError, match="no rasterization backend"):
        backends.resolve_backend(None, torch.device("meta"))
    # Without the package, asking for nvdiffrast says what to install.
    monkeypatch.setitem(sys.modules, "nvdiffrast", None)
    monkeypatch.setitem(sys.modules, "nvdiffrast.torch", None)
    with pytest.raises(backends.BackendError, match="pip install diffrp-nvdiffrast"):
        backends.nvdiffrast()


def _nvdiffrast_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import nvdiffrast.torch  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.cuda
@pytest.mark.skipif(not _nvdiffrast_available(), reason="needs CUDA and nvdiffrast")
def test_nvdiffrast_backend_agrees_with_cpu():
    verts, tri = icosphere(3)
    pos = torch.tensor(perspective_clip(verts), dtype=torch.float32)[None]
    tri_t = torch.tensor(tri)
    attr = torch.rand(len(verts), 3)
    res = (61, 83)  # not a multiple of 8
    out = {}
    for dev in ("cpu", "cuda"):
        p = pos.to(dev).requires_grad_(True)
        rast = rasterize(p, tri_t, res)
        flat = interpolate(attr.to(dev), rast, tri_t)
        img = antialias(flat, rast, p, tri_t)
        img.sum().backward()
        out[dev] = [t.detach().cpu() for t in (rast, flat, img, p.grad)]
    (r0, f0, i0, g0), (r1, f1, i1, g1) = out["cpu"], out["cuda"]
    same = r0[..., 3] == r1[..., 3]
    assert same.float().mean() > 0.995
    torch.testing.assert_close(r0[..., :3][same], r1[..., :3][same], atol=1e-4, rtol=0)
    torch.testing.assert_close(f0[same], f1[same], atol=1e-4, rtol=0)
    # Antialiasing agrees except where the CPU kernel finds silhouettes nvdiffrast misses.
    assert ((i0 - i1).abs().amax(-1) > 1e-3).float().mean() < 0.02
    assert torch.nn.functional.cosine_similarity(g0.flatten(), g1.flatten(), dim=0) > 0.9
