import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared").resolve()

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def shared_path(*parts) -> Path:
    """A path under ../shared, or skip the test when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not available")
    return p


def tiny_canonical(seed: int = 0) -> dict:
    """A small valid canonical model: a bumpy grid 'face' with 3 id, 2 exp, 2 albedo components."""
    rng = np.random.default_rng(seed)
    n_side = 9
    xs, ys = np.meshgrid(np.linspace(-60, 60, n_side), np.linspace(-80, 80, n_side))
    z = 40 * np.exp(-(xs ** 2 + ys ** 2) / 3000.0)
    verts = np.stack([xs.ravel(), ys.ravel(), z.ravel()], 1).astype(np.float32)
    tris = []
    for r in range(n_side - 1):
        for c in range(n_side - 1):
            i = r * n_side + c
            tris += [[i, i + 1, i + n_side + 1], [i, i + n_side + 1, i + n_side]]
    tris = np.array(tris, dtype=np.int64)
    n = len(verts)
    lm_vertices = rng.integers(0, n, 68)
    from morph3d.model.canonical import landmark_faces_from_vertices
    lf, lb = landmark_faces_from_vertices(lm_vertices, tris)
    return dict(
        name="tiny", source_format="open", vertices_mean=verts, triangles=tris,
        identity_basis=rng.normal(0, 2, (n, 3, 3)).astype(np.float32),
        expression_basis=rng.normal(0, 1, (n, 3, 2)).astype(np.float32), expression_kind="blendshapes",
        expression_names=np.array(["jaw_open", "smile_left"]),
        albedo_mean=np.full((n, 3), 0.5, np.float32), albedo_basis=rng.normal(0, 0.05, (n, 3, 2)).astype(np.float32),
        landmark_faces=lf, landmark_bary=lb, region_labels=np.zeros(n, np.int64), region_names=np.array(["skin"]),
        uv_coords=((verts[:, :2] - verts[:, :2].min(0)) / np.ptp(verts[:, :2], 0)).astype(np.float32),
    )
