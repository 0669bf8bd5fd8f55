"""The canonical morphable-model format: one ``.npz`` every loader converts to.

All arrays are numpy. Geometry is in millimetres in the model frame of
``docs/conventions.md`` (x to the viewer's right, y up, z out of the face towards
the viewer). Bases are pre-scaled by their standard deviations, so every
coefficient has a standard-normal prior (``N(0, 1)``) except blendshape weights
(``expression_kind == "blendshapes"``), which are 0 at neutral and 1 at the full
named expression.

Required keys (N vertices, F triangles, Ki/Ke/Ka components):

==========================  ==================  ===========================================
key                         shape / type        meaning
==========================  ==================  ===========================================
``name``                    str                 human-readable model name
``source_format``           str                 ``open``, ``bfm2009``, ``bfm_front``, ``flame``, ``sfm``
``vertices_mean``           (N, 3) float32      mean shape, mm
``triangles``               (F, 3) int64        vertex indices, counter-clockwise seen from outside
``identity_basis``          (N, 3, Ki) float32  mm per unit coefficient
``expression_basis``        (N, 3, Ke) float32  mm per unit coefficient / blend weight
``expression_kind``         str                 ``pca`` or ``blendshapes``
``expression_names``        (Ke,) str           a name per expression component
``albedo_mean``             (N, 3) float32      linear RGB reflectance in [0, 1]
``albedo_basis``            (N, 3, Ka) float32  per unit coefficient (Ka may be 0)
``landmark_faces``          (L,) int64          triangle of each iBUG-68 landmark, -1 if undefined
``landmark_bary``           (L, 3) float32      barycentric weights inside that triangle
``region_labels``           (N,) int64          index into ``region_names``
``region_names``            (R,) str            e.g. ``skin``, ``brows``, ``eyes``, ``nose``, ``lips``
==========================  ==================  ===========================================

Optional keys:

==========================  ==================  ===========================================
``uv_coords``               (U, 2) float32      texture coordinates in [0, 1], v up
``uv_triangles``            (F, 3) int64        indices into ``uv_coords`` per triangle corner
``contour_right``           (C,) int64          outline vertex candidates, subject's right half
``contour_left``            (C,) int64          same for the subject's left half
``identity_std_mm``         (Ki,) float32       RMS displacement of each mode, for reports
``flame_joint_regressor``   (J, N) float32      FLAME joints = regressor @ vertices
``flame_parents``           (J,) int64          kinematic tree, -1 for the root
``flame_skinning_weights``  (N, J) float32      linear-blend-skinning weights
``flame_pose_basis``        (N, 3, 9(J-1))      pose-corrective blendshapes
``license``                 str                 licence of the source model
==========================  ==================  ===========================================
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from ..io import atomic_write

FORMAT_VERSION = 1
NUM_LANDMARKS = 68

REQUIRED = (
    "name", "source_format", "vertices_mean", "triangles", "identity_basis", "expression_basis",
    "expression_kind", "expression_names", "albedo_mean", "albedo_basis", "landmark_faces",
    "landmark_bary", "region_labels", "region_names",
)
STRING_KEYS = ("name", "source_format", "expression_kind", "license")


class ModelFormatError(ValueError):
    """A model file is unreadable or inconsistent; the message names the file and the problem."""


def _fail(source: str, problem: str) -> None:
    raise ModelFormatError(f"{source}: {problem}")


def _finite(source: str, key: str, a: np.ndarray) -> None:
    if not np.all(np.isfinite(a)):
        _fail(source, f"'{key}' contains NaN or infinite values")


def validate(model: Mapping[str, object], source: str = "<model>") -> dict:
    """Check a canonical model dict and return it with normalised dtypes.

    Raises :class:`ModelFormatError` naming ``source`` and the first problem found:
    missing keys, wrong shapes, non-finite values, triangle or landmark indices out of range.
    """
    missing = [k for k in REQUIRED if k not in model]
    if missing:
        _fail(source, f"missing required entries {missing}")
    out: dict = {}
    for k in STRING_KEYS:
        if k in model:
            out[k] = str(np.asarray(model[k]).item() if isinstance(model[k], np.ndarray) else model[k])

    mean = np.asarray(model["vertices_mean"], dtype=np.float32)
    if mean.ndim != 2 or mean.shape[1] != 3 or mean.shape[0] < 3:
        _fail(source, f"'vertices_mean' must be (N, 3) with N >= 3, got {mean.shape}")
    _finite(source, "vertices_mean", mean)
    n = mean.shape[0]
    out["vertices_mean"] = mean

    tri = np.asarray(model["triangles"])
    if tri.ndim != 2 or tri.shape[1] != 3 or tri.shape[0] < 1:
        _fail(source, f"'triangles' must be (F, 3) with F >= 1, got {tri.shape}")
    if not np.issubdtype(tri.dtype, np.integer):
        _fail(source, f"'triangles' must hold integers, got {tri.dtype}")
    tri = tri.astype(np.int64)
    if tri.min() < 0 or tri.max() >= n:
        _fail(source, f"triangle indices must lie in [0, {n - 1}], found [{tri.min()}, {tri.max()}]")
    out["triangles"] = tri

    for key in ("identity_basis", "expression_basis", "albedo_basis"):
        b = np.asarray(model[key], dtype=np.float32)
        if b.ndim == 2 and b.shape[1] == 0:
            b = b.reshape(n, 3, 0)
        if b.ndim != 3 or b.shape[0] != n or b.shape[1] != 3:
            _fail(source, f"'{key}' must be (N={n}, 3, K), got {b.shape}")
        _finite(source, key, b)
        out[key] = b

    kind = out["expression_kind"]
    if kind not in ("pca", "blendshapes"):
        _fail(source, f"'expression_kind' must be 'pca' or 'blendshapes', got {kind!r}")
    names = np.asarray(model["expression_names"]).astype(str).reshape(-1)
    if names.shape[0] != out["expression_basis"].shape[2]:
        _fail(source, f"{names.shape[0]} expression names for {out['expression_basis'].shape[2]} components")
    out["expression_names"] = names

    alb = np.asarray(model["albedo_mean"], dtype=np.float32)
    if alb.shape != (n, 3):
        _fail(source, f"'albedo_mean' must be (N={n}, 3), got {alb.shape}")
    _finite(source, "albedo_mean", alb)
    out["albedo_mean"] = alb

    lf = np.asarray(model["landmark_faces"]).astype(np.int64).reshape(-1)
    lb = np.asarray(model["landmark_bary"], dtype=np.float32)
    if lf.shape[0] != NUM_LANDMARKS or lb.shape != (NUM_LANDMARKS, 3):
        _fail(source, f"landmarks must be 68 faces and (68, 3) barycentrics, got {lf.shape} and {lb.shape}")
    if lf.max() >= tri.shape[0] or lf.min() < -1:
        _fail(source, f"landmark triangle indices must lie in [-1, {tri.shape[0] - 1}]")
    _finite(source, "landmark_bary", lb)
    out["landmark_faces"], out["landmark_bary"] = lf, lb

    rl = np.asarray(model["region_labels"]).astype(np.int64).reshape(-1)
    rn = np.asarray(model["region_names"]).astype(str).reshape(-1)
    if rl.shape[0] != n:
        _fail(source, f"'region_labels' must have one label per vertex ({n}), got {rl.shape[0]}")
    if rn.shape[0] == 0 or rl.min() < 0 or rl.max() >= rn.shape[0]:
        _fail(source, f"region labels must index the {rn.shape[0]} region names")
    out["region_labels"], out["region_names"] = rl, rn

    if "uv_coords" in model:
        uv = np.asarray(model["uv_coords"], dtype=np.float32)
        uvt = np.asarray(model.get("uv_triangles", tri)).astype(np.int64)
        if uv.ndim != 2 or uv.shape[1] != 2:
            _fail(source, f"'uv_coords' must be (U, 2), got {uv.shape}")
        if uvt.shape != tri.shape or uvt.min() < 0 or uvt.max() >= uv.shape[0]:
            _fail(source, "'uv_triangles' must be (F, 3) indices into 'uv_coords'")
        _finite(source, "uv_coords", uv)
        out["uv_coords"], out["uv_triangles"] = uv, uvt
    for key in ("contour_right", "contour_left"):
        if key in model:
            c = np.asarray(model[key]).astype(np.int64).reshape(-1)
            if c.size and (c.min() < 0 or c.max() >= n):
                _fail(source, f"'{key}' vertex indices out of range [0, {n - 1}]")
            out[key] = c
    if "identity_std_mm" in model:
        out["identity_std_mm"] = np.asarray(model["identity_std_mm"], dtype=np.float32).reshape(-1)
    if "flame_parents" in model:
        parents = np.asarray(model["flame_parents"]).astype(np.int64).reshape(-1)
        j = parents.shape[0]
        reg = np.asarray(model["flame_joint_regressor"], dtype=np.float32)
        w = np.asarray(model["flame_skinning_weights"], dtype=np.float32)
        pb = np.asarray(model["flame_pose_basis"], dtype=np.float32)
        if reg.shape != (j, n) or w.shape != (n, j) or pb.shape != (n, 3, 9 * (j - 1)):
            _fail(source, f"FLAME articulation arrays have inconsistent shapes "
                          f"(regressor {reg.shape}, weights {w.shape}, pose basis {pb.shape}) for J={j}, N={n}")
        for key, a in (("flame_joint_regressor", reg), ("flame_skinning_weights", w), ("flame_pose_basis", pb)):
            _finite(source, key, a)
        if parents[0] != -1 or np.any(parents[1:] < 0) or np.any(parents[1:] >= np.arange(1, j)):
            _fail(source, "'flame_parents' must start with -1 and list each joint after its parent")
        out.update(flame_parents=parents, flame_joint_regressor=reg, flame_skinning_weights=w,
                   flame_pose_basis=pb)
    return out


def save(model: Mapping[str, object], path: str | Path) -> Path:
    """Validate ``model`` and write it atomically as a compressed canonical ``.npz``."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"{path}: the canonical format is a .npz file")
    data = validate(model, str(path))
    data["format_version"] = np.int64(FORMAT_VERSION)
    return atomic_write(path, lambda tmp: np.savez_compressed(tmp, **data))


def load(path: str | Path) -> dict:
    """Read and validate a canonical ``.npz`` written by :func:`save`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            raw = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except Exception as exc:  # zip errors, truncated files
        raise ModelFormatError(f"{path}: not a readable .npz file ({exc})") from exc
    if "format_version" not in raw:
        raise ModelFormatError(f"{path}: not a morph3d canonical model (no 'format_version'); "
                               "convert it first with `morph3d convert SRC DST.npz`")
    version = int(raw.pop("format_version"))
    if version > FORMAT_VERSION:
        raise ModelFormatError(f"{path}: canonical format version {version} is newer than this morph3d "
                               f"({FORMAT_VERSION}); upgrade morph3d")
    return validate(raw, str(path))


def landmark_faces_from_vertices(vertex_ids: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Express vertex-index landmarks (-1 = undefined) as (triangle, barycentric) pairs.

    vertex_ids: (L,) int; triangles: (F, 3) int. Returns faces (L,) int64 and bary (L, 3) float32
    with weight 1 on the corner that is the landmark vertex.
    """
    vertex_ids = np.asarray(vertex_ids).astype(np.int64).reshape(-1)
    triangles = np.asarray(triangles).astype(np.int64)
    faces = np.full(vertex_ids.shape[0], -1, dtype=np.int64)
    bary = np.zeros((vertex_ids.shape[0], 3), dtype=np.float32)
    # first triangle that uses each vertex, and at which corner
    first_face = np.full(int(triangles.max()) + 1, -1, dtype=np.int64)
    first_corner = np.zeros_like(first_face)
    flat = triangles.reshape(-1)
    order = np.arange(flat.size)[::-1]  # later writes win, so iterate backwards to keep the first
    first_face[flat[order]] = order // 3
    first_corner[flat[order]] = order % 3
    for i, v in enumerate(vertex_ids):
        if v < 0 or v >= first_face.size or first_face[v] < 0:
            continue
        faces[i] = first_face[v]
        bary[i, first_corner[v]] = 1.0
    return faces, bary
