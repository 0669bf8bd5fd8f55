"""Landmark error measures.

NME (normalised mean error): the mean over landmarks of the point-to-point distance between
predicted and ground-truth landmarks, divided by
- ``interocular``: the distance between the outer eye corners (iBUG 36 and 45) of the ground truth, or
- ``box``: the square root of the area of the ground truth's bounding box.
Landmarks a prediction leaves undefined (NaN) are left out of the mean.
"""
from __future__ import annotations

import numpy as np

from ..model.face_definitions import IBUG68

NORMALISERS = ("interocular", "box")


def normaliser(gt: np.ndarray, kind: str) -> float:
    """gt: (68, 2) px -> the normalising length in px."""
    gt = np.asarray(gt, dtype=np.float64)
    if kind == "interocular":
        right, left = IBUG68.outer_eye_corners
        return float(np.linalg.norm(gt[right] - gt[left]))
    if kind == "box":
        w, h = np.ptp(gt[:, 0]), np.ptp(gt[:, 1])
        return float(np.sqrt(w * h))
    raise ValueError(f"unknown normaliser {kind!r}; choose one of {NORMALISERS}")


def nme(pred: np.ndarray, gt: np.ndarray, kind: str = "interocular", indices=None) -> float:
    """Normalised mean error of (68, 2) predictions against (68, 2) ground truth (a fraction, not %)."""
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    idx = np.arange(len(gt)) if indices is None else np.asarray(indices)
    d = np.linalg.norm(pred[idx] - gt[idx], axis=1)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan")
    return float(d.mean() / normaliser(gt, kind))
