"""Slow, obviously-correct reference rasterizer and test meshes for the rasterization tests.

For every pixel centre p = (x, y, 1) and triangle with clip vertices P_i = (X_i, Y_i, W_i) the
reference solves [P0 P1 P2] b' = p: the ray through the pixel meets the triangle's plane at
sum(b_i P_i) with b = b' / sum(b') and W = 1 / sum(b'). The pixel is covered when W > 0, all
b_i >= 0 and -1 <= z/w <= 1; the smallest z/w wins, ties to the lower triangle id.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

REPO = Path(__file__).resolve().parents[1]
FACE_MODEL = REPO / "assets" / "open_face_model.npz"


def reference_rasterize(clip: np.ndarray, tri: np.ndarray, height: int, width: int, tol: float = 1e-9):
    """clip (N, 4), tri (F, 3) -> ids (H, W) int (-1 background), u, v, zw (H, W), ambiguous (H, W) bool.

    ``ambiguous`` marks pixels whose result depends on rounding: a pixel centre within ``tol``
    (in barycentric units) of some triangle's edge or clip plane, or two depths within ``tol``.
    """
    clip = np.asarray(clip, np.float64)
    tri = np.asarray(tri, np.int64)
    verts = clip[tri]                                   # (F, 3, 4)
    m = verts[:, :, [0, 1, 3]].transpose(0, 2, 1)      # columns are the vertices' (X, Y, W)
    det = np.linalg.det(m)
    good = np.abs(det) > 1e-300
    minv = np.zeros_like(m)
    minv[good] = np.linalg.inv(m[good])
    z, w = verts[:, :, 2], verts[:, :, 3]
    # Only triangles whose projected extent holds the pixel centre can cover it (all of them
    # when a vertex is behind the eye); the margin keeps near-edge pixels for the ambiguity test.
    ahead = (w > 0).all(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        px, py = verts[:, :, 0] / w, verts[:, :, 1] / w
    margin = 1e-6
    lo_x, hi_x = np.where(ahead, px.min(1), -np.inf) - margin, np.where(ahead, px.max(1), np.inf) + margin
    lo_y, hi_y = np.where(ahead, py.min(1), -np.inf) - margin, np.where(ahead, py.max(1), np.inf) + margin
    ids = np.full((height, width), -1, np.int64)
    u = np.zeros((height, width))
    v = np.zeros((height, width))
    zw = np.zeros((height, width))
    ambiguous = np.zeros((height, width), bool)
    for j in range(height):
        y = (2 * j + 1) / height - 1
        for i in range(width):
            x = (2 * i + 1) / width - 1
            cand = np.flatnonzero(good & (lo_x <= x) & (x <= hi_x) & (lo_y <= y) & (y <= hi_y))
            bp = minv[cand] @ np.array([x, y, 1.0])     # (K, 3)
            s = bp.sum(1)
            with np.errstate(divide="ignore", invalid="ignore"):
                b = bp / s[:, None]
                depth = (b * z[cand]).sum(1) / (b * w[cand]).sum(1)
            front = s > 0
            inside = front & (b >= 0).all(1) & (depth >= -1) & (depth <= 1)
            near_edge = front & (np.abs(b).min(1) < tol) & (b > -tol).all(1)
            near_plane = front & (b > -tol).all(1) & ((np.abs(depth - 1) < tol) | (np.abs(depth + 1) < tol))
            if near_edge.any() or near_plane.any():
                ambiguous[j, i] = True
            if not inside.any():
                continue
            hit = np.flatnonzero(inside)
            order = hit[np.lexsort((cand[hit], depth[hit]))]  # by depth, then triangle id
            best = order[0]
            if len(order) > 1 and abs(depth[order[1]] - depth[best]) < tol:
                ambiguous[j, i] = True
            ids[j, i] = cand[best]
            u[j, i], v[j, i], zw[j, i] = b[best, 0], b[best, 1], depth[best]
    return ids, u, v, zw, ambiguous


def perspective_clip(verts: np.ndarray, distance: float = 3.0, focal: float = 2.0, near: float = 1.0,
                     far: float = 6.0) -> np.ndarray:
    """Clip coordinates of ``verts (N, 3)`` seen by a camera at (0, 0, distance) looking along -z."""
    zc = verts[:, 2] - distance                      # camera-space z (negative in front)
    w = -zc
    a, b = (far + near) / (far - near), -2 * far * near / (far - near)
    return np.stack([focal * verts[:, 0], focal * verts[:, 1], a * w + b, w], 1)


def icosphere(subdivisions: int = 2, radius: float = 1.0):
    """A closed, consistently oriented sphere mesh: (verts (N, 3), tri (F, 3))."""
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)


def face_model_mean():
    """(verts (N, 3) mm, tri (F, 3)) of assets/open_face_model.npz, or None when it is absent."""
    if not FACE_MODEL.exists():
        return None
    with np.load(FACE_MODEL, allow_pickle=False) as data:
        return np.asarray(data["vertices_mean"], np.float64), np.asarray(data["triangles"], np.int64)


def frontal_clip(verts: np.ndarray, fill: float = 0.9) -> np.ndarray:
    """Orthographic frontal clip coordinates of a face (x right, y up, z towards the viewer)."""
    centre = (verts.max(0) + verts.min(0)) / 2
    half = np.abs(verts - centre).max(0)
    s = fill / max(half[0], half[1])
    x = (verts[:, 0] - centre[0]) * s
    y = -(verts[:, 1] - centre[1]) * s                 # image rows go down
    z = -(verts[:, 2] - centre[2]) / (half[2] + 1e-9) * 0.9  # nearer (larger z) -> smaller z/w
    return np.stack([x, y, z, np.ones_like(x)], 1)
