"""Basel Face Model 2009 and Deep3DFaceRecon's ``BFM_model_front.mat`` -> canonical model.

**BFM 2009** ``01_MorphableModel.mat`` (MATLAB v5): ``shapeMU`` (3N, 1) micrometres, ``shapePC``
(3N, 199) orthonormal, ``shapeEV`` (199, 1) *standard deviations* (despite the name), the same
for ``texMU``/``texPC``/``texEV`` in 0..255 colour units, ``tl`` (F, 3) 1-based triangles stored
clockwise seen from outside (they are flipped here), ``segbin`` (N, 4) segment masks (nose, eyes,
mouth, rest of the face). N = 53490. Units: micrometres -> mm (/1000); colour /255.

Expression for BFM 2009 comes from Guo et al.'s ``Exp_Pca.bin`` as Deep3DFaceRecon uses it:
int32 K, then float32 mean (3 n), then float32 basis stored as K rows of 3 n values, for the
n = 53215 vertices that remain after BFM's ear/neck trimming. Two companion files are needed:
``std_exp.txt`` (K standard deviations, from Deep3DFaceRecon) and ``BFM_exp_idx.mat`` (variable
``trimIndex``, n 1-based indices into BFM's 53490 vertices). When both sit next to ``Exp_Pca.bin``
they are found automatically. With an expression model the whole model is restricted to those
n vertices (triangles that touch a removed vertex are dropped). The expression mean ``expMU`` is
ignored, as in Deep3DFaceRecon, so the neutral face stays BFM's mean.

**BFM_model_front.mat** (Deep3DFaceRecon's 35709-vertex crop): ``meanshape`` (1, 3N), ``idBase``
(3N, 80), ``exBase`` (3N, 64), ``meantex`` (1, 3N) in 0..255, ``texBase`` (3N, 80), ``tri`` (F, 3),
``keypoints`` (68,) both 1-based, ``skinmask`` (N,), ``point_buf``/``frontmask2_idx``/``tri_mask2``
(unused here). Its units are 1e5 micrometres (0.1 m): x100 gives mm. Its bases are already scaled
by the standard deviations, so coefficients keep exactly Deep3DFaceRecon's meaning (80 id, 64 exp,
80 tex of the 257-dim vector). As Deep3DFaceRecon does by default (``recenter=True``), the mean
shape is translated so its vertex centroid is the origin; colours are divided by 255.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from morph3d.model.canonical import ModelFormatError, landmark_faces_from_vertices

from ._common import (basis_array, fail, finish, index_array, landmarks_undefined, orient_outward,
                      pca_names, read_mat, regions_from_masks, require, std_vector, truncate,
                      vertex_array)

UM_TO_MM = 1e-3
FRONT_TO_MM = 100.0  # Deep3DFaceRecon stores BFM in units of 1e5 micrometres
BFM2009_KEYS = ("shapeMU", "shapePC", "shapeEV", "texMU", "texPC", "texEV", "tl")
FRONT_KEYS = ("meanshape", "idBase", "exBase", "meantex", "texBase", "tri")
SEGMENT_NAMES = ("nose", "eyes", "mouth", "skin")  # BFM's fourth segment is the rest of the face
BFM_LICENSE = "Basel Face Model 2009: University of Basel licence, non-commercial research only"


def read_exp_pca_bin(path) -> tuple[np.ndarray, np.ndarray]:
    """Guo et al.'s ``Exp_Pca.bin``: mean (n, 3) and orthonormal basis (n, 3, K), float32, micrometres."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 4:
        fail(path, "truncated Exp_Pca.bin (no header)")
    k = int(np.frombuffer(data, "<i4", 1)[0])
    body = len(data) - 4
    if k <= 0 or k > 10000 or body % (12 * (k + 1)):
        fail(path, f"not an Exp_Pca.bin file: {len(data)} bytes do not hold an int32 K={k} followed "
                   "by a float32 mean and K float32 rows of 3n values (truncated?)")
    n = body // (12 * (k + 1))
    values = np.frombuffer(data, "<f4", offset=4).astype(np.float32)
    mean = values[: 3 * n].reshape(n, 3)
    basis = values[3 * n:].reshape(k, n, 3).transpose(1, 2, 0)
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(basis))):
        fail(path, "Exp_Pca.bin contains NaN or infinite values")
    return mean, basis


def _read_vector_file(path: Path, mat_keys) -> np.ndarray:
    """Numbers from a text file, a .npy, or the first of ``mat_keys`` in a .mat file."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".mat":
            data = read_mat(path)
            for key in mat_keys:
                if key in data:
                    return np.asarray(data[key]).reshape(-1)
            fail(path, f"none of {list(mat_keys)} found (found {sorted(data)})")
        if suffix == ".npy":
            return np.load(path, allow_pickle=False).reshape(-1)
        return np.loadtxt(path, ndmin=1).reshape(-1)
    except (ModelFormatError, FileNotFoundError):
        raise
    except (ValueError, OSError) as exc:
        fail(path, f"not a readable list of numbers ({exc})")


def _sibling(base: Path, explicit, name: str) -> Path | None:
    if explicit is not None:
        return Path(explicit)
    candidate = base.parent / name
    return candidate if candidate.is_file() else None


def _landmark_vertices(path: Path, vertices_um: np.ndarray) -> np.ndarray:
    """68 BFM 2009 vertex ids (-1 undefined) from a landmark file.

    ``.txt``/``.npy``: 68 0-based vertex indices (-1 = undefined). ``.mat``: ``keypoints``,
    1-based (MATLAB). A ``BFM_model_front.mat`` is accepted too: its keypoints index the
    35709-vertex crop, so each is matched to the BFM 2009 vertex at the same position
    (the crop's ``meanshape`` is BFM's ``shapeMU`` / 1e5, to float32 rounding).
    """
    n = vertices_um.shape[0]
    if path.suffix.lower() != ".mat":
        ids = index_array(path, "landmarks", _read_vector_file(path, ()), n, one_based=False,
                          allow_undefined=True)
    else:
        data = read_mat(path)
        require(path, data, ("keypoints",), "landmark")
        if "meanshape" in data:
            crop = vertex_array(path, "meanshape", data["meanshape"]) * 1e5
            kp = index_array(path, "keypoints", np.asarray(data["keypoints"]).reshape(-1),
                             crop.shape[0], one_based=True)
            from scipy.spatial import cKDTree

            dist, ids = cKDTree(vertices_um).query(crop[kp])
            if np.any(dist > 10.0):  # 10 micrometres: float32 rounding is far below this
                fail(path, f"its keypoints do not sit on BFM 2009 vertices (up to {dist.max():.0f} "
                           "micrometres away); is it built from this BFM?")
            ids = ids.astype(np.int64)
        else:
            ids = index_array(path, "keypoints", np.asarray(data["keypoints"]).reshape(-1), n,
                              one_based=True)
    if ids.shape[0] != 68:
        fail(path, f"expected 68 landmark vertex indices, found {ids.shape[0]}")
    return ids


def _restrict(keep: np.ndarray, n: int, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Old->new vertex map (-1 removed) and the triangles whose corners all survive, re-indexed."""
    remap = np.full(n, -1, dtype=np.int64)
    remap[keep] = np.arange(keep.shape[0])
    tri = remap[triangles]
    return remap, tri[(tri >= 0).all(axis=1)]


def load_bfm2009(path, expression_file=None, expression_std_file=None, expression_index_file=None,
                 landmark_file=None, num_identity=None, num_expression=None, num_albedo=None,
                 recenter: bool = False) -> dict:
    """Load BFM 2009's ``01_MorphableModel.mat`` as a canonical dict.

    expression_file: ``Exp_Pca.bin``; expression_std_file (default: ``std_exp.txt`` beside it) and
    expression_index_file (default: ``BFM_exp_idx.mat`` beside it or beside the model) as described
    in the module docstring. Without an expression file the expression basis is empty.
    landmark_file: optional iBUG-68 vertex ids (see :func:`_landmark_vertices`); else undefined.
    num_*: keep only the first components (default all). recenter: move the vertex centroid of the
    mean shape to the origin (default: keep BFM's own origin).
    """
    path = Path(path)
    data = read_mat(path)
    require(path, data, BFM2009_KEYS, "BFM 2009 (01_MorphableModel.mat)")
    mean_um = vertex_array(path, "shapeMU", data["shapeMU"])
    n = mean_um.shape[0]
    id_pc = basis_array(path, "shapePC", data["shapePC"], n)
    id_std = std_vector(path, "shapeEV", data["shapeEV"], id_pc.shape[2])
    tex_mean = vertex_array(path, "texMU", data["texMU"], n)
    tex_pc = basis_array(path, "texPC", data["texPC"], n)
    tex_std = std_vector(path, "texEV", data["texEV"], tex_pc.shape[2])
    tri = index_array(path, "tl", data["tl"], n, one_based=True)
    if tri.ndim != 2 or tri.shape[1] != 3:
        fail(path, f"'tl' must be (F, 3), got {tri.shape}")
    ki = truncate(path, "identity", id_pc.shape[2], num_identity)
    ka = truncate(path, "albedo", tex_pc.shape[2], num_albedo)

    masks = []
    if "segbin" in data:
        seg = np.asarray(data["segbin"])
        if seg.shape == (len(SEGMENT_NAMES), n):
            seg = seg.T
        if seg.shape != (n, len(SEGMENT_NAMES)):
            fail(path, f"'segbin' must be ({n}, 4), got {seg.shape}")
        masks = [(name, seg[:, i] != 0) for i, name in enumerate(SEGMENT_NAMES)]
    labels, names = regions_from_masks(n, masks, "skin" if not masks else "other")

    lmk_ids = (_landmark_vertices(Path(landmark_file), mean_um) if landmark_file is not None
               else np.full(68, -1, dtype=np.int64))

    exp = np.zeros((n, 3, 0), dtype=np.float32)
    exp_file = Path(expression_file) if expression_file is not None else None
    if exp_file is not None:
        exp_basis_um, keep = _bfm_expression(exp_file, expression_std_file, expression_index_file,
                                             path, n, num_expression)
        remap, tri = _restrict(keep, n, tri)
        mean_um, id_pc, tex_mean, tex_pc = mean_um[keep], id_pc[keep], tex_mean[keep], tex_pc[keep]
        labels, lmk_ids = labels[keep], np.where(lmk_ids >= 0, remap[np.maximum(lmk_ids, 0)], -1)
        exp = exp_basis_um
        n = keep.shape[0]
    elif num_expression:
        fail(path, "num_expression given but no expression_file (Exp_Pca.bin)")

    mean = mean_um * UM_TO_MM
    if recenter:
        mean = mean - mean.mean(axis=0, keepdims=True)
    tri, _ = orient_outward(mean, tri)
    lmk_faces, lmk_bary = landmark_faces_from_vertices(lmk_ids, tri) if np.any(lmk_ids >= 0) \
        else landmarks_undefined()
    used = np.unique(labels)
    model = {
        "name": "Basel Face Model 2009" + (" + Exp_Pca expressions" if exp.shape[2] else ""),
        "source_format": "bfm2009",
        "vertices_mean": mean,
        "triangles": tri,
        "identity_basis": id_pc[:, :, :ki] * (id_std[:ki] * UM_TO_MM).astype(np.float32),
        "expression_basis": exp * UM_TO_MM,
        "expression_kind": "pca",
        "expression_names": pca_names("exp", exp.shape[2]),
        "albedo_mean": tex_mean / 255.0,
        "albedo_basis": tex_pc[:, :, :ka] * (tex_std[:ka] / 255.0).astype(np.float32),
        "landmark_faces": lmk_faces,
        "landmark_bary": lmk_bary,
        "region_labels": np.searchsorted(used, labels),
        "region_names": names[used],
        "license": BFM_LICENSE,
    }
    return finish(model, path)


def _bfm_expression(exp_file: Path, std_file, index_file, model_path: Path, n: int, k_want):
    """Scaled expression basis (n', 3, K) micrometres and the BFM vertex ids (n',) it lives on."""
    _, basis = read_exp_pca_bin(exp_file)
    k = truncate(exp_file, "expression", basis.shape[2], k_want)
    std_path = _sibling(exp_file, std_file, "std_exp.txt")
    if std_path is None:
        fail(exp_file, "needs the expression standard deviations: pass expression_std_file= "
                       "(Deep3DFaceRecon's std_exp.txt) or put std_exp.txt next to it")
    std = std_vector(std_path, "std_exp", _read_vector_file(std_path, ("std_exp", "expEV")),
                     basis.shape[2])
    m = basis.shape[0]
    if m == n:
        keep = np.arange(n)
    else:
        idx_path = _sibling(exp_file, index_file, "BFM_exp_idx.mat") or \
            _sibling(model_path, None, "BFM_exp_idx.mat")
        if idx_path is None:
            fail(exp_file, f"is defined on {m} of BFM's {n} vertices: pass expression_index_file= "
                           "(BFM_exp_idx.mat with 'trimIndex', 1-based) or put it next to the file")
        keep = index_array(idx_path, "trimIndex", _read_vector_file(idx_path, ("trimIndex",)), n,
                           one_based=idx_path.suffix.lower() == ".mat")
        if keep.shape[0] != m:
            fail(idx_path, f"lists {keep.shape[0]} vertices, the expression model has {m}")
        if np.unique(keep).shape[0] != m:
            fail(idx_path, "lists some vertices twice")
    return basis[:, :, :k] * std[:k].astype(np.float32), keep


def load_bfm_front(path, recenter: bool = True) -> dict:
    """Load Deep3DFaceRecon's ``BFM_model_front.mat`` as a canonical dict (see module docstring)."""
    path = Path(path)
    data = read_mat(path)
    require(path, data, FRONT_KEYS, "Deep3DFaceRecon BFM_model_front.mat")
    mean = vertex_array(path, "meanshape", data["meanshape"])
    n = mean.shape[0]
    id_base = basis_array(path, "idBase", data["idBase"], n)
    exp_base = basis_array(path, "exBase", data["exBase"], n)
    tex_mean = vertex_array(path, "meantex", data["meantex"], n)
    tex_base = basis_array(path, "texBase", data["texBase"], n)
    tri = index_array(path, "tri", data["tri"], n, one_based=True)
    if tri.ndim != 2 or tri.shape[1] != 3:
        fail(path, f"'tri' must be (F, 3), got {tri.shape}")
    if recenter:
        mean = mean - mean.mean(axis=0, keepdims=True)
    mean = mean * FRONT_TO_MM
    tri, _ = orient_outward(mean, tri)

    if "keypoints" in data:
        kp = index_array(path, "keypoints", np.asarray(data["keypoints"]).reshape(-1), n, one_based=True)
        if kp.shape[0] != 68:
            fail(path, f"'keypoints' must list 68 vertices, found {kp.shape[0]}")
        lmk_faces, lmk_bary = landmark_faces_from_vertices(kp, tri)
    else:
        lmk_faces, lmk_bary = landmarks_undefined()
    if "skinmask" in data:
        skin = np.asarray(data["skinmask"]).reshape(-1)
        if skin.shape[0] != n:
            fail(path, f"'skinmask' must have {n} entries, found {skin.shape[0]}")
        labels, names = regions_from_masks(n, [("skin", skin != 0)], "other")
    else:
        labels, names = np.zeros(n, dtype=np.int64), np.asarray(["face"])

    model = {
        "name": "Basel Face Model 2009 (Deep3DFaceRecon front crop)",
        "source_format": "bfm_front",
        "vertices_mean": mean,
        "triangles": tri,
        "identity_basis": id_base * FRONT_TO_MM,
        "expression_basis": exp_base * FRONT_TO_MM,
        "expression_kind": "pca",
        "expression_names": pca_names("exp", exp_base.shape[2]),
        "albedo_mean": tex_mean / 255.0,
        "albedo_basis": tex_base / 255.0,
        "landmark_faces": lmk_faces,
        "landmark_bary": lmk_bary,
        "region_labels": labels,
        "region_names": names,
        "license": BFM_LICENSE,
    }
    return finish(model, path)
