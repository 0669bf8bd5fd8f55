"""FLAME (2017/2020 ``generic_model.pkl``, 2023 Open) -> canonical model.

File layout (a dict, pickled by Python 2 with chumpy; read here without chumpy, see ``_pickle``):

- ``v_template`` (N, 3) metres; ``f`` (F, 3) 0-based triangles, counter-clockwise from outside.
- ``shapedirs`` (N, 3, 300 + 100): the first 300 columns are identity, the last 100 expression,
  both already in standard-deviation units (a coefficient of 1 is one standard deviation).
  Often a chumpy ``Ch`` whose array is its pickled ``x``.
- ``posedirs`` (N, 3, 9 (J - 1)): pose correctives, driven by the flattened ``R_j - I`` of the
  non-root joints (row-major 3x3, joints in order).
- ``J_regressor`` (J, N) scipy sparse; ``weights`` (N, J) skinning weights;
  ``kintree_table`` (2, J): row 0 the parent id of each joint (root: 2**32 - 1), row 1 joint ids.
  FLAME has J = 5: global, neck, jaw, left eye, right eye.

Metres become millimetres. There is no albedo in the file: the mean albedo is a plain mid skin
tone and the albedo basis is empty (Ka = 0). Landmarks come from an optional embedding file
(DECA's ``landmark_embedding.npy`` or FLAME's ``flame_static_embedding.pkl``), regions from an
optional ``FLAME_masks.pkl``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from morph3d.model.canonical import NUM_LANDMARKS

from ._common import (fail, finish, finite, index_array, landmarks_undefined, orient_outward, pca_names,
                      plain_albedo, read_npz, regions_from_masks, require, truncate)
from ._pickle import load_npy_object, load_pickle, to_array

FLAME_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
NUM_SHAPE_DIRS = 300  # FLAME's identity block; expression directions follow it
M_TO_MM = 1000.0

# FLAME_masks.pkl entries, most specific first (the masks overlap), and the region each becomes.
_MASK_REGIONS = (
    ("left_eyeball", "eyes"), ("right_eyeball", "eyes"), ("lips", "lips"), ("nose", "nose"),
    ("left_eye_region", "eye_region"), ("right_eye_region", "eye_region"), ("eye_region", "eye_region"),
    ("forehead", "forehead"), ("face", "skin"), ("left_ear", "ears"), ("right_ear", "ears"),
    ("neck", "neck"), ("scalp", "scalp"),
)


def read_flame_dict(path: Path) -> dict:
    """The raw FLAME dict from a ``.pkl`` (or a plain ``.npz`` with the same keys)."""
    if path.suffix.lower() == ".npz":
        raw = read_npz(path)
    else:
        raw = load_pickle(path)
    if not isinstance(raw, dict):
        fail(path, f"expected a pickled FLAME dict, found a {type(raw).__name__}")
    require(path, raw, FLAME_KEYS, "FLAME model")
    return raw


def load_flame(path, num_identity: int = 100, num_expression: int = 50, landmark_file=None,
               masks_file=None) -> dict:
    """Load a FLAME model file as a canonical dict.

    num_identity / num_expression: how many of the 300 identity / 100 expression directions to keep.
    landmark_file: optional landmark embedding (``landmark_embedding.npy`` from DECA with
    ``full_lmk_*`` (68) or ``static_lmk_*`` (51) entries, or ``flame_static_embedding.pkl`` with
    ``lmk_face_idx`` / ``lmk_b_coords``); 51-point embeddings fill iBUG points 18-68 and leave
    the 17 contour points undefined.
    masks_file: optional ``FLAME_masks.pkl`` (region name -> vertex ids) for region labels.
    """
    path = Path(path)
    raw = read_flame_dict(path)
    arrays = {k: to_array(path, k, raw[k]) for k in FLAME_KEYS}
    for k in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
        finite(path, k, arrays[k].astype(np.float64))

    v = arrays["v_template"].astype(np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] < 3:
        fail(path, f"'v_template' must be (N, 3), got {v.shape}")
    n = v.shape[0]
    tri = index_array(path, "f", arrays["f"], n, one_based=False)
    if tri.ndim != 2 or tri.shape[1] != 3:
        fail(path, f"'f' must be (F, 3), got {tri.shape}")

    dirs = arrays["shapedirs"].astype(np.float64)
    if dirs.ndim != 3 or dirs.shape[:2] != (n, 3) or dirs.shape[2] <= NUM_SHAPE_DIRS:
        fail(path, f"'shapedirs' must be ({n}, 3, {NUM_SHAPE_DIRS} + expression), got {dirs.shape}")
    ki = truncate(path, "identity", NUM_SHAPE_DIRS, num_identity)
    ke = truncate(path, "expression", dirs.shape[2] - NUM_SHAPE_DIRS, num_expression)

    parents = _parents(path, arrays["kintree_table"])
    j = parents.shape[0]
    regressor = arrays["J_regressor"].astype(np.float64)
    weights = arrays["weights"].astype(np.float64)
    posedirs = arrays["posedirs"].astype(np.float64)
    if regressor.shape != (j, n):
        fail(path, f"'J_regressor' must be ({j}, {n}), got {regressor.shape}")
    if weights.shape != (n, j):
        fail(path, f"'weights' must be ({n}, {j}), got {weights.shape}")
    if posedirs.shape != (n, 3, 9 * (j - 1)):
        fail(path, f"'posedirs' must be ({n}, 3, {9 * (j - 1)}), got {posedirs.shape}")

    tri, flipped = orient_outward(v, tri)
    if landmark_file is not None:
        lmk_faces, lmk_bary = read_landmark_embedding(Path(landmark_file), tri.shape[0])
        if flipped:
            lmk_bary = lmk_bary[:, [0, 2, 1]]
    else:
        lmk_faces, lmk_bary = landmarks_undefined()
    if masks_file is not None:
        labels, names = read_flame_masks(Path(masks_file), n)
    else:
        labels, names = np.zeros(n, dtype=np.int64), np.asarray(["head"])

    albedo_mean, albedo_basis = plain_albedo(n)
    model = {
        "name": f"FLAME ({path.name})",
        "source_format": "flame",
        "vertices_mean": v * M_TO_MM,
        "triangles": tri,
        "identity_basis": dirs[:, :, :ki] * M_TO_MM,
        "expression_basis": dirs[:, :, NUM_SHAPE_DIRS:NUM_SHAPE_DIRS + ke] * M_TO_MM,
        "expression_kind": "pca",
        "expression_names": pca_names("exp", ke),
        "albedo_mean": albedo_mean,
        "albedo_basis": albedo_basis,
        "landmark_faces": lmk_faces,
        "landmark_bary": lmk_bary,
        "region_labels": labels,
        "region_names": names,
        "flame_joint_regressor": regressor,
        "flame_parents": parents,
        "flame_skinning_weights": weights,
        "flame_pose_basis": posedirs * M_TO_MM,
        "license": "FLAME model licence (MPI-IS); see the licence that came with the model file",
    }
    return finish(model, path)


def _parents(path, kintree) -> np.ndarray:
    """Parent column index of each joint (-1 for the root) from FLAME's (2, J) kinematic tree."""
    k = np.asarray(kintree)
    if k.ndim != 2 or k.shape[0] != 2 or k.shape[1] < 1:
        fail(path, f"'kintree_table' must be (2, J), got {k.shape}")
    k = k.astype(np.int64)
    ids = {int(i): col for col, i in enumerate(k[1])}
    parents = np.empty(k.shape[1], dtype=np.int64)
    for col, p in enumerate(k[0]):
        if col == 0:
            parents[0] = -1
        elif int(p) in ids and ids[int(p)] < col:
            parents[col] = ids[int(p)]
        else:
            fail(path, f"'kintree_table' joint {int(k[1, col])} has parent {int(p)}, which is not an "
                       "earlier joint")
    return parents


def read_landmark_embedding(path: Path, num_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """iBUG-68 landmark triangles (68,) and barycentrics (68, 3) from a FLAME embedding file."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        raw = load_npy_object(path)
    elif suffix == ".npz":
        raw = read_npz(path)
    else:
        raw = load_pickle(path)
    if not isinstance(raw, dict):
        fail(path, f"expected a dict of landmark embeddings, found a {type(raw).__name__}")
    for faces_key, bary_key in (("full_lmk_faces_idx", "full_lmk_bary_coords"),
                                ("lmk_face_idx", "lmk_b_coords"),
                                ("static_lmk_faces_idx", "static_lmk_bary_coords")):
        if faces_key in raw and bary_key in raw:
            break
    else:
        fail(path, f"no landmark embedding found (expected full_lmk_faces_idx/full_lmk_bary_coords, "
                   f"lmk_face_idx/lmk_b_coords or static_lmk_*; found {sorted(raw)})")
    faces = index_array(path, faces_key, to_array(path, faces_key, raw[faces_key]).reshape(-1),
                        num_faces, one_based=False)
    bary = to_array(path, bary_key, raw[bary_key]).astype(np.float64).reshape(-1, 3)
    if bary.shape[0] != faces.shape[0]:
        fail(path, f"{faces.shape[0]} landmark faces but {bary.shape[0]} barycentric rows")
    if not np.all(np.isfinite(bary)) or np.any(np.abs(bary.sum(axis=1) - 1) > 1e-3):
        fail(path, f"'{bary_key}' rows must be finite and sum to 1")
    count = faces.shape[0]
    if count == NUM_LANDMARKS:
        return faces, bary.astype(np.float32)
    if count == NUM_LANDMARKS - 17:  # iBUG 18-68, no jaw contour
        out_faces, out_bary = landmarks_undefined()
        out_faces[17:], out_bary[17:] = faces, bary
        return out_faces, out_bary
    fail(path, f"expected 68 or 51 landmarks, found {count}")


def read_flame_masks(path: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Region labels (N,) and names from ``FLAME_masks.pkl`` (dict: region -> vertex ids)."""
    raw = load_pickle(path)
    if not isinstance(raw, dict):
        fail(path, f"expected a dict of vertex masks, found a {type(raw).__name__}")
    masks = []
    for key, region in _MASK_REGIONS:
        if key in raw:
            ids = index_array(path, key, to_array(path, key, raw[key]).reshape(-1), n, one_based=False)
            mask = np.zeros(n, dtype=bool)
            mask[ids] = True
            masks.append((region, mask))
    if not masks:
        fail(path, f"no known FLAME region masks (found {sorted(raw)})")
    return regions_from_masks(n, masks, "other")
