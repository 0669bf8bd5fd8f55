"""Reading and writing 68-point iBUG landmarks.

Formats (all give 0-based pixel coordinates, x right, y down, as in ``docs/conventions.md``, of the
upright image, i.e. after its EXIF orientation is applied as ``images.load_image`` does):
- ``.pts``: the iBUG text format (``version: 1``, ``n_points: 68``, ``{``, x y lines, ``}``), 1-based
  (1 is subtracted on read and added on write).
- ``.npy``: a (68, 2) numeric array, 0-based.
- ``.json``: an object ``{"landmarks68": [[x, y], ...]}`` with 68 pairs, 0-based (the ``<stem>.json``
  written by ``morph3d fit`` qualifies).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..io import atomic_write
from .errors import LandmarkFileError

NUM_LANDMARKS = 68
LANDMARK_SUFFIXES = (".pts", ".npy", ".json")


def _check(points, path: Path) -> np.ndarray:
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise LandmarkFileError(f"{path}: landmarks must be numbers ({exc})") from exc
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise LandmarkFileError(f"{path}: landmarks must be a list of (x, y) pairs, got shape {arr.shape}")
    if arr.shape[0] != NUM_LANDMARKS:
        raise LandmarkFileError(f"{path}: {arr.shape[0]} landmarks; the iBUG-68 layout needs exactly "
                                f"{NUM_LANDMARKS}")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise LandmarkFileError(f"{path}: landmarks {np.flatnonzero(bad).tolist()} are NaN or infinite")
    if np.ptp(arr[:, 0]) <= 0 or np.ptp(arr[:, 1]) <= 0:
        raise LandmarkFileError(f"{path}: the landmarks are degenerate (all on one line or point)")
    return arr


def _read_pts(path: Path) -> np.ndarray:
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise LandmarkFileError(f"{path}: not a text .pts file") from exc
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    try:
        start, end = lines.index("{"), lines.index("}")
    except ValueError:
        raise LandmarkFileError(f"{path}: not an iBUG .pts file (no '{{' ... '}}' block)") from None
    declared = None
    for ln in lines[:start]:
        key, _, value = ln.partition(":")
        if key.strip().lower() == "n_points":
            try:
                declared = int(value)
            except ValueError:
                raise LandmarkFileError(f"{path}: bad n_points line {ln!r}") from None
    rows = []
    for ln in lines[start + 1:end]:
        parts = ln.split()
        if len(parts) != 2:
            raise LandmarkFileError(f"{path}: expected 'x y' per line, got {ln!r}")
        try:
            rows.append([float(parts[0]), float(parts[1])])
        except ValueError:
            raise LandmarkFileError(f"{path}: non-numeric landmark line {ln!r}") from None
    if declared is not None and declared != len(rows):
        raise LandmarkFileError(f"{path}: header says n_points: {declared} but the file lists {len(rows)}")
    return _check(rows, path) - 1.0


def _read_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise LandmarkFileError(f"{path}: not a readable .npy array ({exc})") from exc
    if arr.dtype.kind not in "iuf":
        raise LandmarkFileError(f"{path}: landmarks must be numbers, got dtype {arr.dtype}")
    return _check(arr, path)


def _read_json(path: Path) -> np.ndarray:
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise LandmarkFileError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or "landmarks68" not in data:
        raise LandmarkFileError(f"{path}: expected an object with a 'landmarks68' list of [x, y] pairs")
    pts = data["landmarks68"]
    if isinstance(pts, list) and any(p is None or (isinstance(p, list) and None in p) for p in pts):
        raise LandmarkFileError(f"{path}: 'landmarks68' has null entries; every landmark needs a position")
    return _check(pts, path)


def read_landmarks(path: str | Path) -> np.ndarray:
    """Read a landmark file -> (68, 2) float64, 0-based pixels. Raises :class:`LandmarkFileError`."""
    path = Path(path)
    if not path.is_file():
        raise LandmarkFileError(f"{path}: no such landmark file")
    readers = {".pts": _read_pts, ".npy": _read_npy, ".json": _read_json}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise LandmarkFileError(f"{path}: unknown landmark format; use .pts (1-based iBUG), .npy (68 x 2) "
                                "or .json ({\"landmarks68\": [[x, y], ...]})")
    return reader(path)


def write_pts(path: str | Path, landmarks: np.ndarray) -> Path:
    """Write (68, 2) 0-based landmarks as a 1-based iBUG ``.pts`` file, atomically."""
    path = Path(path)
    pts = np.asarray(landmarks, dtype=np.float64) + 1.0
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in pts)
    return atomic_write(path, f"version: 1\nn_points: {len(pts)}\n{{\n{body}\n}}\n")


def find_landmark_file(directory: str | Path, stem: str) -> Path:
    """``directory/<stem>.pts|.npy|.json`` (the first that exists). Raises :class:`LandmarkFileError`."""
    directory = Path(directory)
    found = [directory / (stem + s) for s in LANDMARK_SUFFIXES if (directory / (stem + s)).is_file()]
    if not found:
        raise LandmarkFileError(f"no landmark file {stem}.pts, {stem}.npy or {stem}.json in {directory}")
    if len(found) > 1:
        raise LandmarkFileError(f"several landmark files for {stem} in {directory} "
                                f"({', '.join(p.name for p in found)}); keep one")
    return found[0]


def check_in_image(landmarks: np.ndarray, image_size: tuple[int, int], source: str) -> None:
    """Refuse landmarks of which more than half lie more than half an image size outside the image
    (most likely the landmark file of another image). image_size: (height, width)."""
    h, w = image_size
    x, y = landmarks[:, 0], landmarks[:, 1]
    inside = (x >= -0.5 * w) & (x <= 1.5 * w) & (y >= -0.5 * h) & (y <= 1.5 * h)
    if inside.mean() < 0.5:
        raise LandmarkFileError(f"{source}: most landmarks lie far outside the {w} x {h} image; "
                                "is this the landmark file of another image?")
