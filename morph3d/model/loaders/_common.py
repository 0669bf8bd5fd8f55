"""Helpers shared by the model loaders: index checks, winding, defaults, .mat / .npz reading."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from morph3d.model.canonical import NUM_LANDMARKS, ModelFormatError, validate

# Plain mid skin tone, linear RGB reflectance, for models that have no albedo (SFM, FLAME).
MID_SKIN_ALBEDO = (0.63, 0.45, 0.36)


def fail(path, problem: str):
    """Raise :class:`ModelFormatError` naming ``path`` and ``problem``."""
    raise ModelFormatError(f"{path}: {problem}")


def finite(path, key: str, a: np.ndarray) -> np.ndarray:
    """Return ``a`` after checking it holds no NaN or infinite value."""
    if a.size and not np.all(np.isfinite(a)):
        fail(path, f"'{key}' contains NaN or infinite values")
    return a


def index_array(path, key: str, a, count: int, one_based: bool, allow_undefined: bool = False) -> np.ndarray:
    """Integer indices (any shape) converted to 0-based int64 and checked to lie in ``[0, count)``.

    Float arrays are accepted when every entry is a whole number (MATLAB stores indices as doubles).
    With ``allow_undefined``, entries that are -1 after conversion stay -1.
    """
    a = np.asarray(a)
    if a.dtype.kind == "f":
        finite(path, key, a)
        if np.any(a != np.round(a)):
            fail(path, f"'{key}' must hold whole-number indices")
    elif a.dtype.kind not in "iu":
        fail(path, f"'{key}' must hold integer indices, got {a.dtype}")
    out = a.astype(np.int64) - (1 if one_based else 0)
    bad = (out < 0) | (out >= count)
    if allow_undefined:
        bad &= out != -1
    if np.any(bad):
        base = 1 if one_based else 0
        fail(path, f"'{key}' indices must lie in [{base}, {count - 1 + base}], "
                   f"found [{a.min()}, {a.max()}]")
    return out


def vertex_array(path, key: str, a, n: int | None = None) -> np.ndarray:
    """A flat ``x1 y1 z1 x2 ...`` vector (any of (3N,), (3N, 1), (1, 3N)) as (N, 3) float64."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim > 2 or (a.ndim == 2 and min(a.shape) != 1) or a.size % 3 or a.size == 0:
        fail(path, f"'{key}' must be a vector of 3N values, got shape {a.shape}")
    a = a.reshape(-1, 3)
    if n is not None and a.shape[0] != n:
        fail(path, f"'{key}' has {a.shape[0]} vertices, expected {n}")
    return finite(path, key, a)


def basis_array(path, key: str, a, n: int, k: int | None = None) -> np.ndarray:
    """A (3N, K) basis (rows ``x1 y1 z1 x2 ...``) as (N, 3, K) float32 (bases are large)."""
    a = np.asarray(a).astype(np.float32, copy=False)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] != 3 * n or (k is not None and a.shape[1] != k):
        want = f"({3 * n}, {k if k is not None else 'K'})"
        fail(path, f"'{key}' must be {want}, got {a.shape}")
    return finite(path, key, a).reshape(n, 3, a.shape[1])


def std_vector(path, key: str, a, k: int) -> np.ndarray:
    """K non-negative standard deviations (any vector shape) as (K,) float64."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    if a.shape[0] != k:
        fail(path, f"'{key}' must hold {k} values, got {a.shape[0]}")
    finite(path, key, a)
    if np.any(a < 0):
        fail(path, f"'{key}' must not be negative")
    return a


def truncate(path, what: str, k_avail: int, k_want: int | None) -> int:
    """Number of components to keep: ``k_want`` (checked) or all of them."""
    if k_want is None:
        return k_avail
    if not 0 <= int(k_want) <= k_avail:
        fail(path, f"asked for {k_want} {what} components, the file has {k_avail}")
    return int(k_want)


def orient_outward(vertices: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, bool]:
    """Make triangles counter-clockwise seen from outside; return (triangles, flipped).

    The face looks along +z (model frame), so the triangles of the front-most tenth of the depth
    range (nose, lips, brows) must have area-weighted normals with a positive z sum.
    """
    v = vertices[triangles]
    normals = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    cz = v[:, :, 2].mean(axis=1)
    lo, hi = cz.min(), cz.max()
    front = cz >= hi - 0.1 * (hi - lo)
    if normals[front, 2].sum() >= 0:
        return triangles, False
    return triangles[:, [0, 2, 1]].copy(), True


def landmarks_undefined() -> tuple[np.ndarray, np.ndarray]:
    """Landmark faces (68,) all -1 and zero barycentrics (68, 3)."""
    return np.full(NUM_LANDMARKS, -1, dtype=np.int64), np.zeros((NUM_LANDMARKS, 3), dtype=np.float32)


def plain_albedo(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean albedo (N, 3) at :data:`MID_SKIN_ALBEDO` and an empty basis (N, 3, 0)."""
    return (np.tile(np.asarray(MID_SKIN_ALBEDO, dtype=np.float32), (n, 1)),
            np.zeros((n, 3, 0), dtype=np.float32))


def rms_mm(basis: np.ndarray) -> np.ndarray:
    """RMS over vertices of each mode's displacement length. basis: (N, 3, K) mm -> (K,) mm."""
    return np.sqrt((basis.astype(np.float64) ** 2).sum(axis=1).mean(axis=0)).astype(np.float32)


def pca_names(prefix: str, k: int) -> np.ndarray:
    return np.asarray([f"{prefix}_{i:03d}" for i in range(k)])


def finish(model: dict, path) -> dict:
    """Validate the assembled canonical dict, naming ``path`` in any error."""
    if "identity_std_mm" not in model:
        model["identity_std_mm"] = rms_mm(model["identity_basis"])
    return validate(model, str(path))


def read_npz(path: Path) -> dict:
    """Arrays of a plain (pickle-free) ``.npz`` file by name."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # zip and format errors of every kind
        fail(path, f"not a readable .npz file ({type(exc).__name__}: {exc})")


def read_mat(path: Path) -> dict:
    """Variables of a MATLAB v5 .mat file (``__header__`` and friends removed)."""
    import scipy.io

    with open(path, "rb") as f:
        head = f.read(128)
    if head[:8] == b"\x89HDF\r\n\x1a\n" or b"MATLAB 7.3" in head:
        fail(path, "MATLAB v7.3 (HDF5) .mat files are not supported; re-save it in MATLAB with "
                   "save(..., '-v7') or convert with scipy")
    try:
        raw = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises a zoo of types on corrupt input
        fail(path, f"not a readable MATLAB .mat file ({type(exc).__name__}: {exc})")
    return {k: v for k, v in raw.items() if not k.startswith("__")}


def mat_names(path: Path) -> list[str]:
    """Variable names in a .mat file without loading the data ([] when unreadable)."""
    import scipy.io

    try:
        return [name for name, _, _ in scipy.io.whosmat(str(path))]
    except Exception:
        return []


def require(path, data: dict, keys, what: str) -> None:
    missing = [k for k in keys if k not in data]
    if missing:
        fail(path, f"missing {missing} for a {what} file (found {sorted(data)})")


def regions_from_masks(n: int, masks, rest: str) -> tuple[np.ndarray, np.ndarray]:
    """Exclusive region labels from possibly overlapping masks; the first mask to claim a vertex wins.

    masks: sequence of (name, (N,) bool); several masks may share a name. Vertices no mask claims
    get ``rest``. Returns labels (N,) int64 and the names actually used (R,).
    """
    names: list[str] = []
    labels = np.full(n, -1, dtype=np.int64)
    for name, mask in masks:
        take = np.asarray(mask, dtype=bool) & (labels < 0)
        if not take.any():
            continue
        if name not in names:
            names.append(name)
        labels[take] = names.index(name)
    if np.any(labels < 0):
        if rest not in names:
            names.append(rest)
        labels[labels < 0] = names.index(rest)
    return labels, np.asarray(names)
