"""Surrey Face Model (eos's cereal binary ``MorphableModel``) -> canonical model.

cereal's binary archive is little-endian with no padding: sizes of containers are uint64, strings
are a uint64 length then bytes, ``std::array`` of numbers is its raw values, an Eigen matrix is
int32 rows, int32 cols, then rows x cols values in column-major order, ``std::optional`` is one
byte (1 = empty) then the value, ``std::variant`` an int32 alternative index then the value.
A class that declares a version writes it (uint32) the first time it appears.

``MorphableModel`` (versioned 1-4)::

    uint32 version
    PcaModel shape_model, PcaModel color_model
    [v>=2] optional<variant<PcaModel, vector<Blendshape>>> expression_model
    [v>=3] optional<unordered_map<string, int>> landmark_definitions
    vector<array<double, 2>> texture_coordinates            (one per vertex, v pointing down)
    [v>=4] vector<array<int, 3>> texture_triangle_indices

``PcaModel`` = VectorXf mean (3N), MatrixXf orthonormal basis (3N x K), VectorXf eigenvalues
(variances, K), vector<array<int, 3>> triangles (0-based). ``Blendshape`` = string name,
VectorXf deformation (3N). The standalone blendshapes file is a ``vector<Blendshape>``.

The SFM is already in the model frame of ``docs/conventions.md``: millimetres (the mean face is
about 150 mm wide), y up, z towards the viewer, counter-clockwise triangles. The basis is scaled
by sqrt(eigenvalue) (eos's "rescaled" basis), so coefficients are N(0, 1). The v texture
coordinate is flipped to point up. ``sfm_shape_3448.bin`` has no colour model: the albedo is a
plain mid skin tone with an empty basis (Ka = 0).

Companion files, found automatically next to the model under their standard names:
``expression_blendshapes_3448.bin``, ``ibug_to_sfm.txt`` (TOML, ``[landmark_mappings]`` 1-based
iBUG id -> 0-based vertex) and ``sfm_model_contours.json`` (``model_contour.right_contour`` /
``left_contour``, the subject's right and left outline).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from morph3d.model.canonical import landmark_faces_from_vertices

from ._common import (fail, finish, index_array, landmarks_undefined, orient_outward, pca_names,
                      plain_albedo, vertex_array)

BLENDSHAPES_NAME = "expression_blendshapes_3448.bin"
MAPPING_NAME = "ibug_to_sfm.txt"
CONTOURS_NAME = "sfm_model_contours.json"
SFM_LICENSE = "Surrey Face Model: free for non-commercial use only (University of Surrey)"


class CerealReader:
    """Bounds-checked reads from a cereal binary archive; every failure names the file."""

    def __init__(self, data: bytes, path):
        self.data, self.pos, self.path = data, 0, path

    def _take(self, nbytes: int, what: str) -> bytes:
        if nbytes < 0 or self.pos + nbytes > len(self.data):
            fail(self.path, f"truncated cereal archive: {what} needs {nbytes} bytes at offset "
                            f"{self.pos}, only {len(self.data) - self.pos} left")
        out = self.data[self.pos:self.pos + nbytes]
        self.pos += nbytes
        return out

    def scalar(self, fmt: str, what: str):
        dtype = np.dtype(fmt)
        return np.frombuffer(self._take(dtype.itemsize, what), dtype)[0].item()

    def size(self, item_bytes: int, what: str) -> int:
        n = self.scalar("<u8", f"{what} size")
        if n * item_bytes > len(self.data) - self.pos:
            fail(self.path, f"truncated or corrupt cereal archive: {what} claims {n} entries at "
                            f"offset {self.pos - 8}, more than the file holds")
        return n

    def flag(self, what: str) -> bool:
        b = self.scalar("<u1", what)
        if b > 1:
            fail(self.path, f"corrupt cereal archive: {what} flag is {b} at offset {self.pos - 1}")
        return bool(b)

    def string(self, what: str) -> str:
        raw = self._take(self.size(1, what), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            fail(self.path, f"corrupt cereal archive: {what} is not text")

    def matrix(self, what: str) -> np.ndarray:
        """Eigen float matrix (rows, cols)."""
        rows, cols = self.scalar("<i4", f"{what} rows"), self.scalar("<i4", f"{what} cols")
        if rows < 0 or cols < 0:
            fail(self.path, f"corrupt cereal archive: {what} has shape ({rows}, {cols})")
        raw = self._take(4 * rows * cols, what)
        return np.frombuffer(raw, "<f4").reshape(cols, rows).T.astype(np.float64)

    def array_list(self, dtype: str, width: int, what: str) -> np.ndarray:
        """vector<array<T, width>> as (n, width)."""
        item = np.dtype(dtype).itemsize * width
        n = self.size(item, what)
        return np.frombuffer(self._take(n * item, what), dtype).reshape(n, width)

    def done(self) -> None:
        if self.pos != len(self.data):
            fail(self.path, f"{len(self.data) - self.pos} unexpected bytes after the end of the archive")


def read_pca_model(r: CerealReader, what: str) -> dict:
    """One eos PcaModel: mean (3N,), orthonormal basis (3N, K), eigenvalues (K,), triangles (F, 3)."""
    mean = r.matrix(f"{what} mean")
    basis = r.matrix(f"{what} basis")
    eig = r.matrix(f"{what} eigenvalues")
    tri = r.array_list("<i4", 3, f"{what} triangles").astype(np.int64)
    if mean.size == 0:
        return {"mean": np.zeros(0), "basis": np.zeros((0, 0)), "eigenvalues": np.zeros(0), "triangles": tri}
    if mean.shape[1] != 1 or mean.shape[0] % 3:
        fail(r.path, f"{what} mean must be a 3N vector, got {mean.shape}")
    k = basis.shape[1] if basis.size else 0
    if basis.size and basis.shape[0] != mean.shape[0]:
        fail(r.path, f"{what} basis has {basis.shape[0]} rows for a mean of {mean.shape[0]}")
    eig = eig.reshape(-1)
    if eig.shape[0] != k:
        fail(r.path, f"{what} has {eig.shape[0]} eigenvalues for {k} basis vectors")
    for key, a in (("mean", mean), ("basis", basis), ("eigenvalues", eig)):
        if not np.all(np.isfinite(a)):
            fail(r.path, f"{what} {key} contains NaN or infinite values")
    if np.any(eig < 0):
        fail(r.path, f"{what} eigenvalues must not be negative")
    return {"mean": mean[:, 0], "basis": basis.reshape(mean.shape[0], k), "eigenvalues": eig, "triangles": tri}


def read_blendshapes(r: CerealReader) -> list[tuple[str, np.ndarray]]:
    """vector<Blendshape> as [(name, deformation (3N,))]."""
    count = r.size(16, "blendshape list")
    out = []
    for i in range(count):
        name = r.string(f"blendshape {i} name")
        d = r.matrix(f"blendshape {i} deformation")
        if d.ndim != 2 or d.shape[1] != 1:
            fail(r.path, f"blendshape {name!r} must be a 3N vector, got {d.shape}")
        if not np.all(np.isfinite(d)):
            fail(r.path, f"blendshape {name!r} contains NaN or infinite values")
        out.append((name, d[:, 0]))
    return out


def read_eos_model(path) -> dict:
    """Parse an eos ``MorphableModel`` cereal file into plain arrays (eos units and frame)."""
    path = Path(path)
    r = CerealReader(path.read_bytes(), path)
    version = r.scalar("<u4", "class version")
    if not 1 <= version <= 4:
        fail(path, f"not an eos MorphableModel (class version {version}; eos writes 1 to 4)")
    out = {"version": version, "shape": read_pca_model(r, "shape model"),
           "color": read_pca_model(r, "colour model"), "expression": None, "landmarks": None}
    if version >= 2 and not r.flag("expression model empty"):
        index = r.scalar("<i4", "expression model kind")
        if index == 0:
            out["expression"] = ("pca", read_pca_model(r, "expression model"))
        elif index == 1:
            out["expression"] = ("blendshapes", read_blendshapes(r))
        else:
            fail(path, f"corrupt cereal archive: expression model kind {index} (0 PCA, 1 blendshapes)")
    if version >= 3 and not r.flag("landmark definitions empty"):
        count = r.size(12, "landmark definitions")
        out["landmarks"] = {r.string("landmark name"): r.scalar("<i4", "landmark vertex") for _ in range(count)}
    out["uv"] = r.array_list("<f8", 2, "texture coordinates")
    out["uv_triangles"] = r.array_list("<i4", 3, "texture triangles").astype(np.int64) if version >= 4 \
        else np.zeros((0, 3), dtype=np.int64)
    r.done()
    if out["shape"]["mean"].size == 0:
        fail(path, "the shape model is empty")
    return out


def read_blendshapes_file(path) -> list[tuple[str, np.ndarray]]:
    path = Path(path)
    r = CerealReader(path.read_bytes(), path)
    shapes = read_blendshapes(r)
    r.done()
    if not shapes:
        fail(path, "holds no blendshapes")
    return shapes


def read_landmark_mapping(path, n: int) -> np.ndarray:
    """iBUG-68 vertex ids (68,) (-1 undefined) from eos's TOML mapping file."""
    import tomllib

    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        fail(path, f"not a readable TOML landmark mapping ({exc})")
    table = doc.get("landmark_mappings")
    if not isinstance(table, dict):
        fail(path, "no [landmark_mappings] table")
    ids = np.full(68, -1, dtype=np.int64)
    for key, value in table.items():
        if not key.strip().isdigit() or not 1 <= int(key) <= 68:
            fail(path, f"landmark id {key!r} is not an iBUG-68 number (1-68)")
        if not isinstance(value, int) or not 0 <= value < n:
            fail(path, f"landmark {key} maps to {value!r}, not a vertex index in [0, {n - 1}]")
        ids[int(key) - 1] = value
    return ids


def read_contours(path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(right, left) outline vertex ids from ``sfm_model_contours.json``."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        right, left = doc["model_contour"]["right_contour"], doc["model_contour"]["left_contour"]
    except (ValueError, KeyError, TypeError) as exc:
        fail(path, f"not an eos model contour file (needs model_contour.right_contour/left_contour; {exc})")
    return (index_array(path, "right_contour", np.asarray(right), n, one_based=False),
            index_array(path, "left_contour", np.asarray(left), n, one_based=False))


def _sibling(base: Path, explicit, name: str) -> Path | None:
    if explicit is not None:
        return Path(explicit)
    candidate = base.parent / name
    return candidate if candidate.is_file() else None


def load_sfm(path, blendshapes_file=None, landmark_mapping=None, contours_file=None) -> dict:
    """Load an eos/Surrey ``.bin`` model as a canonical dict (see module docstring for defaults)."""
    path = Path(path)
    m = read_eos_model(path)
    shape = m["shape"]
    mean = vertex_array(path, "shape mean", shape["mean"])
    n = mean.shape[0]
    tri = index_array(path, "shape triangles", shape["triangles"], n, one_based=False)
    if tri.shape[0] == 0:
        fail(path, "the shape model has no triangles")
    identity = _rescaled(shape, n)

    kind, names, exp = "pca", pca_names("exp", 0), np.zeros((n, 3, 0))
    bs_path = _sibling(path, blendshapes_file, BLENDSHAPES_NAME)
    if bs_path is not None:
        shapes = read_blendshapes_file(bs_path)
        kind, names = "blendshapes", np.asarray([s for s, _ in shapes])
        exp = np.stack([vertex_array(bs_path, f"blendshape {s!r}", d, n) for s, d in shapes], axis=2)
    elif m["expression"] is not None:
        kind, payload = m["expression"]
        if kind == "pca":
            if payload["mean"].shape[0] != 3 * n:
                fail(path, f"the expression model has {payload['mean'].shape[0] // 3} vertices, the shape {n}")
            exp = _rescaled(payload, n)
            names = pca_names("exp", exp.shape[2])
        else:
            names = np.asarray([s for s, _ in payload])
            exp = np.stack([vertex_array(path, f"blendshape {s!r}", d, n) for s, d in payload], axis=2)

    color = m["color"]
    if color["mean"].size:
        albedo_mean = vertex_array(path, "colour mean", color["mean"], n)
        albedo_basis = _rescaled(color, n)
    else:
        albedo_mean, albedo_basis = plain_albedo(n)

    map_path = _sibling(path, landmark_mapping, MAPPING_NAME)
    if map_path is not None:
        lmk_ids = read_landmark_mapping(map_path, n)
    else:
        lmk_ids = _ibug_from_definitions(path, m["landmarks"], n)

    tri, flipped = orient_outward(mean, tri)
    model = {
        "name": f"Surrey Face Model ({path.name})",
        "source_format": "sfm",
        "vertices_mean": mean,
        "triangles": tri,
        "identity_basis": identity,
        "expression_basis": exp,
        "expression_kind": kind,
        "expression_names": names,
        "albedo_mean": albedo_mean,
        "albedo_basis": albedo_basis,
        "region_labels": np.zeros(n, dtype=np.int64),
        "region_names": np.asarray(["face"]),
        "license": SFM_LICENSE,
    }
    model["landmark_faces"], model["landmark_bary"] = (
        landmark_faces_from_vertices(lmk_ids, tri) if np.any(lmk_ids >= 0) else landmarks_undefined())

    if m["uv"].shape[0]:
        uv = m["uv"].copy()
        uv[:, 1] = 1.0 - uv[:, 1]
        uv_tri = m["uv_triangles"] if m["uv_triangles"].shape[0] else tri
        if m["uv_triangles"].shape[0] and flipped:
            uv_tri = uv_tri[:, [0, 2, 1]]
        if not m["uv_triangles"].shape[0] and uv.shape[0] != n:
            fail(path, f"{uv.shape[0]} texture coordinates for {n} vertices and no texture triangles")
        model["uv_coords"] = uv
        model["uv_triangles"] = index_array(path, "texture triangles", uv_tri, uv.shape[0], one_based=False)

    contour_path = _sibling(path, contours_file, CONTOURS_NAME)
    if contour_path is not None:
        model["contour_right"], model["contour_left"] = read_contours(contour_path, n)
    return finish(model, path)


def _rescaled(pca: dict, n: int) -> np.ndarray:
    """eos's rescaled basis, orthonormal basis x sqrt(eigenvalue), as (N, 3, K)."""
    return (pca["basis"] * np.sqrt(pca["eigenvalues"])).reshape(n, 3, pca["eigenvalues"].shape[0])


def _ibug_from_definitions(path, definitions, n: int) -> np.ndarray:
    """Use a model's own landmark definitions when they are named by iBUG number ("1".."68")."""
    ids = np.full(68, -1, dtype=np.int64)
    for key, vertex in (definitions or {}).items():
        if key.strip().isdigit() and 1 <= int(key) <= 68:
            if not 0 <= vertex < n:
                fail(path, f"landmark definition {key!r} -> {vertex} is not a vertex index")
            ids[int(key) - 1] = vertex
    return ids


def is_eos_model(head: bytes) -> bool:
    """Whether the first 12 bytes look like an eos MorphableModel (version, 3N rows, 1 column)."""
    if len(head) < 12:
        return False
    version, rows, cols = np.frombuffer(head[:12], "<u4")
    return 1 <= version <= 4 and rows > 0 and rows % 3 == 0 and cols == 1


def is_blendshapes_file(head: bytes) -> bool:
    """Whether the first bytes look like a cereal vector<Blendshape> (count, name length, name)."""
    if len(head) < 16:
        return False
    count, name_len = np.frombuffer(head[:16], "<u8")
    return 0 < count < 10000 and 0 < name_len < 256

