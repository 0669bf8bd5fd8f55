"""Small canonical models with known geometry for the renderer tests, and a 2D 68-landmark layout."""
import math

import numpy as np
import torch

from morph3d.model import MorphableModel
from morph3d.model.canonical import landmark_faces_from_vertices


def _landmarks_at(verts: np.ndarray, tris: np.ndarray, targets: np.ndarray):
    """Landmarks on the vertices nearest to target points (68, 3)."""
    ids = np.argmin(((verts[None] - targets[:, None]) ** 2).sum(-1), axis=1)
    return landmark_faces_from_vertices(ids, tris)


def quad_canonical(half: float = 50.0, n: int = 4) -> dict:
    """A flat square [-half, half]^2 at z = 0 facing +z, as an n x n grid; regions: x < 0 / x >= 0."""
    xs = np.linspace(-half, half, n + 1)
    gx, gy = np.meshgrid(xs, xs[::-1])  # row 0 at the top (y = +half)
    verts = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], 1).astype(np.float32)
    tris = []
    for r in range(n):
        for c in range(n):
            i = r * (n + 1) + c
            # counter-clockwise seen from +z (x right, y up; rows go down)
            tris += [[i, i + n + 1, i + 1], [i + 1, i + n + 1, i + n + 2]]
    tris = np.array(tris, np.int64)
    nv = len(verts)
    rng = np.random.default_rng(3)
    lf, lb = _landmarks_at(verts, tris, verts[rng.integers(0, nv, 68)])
    uv = ((verts[:, :2] + half) / (2 * half)).astype(np.float32)
    return dict(name="quad", source_format="open", vertices_mean=verts, triangles=tris,
                identity_basis=np.zeros((nv, 3, 1), np.float32), expression_basis=np.zeros((nv, 3, 1), np.float32),
                expression_kind="blendshapes", expression_names=np.array(["none"]),
                albedo_mean=np.full((nv, 3), 0.6, np.float32), albedo_basis=np.zeros((nv, 3, 0), np.float32),
                landmark_faces=lf, landmark_bary=lb, region_labels=(verts[:, 0] >= 0).astype(np.int64),
                region_names=np.array(["right_half", "left_half"]), uv_coords=uv)


def sphere_canonical(radius: float = 80.0, n_lat: int = 24, n_lon: int = 48) -> dict:
    """A UV sphere centred at the origin with smooth bases, smooth albedo and landmarks on the front.

    Regions: 0 'front' (z > 0.5 r), 1 'right' (x < 0), 2 'left' (x >= 0).
    Expressions: 'jaw_open' pulls the lower half down, 'puff' pushes the front out.
    Landmark k sits at the vertex nearest to the direction yaw = -60..60, pitch = -40..40 deg (a grid).
    """
    verts = [[0.0, radius, 0.0]]
    for i in range(1, n_lat):
        theta = math.pi * i / n_lat  # from +y
        for j in range(n_lon):
            phi = 2 * math.pi * j / n_lon  # 0 at +z, seam at -z
            verts.append([radius * math.sin(theta) * math.sin(phi), radius * math.cos(theta),
                          radius * math.sin(theta) * math.cos(phi)])
    verts.append([0.0, -radius, 0.0])
    verts = np.array(verts, np.float32)
    nv = len(verts)
    ring = lambda i, j: 1 + (i - 1) * n_lon + (j % n_lon)  # noqa: E731
    tris = []
    for j in range(n_lon):
        tris.append([0, ring(1, j), ring(1, j + 1)])
        tris.append([nv - 1, ring(n_lat - 1, j + 1), ring(n_lat - 1, j)])
    for i in range(1, n_lat - 1):
        for j in range(n_lon):
            a, b, c, d = ring(i, j), ring(i, j + 1), ring(i + 1, j), ring(i + 1, j + 1)
            tris += [[a, c, b], [b, c, d]]
    tris = np.array(tris, np.int64)
    # orient every triangle counter-clockwise seen from outside
    v = verts[tris]
    outward = np.einsum("fi,fi->f", np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), v.mean(1)) > 0
    tris[~outward] = tris[~outward][:, ::-1]
    unit = verts / radius
    yaw, pitch = np.meshgrid(np.linspace(-60, 60, 17), np.linspace(-40, 40, 4))
    yaw, pitch = np.radians(yaw.ravel()), np.radians(pitch.ravel())
    dirs = np.stack([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)], 1)
    lf, lb = _landmarks_at(verts, tris, radius * dirs)
    ident = np.stack([unit * np.array([1, 0, 0]), unit * np.array([0, 1, 0]), unit * np.array([0, 0, 1])], -1) * 5
    lower = np.clip(-unit[:, 1], 0, None)
    jaw = np.stack([np.zeros(nv), -12 * lower, -3 * lower], 1)
    puff = unit * 6 * np.exp(-((unit[:, 0] ** 2 + unit[:, 1] ** 2) / 0.3))[:, None] * (unit[:, 2:3] > 0)
    albedo = np.stack([0.55 + 0.25 * np.sin(1.5 * unit[:, 0] + 0.5), 0.45 + 0.2 * np.cos(2.0 * unit[:, 1]),
                       0.4 + 0.2 * unit[:, 2]], 1)
    alb_basis = np.stack([np.stack([unit[:, 0], unit[:, 1], unit[:, 2]], 1) * 0.05,
                          np.ones((nv, 3)) * 0.03], -1)
    regions = np.where(unit[:, 2] > 0.5, 0, np.where(unit[:, 0] < 0, 1, 2))
    uv = np.stack([(np.arctan2(unit[:, 0], unit[:, 2]) / (2 * np.pi)) + 0.5, 1 - np.arccos(unit[:, 1]) / np.pi], 1)
    return dict(name="sphere", source_format="open", vertices_mean=verts, triangles=tris,
                identity_basis=ident.astype(np.float32),
                expression_basis=np.stack([jaw, puff], -1).astype(np.float32), expression_kind="blendshapes",
                expression_names=np.array(["jaw_open", "puff"]), albedo_mean=albedo.astype(np.float32),
                albedo_basis=alb_basis.astype(np.float32), landmark_faces=lf, landmark_bary=lb,
                region_labels=regions.astype(np.int64), region_names=np.array(["front", "right", "left"]),
                uv_coords=uv.astype(np.float32))


def sphere_model(**kw) -> MorphableModel:
    return MorphableModel(sphere_canonical(**kw), "sphere")


def quad_model(**kw) -> MorphableModel:
    return MorphableModel(quad_canonical(**kw), "quad")


def directional_lighting(batch: int, direction=(0.3, 0.4, 1.0), ambient: float = 0.6, strength: float = 0.4):
    """Ambient + one directional light (camera frame) as (batch, 27) SH radiance coefficients."""
    from morph3d.model.lighting import sh_basis
    d = torch.tensor(direction, dtype=torch.float64)
    d = d / d.norm()
    light = math.pi * strength * sh_basis(d)
    light[0] += ambient * math.sqrt(4 * math.pi)
    return light.repeat(3).float().expand(batch, 27).clone()


def face_landmarks_2d(size: int = 128, open_mouth: float = 6.0) -> torch.Tensor:
    """A plausible frontal iBUG-68 layout (1, 68, 2) in pixels for a size x size image (generated, not data)."""
    s = size / 128.0
    pts = np.zeros((68, 2))
    t = np.linspace(np.pi, 2 * np.pi, 17)  # jaw: lower half ellipse from the image left to right
    pts[0:17] = np.stack([64 + 44 * np.cos(t), 58 - 50 * np.sin(t)], 1)
    for k, cx in ((17, 42), (22, 86)):  # brows: arcs
        xs = cx + np.linspace(-14, 14, 5)
        pts[k:k + 5] = np.stack([xs, 38 - 5 * np.cos((xs - cx) / 14 * np.pi / 2)], 1)
    pts[27:31] = np.stack([np.full(4, 64.0), np.linspace(50, 72, 4)], 1)  # bridge
    pts[31:36] = np.stack([np.linspace(55, 73, 5), 78 + np.array([0, 2, 3, 2, 0])], 1)  # nostrils
    for k, cx in ((36, 44), (42, 84)):  # eyes: hexagons, corner, 2 top, corner, 2 bottom
        a = np.array([180, 120, 60, 0, 300, 240]) * np.pi / 180
        pts[k:k + 6] = np.stack([cx + 10 * np.cos(a), 50 - 4 * np.sin(a)], 1)
    a = np.linspace(np.pi, 0, 7)  # outer mouth 48-54 (top, left to right) then 55-59 (bottom, right to left)
    pts[48:55] = np.stack([64 + 20 * np.cos(a), 95 - 6 * np.sin(a)], 1)
    a = np.linspace(2 * np.pi, np.pi, 7)[1:-1]
    pts[55:60] = np.stack([64 + 20 * np.cos(a), 95 + open_mouth - (7 + open_mouth) * np.sin(a)], 1)
    a = np.linspace(np.pi, 0, 5)  # inner mouth 60-64 top, 65-67 bottom
    pts[60:65] = np.stack([64 + 14 * np.cos(a), 95 - 2 * np.sin(a)], 1)
    a = np.linspace(2 * np.pi, np.pi, 5)[1:-1]
    pts[65:68] = np.stack([64 + 14 * np.cos(a), 95 + open_mouth * 0.5 - (2 + open_mouth * 0.5) * np.sin(a)], 1)
    return torch.tensor(pts * s, dtype=torch.float32)[None]
