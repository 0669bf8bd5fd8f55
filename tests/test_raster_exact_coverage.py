"""Coverage of adversarial scenes against an exact rational reference of the rasterizer's rules.

The CPU rasterizer decides coverage from float prefilters, double edge functions and exact
fallbacks; whichever decides, every pixel must get the triangle that exact arithmetic gives:
pixel centre p = (x, y, 1), e_i = det[P_j, P_k, p] with P = (X, Y, W), inside when sign(det)
e_i > 0 for all i, or e_i == 0 and the normalised edge has (a, b) > 0 lexicographically (the
tie rule of csrc/kernels/rasterize.cpp). The scenes put vertices on and next to pixel centres
(edges through centres, shared edges and vertices), nearly degenerate and very thin triangles,
and triangles behind the eye or crossing W = 0. Depth never decides a pixel here by a margin
below 1e-3: every triangle lies in a plane z/w = c of its own (Z = c W at its corners).
"""
from fractions import Fraction

import numpy as np
import pytest
import torch

from morph3d.render.rasterize import rasterize


def _det3(u, v, w):
    return (u[0] * (v[1] * w[2] - v[2] * w[1]) - u[1] * (v[0] * w[2] - v[2] * w[0])
            + u[2] * (v[0] * w[1] - v[1] * w[0]))


def _exact_ids(clip: np.ndarray, tri: np.ndarray, depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) triangle ids (-1 background) in exact arithmetic; clip (N, 4) holds the exact values,
    depth (F,) each triangle's z/w."""
    P = [[Fraction(float(c)) for c in (v[0], v[1], v[3])] for v in clip]
    xs = [Fraction(2 * i + 1, width) - 1 for i in range(width)]
    ys = [Fraction(2 * j + 1, height) - 1 for j in range(height)]
    best = np.full((height, width), -1, np.int64)
    best_z = np.full((height, width), np.inf)
    for t, f in enumerate(tri):
        V = [P[int(k)] for k in f]
        det = _det3(*V)
        if det == 0:
            continue
        s = 1 if det > 0 else -1
        z = depth[t]
        # Candidate pixels: the projected extent when all corners are ahead of the eye.
        if all(v[2] > 0 for v in V):
            px = [float(v[0] / v[2]) for v in V]
            py = [float(v[1] / v[2]) for v in V]
            cols = [i for i in range(width) if min(px) - 1e-6 <= float(xs[i]) <= max(px) + 1e-6]
            rows = [j for j in range(height) if min(py) - 1e-6 <= float(ys[j]) <= max(py) + 1e-6]
        else:
            cols, rows = range(width), range(height)
        for j in rows:
            for i in cols:
                p = (xs[i], ys[j], Fraction(1))
                inside = True
                for k in range(3):
                    Pj, Pk = V[(k + 1) % 3], V[(k + 2) % 3]
                    e = s * _det3(Pj, Pk, p)
                    if e == 0:
                        a = s * (Pj[1] * Pk[2] - Pj[2] * Pk[1])
                        b = s * (Pj[2] * Pk[0] - Pj[0] * Pk[2])
                        e = a if a != 0 else b
                    if e <= 0:
                        inside = False
                        break
                if inside and -1 <= z <= 1 and z < best_z[j, i]:
                    best_z[j, i], best[j, i] = z, t
    return best


def _with_depths(xyw: np.ndarray, tri: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Corners (X, Y, W) -> (clip (3F, 4), tri (3F, 3), c (F,)): unshared corners with Z = c W, so
    each triangle lies in the plane z/w = c, c distinct per triangle (at least 5e-3 apart)."""
    c = rng.permutation(len(tri)) * (1.6 / max(1, len(tri))) - 0.8
    corners = xyw[tri]                                         # (F, 3, 3)
    z = c[:, None] * corners[:, :, 2]
    clip = np.concatenate([corners[:, :, :2], z[:, :, None], corners[:, :, 2:]], 2).reshape(-1, 4)
    return clip, np.arange(3 * len(tri)).reshape(-1, 3), c


def _centre_grid(n: int, res: int, rng, step: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A perspective grid whose vertices project exactly onto pixel centres (step in pixels)."""
    g = (2 * (np.arange(n) * step + (res - (n - 1) * step) / 2) + 1) / res - 1
    gx, gy = np.meshgrid(g, g, indexing="xy")
    w = rng.choice([0.5, 1.0, 2.0, 4.0], size=gx.size)          # powers of two: X = x W stays exact
    xyw = np.stack([gx.ravel() * w, gy.ravel() * w, w], 1)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    tri = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    return xyw, tri


def _tiny_snapped(count: int, res: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Triangles of ~1 px on a quarter-pixel lattice (corners on centres, edges through them), random W."""
    anchor = rng.integers(1, res - 2, size=(count, 1, 2)) + 0.5 * rng.integers(0, 2, size=(count, 1, 2))
    pix = anchor + rng.integers(-4, 5, size=(count, 3, 2)) / 4.0
    ndc = (2 * pix + 1) / res - 1
    w = rng.uniform(0.5, 3.0, size=(count, 3, 1))
    return np.concatenate([ndc * w, w], 2).reshape(-1, 3), np.arange(3 * count).reshape(-1, 3)


def _edge_through_centre(count: int, res: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Triangles within 1 px of a pixel centre with an edge through it (up to the rounding of
    non-dyadic corners), so float coordinates cannot tell the side: only the exact path can."""
    q = rng.integers(1, res - 1, size=(count, 1, 2)).astype(np.float64)
    angle = rng.uniform(0, 2 * np.pi, size=(count, 1))
    d = np.stack([np.cos(angle), np.sin(angle)], 2)            # (count, 1, 2), unit direction
    t = np.stack([rng.uniform(0.2, 0.7, count), -rng.uniform(0.2, 0.7, count)], 1)[:, :, None]
    side = rng.choice([-1, 1], size=(count, 1, 1)) * rng.uniform(0.2, 0.6, size=(count, 1, 1))
    apex = q + side * np.concatenate([-d[:, :, 1:], d[:, :, :1]], 2) + 0.1 * d
    pix = np.concatenate([q + t * d, apex], 1)                 # (count, 3, 2)
    ndc = (2 * pix + 1) / res - 1
    w = rng.choice([1.0, 1.3, 2.7], size=(count, 3, 1))
    return np.concatenate([ndc * w, w], 2).reshape(-1, 3), np.arange(3 * count).reshape(-1, 3)


def _slivers(count: int, res: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Nearly degenerate and very thin triangles: a long edge through pixel centres (integer steps
    from a centre), the third corner 1e-9 .. 0.1 px off it, on either side."""
    p0 = rng.integers(0, res, size=(count, 2)).astype(np.float64)
    d = rng.integers(-12, 13, size=(count, 2)).astype(np.float64)
    d[(d == 0).all(1)] = (3.0, 1.0)
    p1 = p0 + d
    off = rng.choice([-1, 1], size=(count, 1)) * rng.choice([1e-9, 1e-6, 1e-3, 0.1], size=(count, 1))
    p2 = p0 + d * rng.uniform(0.2, 0.8, size=(count, 1)) + off * np.stack([-d[:, 1], d[:, 0]], 1)
    pix = np.stack([p0, p1, p2], 1)
    ndc = (2 * pix + 1) / res - 1
    w = rng.uniform(0.5, 2.0, size=(count, 3, 1))
    return np.concatenate([ndc * w, w], 2).reshape(-1, 3), np.arange(3 * count).reshape(-1, 3)


def _behind(count: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Triangles with corners behind the eye or on W = 0, some crossing it."""
    xyw = rng.uniform(-1.5, 1.5, size=(count, 3, 3))
    xyw[:, :, 2] = rng.choice([-1.0, -0.25, 0.0, 0.25, 1.0, 2.0], size=(count, 3))
    return xyw.reshape(-1, 3), np.arange(3 * count).reshape(-1, 3)


SCENES = {
    "centre_grid": lambda rng: _centre_grid(10, 16, rng),
    "centre_grid_half_pixel": lambda rng: _centre_grid(17, 16, rng, step=0.5),
    "tiny_snapped": lambda rng: _tiny_snapped(150, 16, rng),
    "edge_through_centre": lambda rng: _edge_through_centre(120, 16, rng),
    "slivers": lambda rng: _slivers(60, 16, rng),
    "behind_the_eye": lambda rng: _behind(12, rng),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scene", sorted(SCENES))
def test_every_pixel_gets_the_exact_triangle(scene, dtype):
    rng = np.random.default_rng(sorted(SCENES).index(scene))
    xyw, tri = SCENES[scene](rng)
    clip, tri, depth = _with_depths(xyw, tri, rng)
    clip = torch.tensor(clip, dtype=dtype)
    exact = _exact_ids(clip.double().numpy(), tri, depth, 16, 16)  # the values the kernel sees
    results = []
    for threads in (1, 2):
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            results.append(rasterize(clip[None], torch.tensor(tri, dtype=torch.int32), (16, 16))[0])
        finally:
            torch.set_num_threads(old)
    assert torch.equal(results[0], results[1])
    got = results[0][..., 3].long().numpy() - 1
    assert (exact >= 0).sum() >= 8, "the scene covers too few pixels to test anything"
    np.testing.assert_array_equal(got, exact)
