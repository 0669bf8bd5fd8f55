"""Face boxes and iBUG-68 landmarks from a photo, offline.

Detectors (imported lazily; nothing is downloaded at run time):
- ``dlib`` (default): dlib's HOG frontal-face detector and the 68-point shape predictor shipped in the
  ``face-recognition-models`` package (``pip install -e .[detect]``).
- ``mediapipe``: MediaPipe Face Mesh in static-image mode, its 468 points mapped to iBUG-68 with
  ``assets/mediapipe_ibug68.json`` (``pip install -e .[mediapipe]``).

Size rule: detection runs on a copy whose longer side is at most ``DETECT_MAX_SIDE`` pixels (dlib
upsamples that copy once more when its longer side is below ``DLIB_UPSAMPLE_BELOW``); the 68 points are
then predicted on the full-resolution image (dlib) or mapped back to it (MediaPipe).
"""
from __future__ import annotations

import importlib
import importlib.util
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import MissingDependencyError, NoFaceError
from .images import resize_longest

DETECTORS = ("dlib", "mediapipe")
DETECT_MAX_SIDE = 1280
DLIB_UPSAMPLE_BELOW = 800
# dlib HOG scores: real faces in group photos score down to ~0.22, the mission patch in the astronaut
# portrait 0.12. Faces below this are dropped unless they are the best (e.g. a lone blurry face).
DLIB_MIN_SCORE = 0.2
MEDIAPIPE_MAP = Path(__file__).resolve().parents[2] / "assets" / "mediapipe_ibug68.json"


@dataclass
class Detection:
    """One face: box (x0, y0, x1, y1) and landmarks (68, 2), 0-based pixels of the full image."""

    box: np.ndarray
    landmarks: np.ndarray
    score: float

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


def _require(detector: str, module: str, package: str, extra: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(f"the {detector} detector needs {package}, which is not installed: "
                                     f"run `pip install -e {extra}` (or pass --landmarks)") from exc


def _dlib_predictor_path() -> str:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("dlib's 68-point model comes from face-recognition-models, which is not "
                                     "installed: run `pip install -e .[detect]` (or pass --landmarks)")
    # located directly: the package's own helper needs pkg_resources, absent from recent setuptools
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise MissingDependencyError(f"{path} is missing; reinstall face-recognition-models "
                                     "(`pip install -e .[detect]`)")
    return str(path)


@lru_cache(maxsize=1)
def _dlib_models():
    dlib = _require("dlib", "dlib", "dlib (the dlib-bin package)", ".[detect]")
    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(_dlib_predictor_path())


def _detect_dlib(image: np.ndarray) -> list[Detection]:
    dlib, detector, predictor = _dlib_models()
    small, (sx, sy) = resize_longest(image, DETECT_MAX_SIDE)
    upsample = 1 if max(small.shape[:2]) < DLIB_UPSAMPLE_BELOW else 0
    rects, scores, _ = detector.run(np.ascontiguousarray(small), upsample, 0.0)
    out = []
    for rect, score in zip(rects, scores):
        # back to full-resolution pixels (pixel centres aligned)
        x0, y0 = (rect.left() + 0.5) / sx - 0.5, (rect.top() + 0.5) / sy - 0.5
        x1, y1 = (rect.right() + 0.5) / sx - 0.5, (rect.bottom() + 0.5) / sy - 0.5
        full = dlib.rectangle(int(round(x0)), int(round(y0)), int(round(x1)), int(round(y1)))
        shape = predictor(image, full)
        pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float64)
        out.append(Detection(np.array([x0, y0, x1, y1]), pts, float(score)))
    return out


@lru_cache(maxsize=1)
def mediapipe_mapping() -> tuple[np.ndarray, np.ndarray]:
    """The MediaPipe -> iBUG-68 map: vertex ids (68, 3) and weights (68, 3) over MediaPipe's 468 points."""
    if not MEDIAPIPE_MAP.is_file():
        raise MissingDependencyError(f"{MEDIAPIPE_MAP} is missing; reinstall morph3d")
    data = json.loads(MEDIAPIPE_MAP.read_text())
    entries = data["ibug68"] if isinstance(data, dict) else data
    ids, weights = np.zeros((68, 3), np.int64), np.zeros((68, 3), np.float64)
    for i, e in enumerate(entries):
        if "vertex" in e:
            ids[i] = e["vertex"]
            weights[i] = (1.0, 0.0, 0.0)
        else:
            ids[i], weights[i] = e["triangle"], e["barycentric"]
    return ids, weights


def _detect_mediapipe(image: np.ndarray, max_faces: int) -> list[Detection]:
    mp = _require("mediapipe", "mediapipe", "mediapipe", ".[mediapipe]")
    ids, weights = mediapipe_mapping()
    small, (sx, sy) = resize_longest(image, DETECT_MAX_SIDE)
    h, w = small.shape[:2]
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=max_faces,
                                         refine_landmarks=False, min_detection_confidence=0.5) as mesh:
        result = mesh.process(np.ascontiguousarray(small))
    out = []
    for face in result.multi_face_landmarks or []:
        # MediaPipe's normalised coordinates put 0 and 1 on the image edges
        pts = np.array([[p.x * w - 0.5, p.y * h - 0.5] for p in face.landmark], dtype=np.float64)
        ibug = (pts[ids] * weights[:, :, None]).sum(axis=1)
        ibug = np.stack([(ibug[:, 0] + 0.5) / sx - 0.5, (ibug[:, 1] + 0.5) / sy - 0.5], axis=1)
        full = np.stack([(pts[:, 0] + 0.5) / sx - 0.5, (pts[:, 1] + 0.5) / sy - 0.5], axis=1)
        box = np.concatenate([full.min(axis=0), full.max(axis=0)])
        out.append(Detection(box, ibug, 1.0))
    return out


def check_detector(detector: str) -> None:
    """Load ``detector``'s package and model now; raises :class:`MissingDependencyError` if missing."""
    if detector == "dlib":
        _dlib_models()
    elif detector == "mediapipe":
        _require("mediapipe", "mediapipe", "mediapipe", ".[mediapipe]")
        mediapipe_mapping()
    else:
        raise ValueError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}")


def detect_faces(image: np.ndarray, detector: str = "dlib", all_faces: bool = False,
                 source: str = "image") -> list[Detection]:
    """Faces in ``image`` (H, W, 3) uint8 RGB, largest first; only the largest unless ``all_faces``.

    Raises :class:`NoFaceError` (naming ``source``) when there is none, and
    :class:`MissingDependencyError` when the detector's package is not installed.
    """
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}")
    faces = _detect_dlib(image) if detector == "dlib" else _detect_mediapipe(image, 10 if all_faces else 1)
    if not faces:
        raise NoFaceError(f"{source}: no face found by the {detector} detector; pass landmarks with "
                          "--landmarks, or try --detector " + ("mediapipe" if detector == "dlib" else "dlib"))
    faces = confident_faces(faces, DLIB_MIN_SCORE)
    faces.sort(key=lambda d: -d.area)
    return faces if all_faces else faces[:1]


def confident_faces(faces: list[Detection], min_score: float) -> list[Detection]:
    """The detections scoring at least ``min_score``, and always the best one."""
    best = max(faces, key=lambda d: d.score)
    return [d for d in faces if d is best or d.score >= min_score]
