"""Face boxes and iBUG-68 landmarks from a photo, offline.

Detectors (imported lazily; nothing is downloaded at run time):
- ``auto`` (default): a cascade that finds turned and small faces too. (1) dlib's HOG frontal-face
  detector with dlib's 68-point shape predictor, the most precise landmarks on faces up to about 60
  degrees of yaw; (2) MediaPipe Face Mesh on the whole image, for faces HOG missed (profiles): their 68
  points are MediaPipe's 468 mapped to iBUG-68; (3) with ``all_faces``, or when nothing was found yet,
  MediaPipe's full-range face detector on overlapping ``TILE`` px tiles (small faces, down to about 20 px),
  each box confirmed by Face Mesh on a crop around it, which gives its landmarks; (4) only when no stage
  found a face, dlib's CNN face detector (``mmod_human_face_detector.dat``; seconds per image on a CPU),
  landmarks again from Face Mesh on a crop (dlib's predictor is unreliable off its own HOG boxes on
  turned faces). A face found by a later stage is kept only if its box does not overlap one found
  before. Needs both extras; without ``mediapipe`` the cascade is HOG then CNN with dlib's predictor.
- ``dlib``: stage (1) alone: dlib's HOG detector and the 68-point shape predictor shipped in the
  ``face-recognition-models`` package (``pip install -e .[detect]``).
- ``mediapipe``: MediaPipe Face Mesh in static-image mode, its 468 points mapped to iBUG-68 with
  ``assets/mediapipe_ibug68.json`` (``pip install -e .[mediapipe]``).

Size rule: detection runs on a copy whose longer side is at most ``DETECT_MAX_SIDE`` pixels (dlib
upsamples that copy once more when its longer side is below ``DLIB_UPSAMPLE_BELOW``; the CNN sees a copy
of at most ``CNN_MAX_SIDE``); the 68 points are then predicted on the full-resolution image (dlib) or
mapped back to it (MediaPipe).
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from morph3d import assets

from .errors import MissingDependencyError, NoFaceError
from .images import resize_longest

DETECTORS = ("auto", "dlib", "mediapipe")
DETECT_MAX_SIDE = 1280
DLIB_UPSAMPLE_BELOW = 800
# dlib HOG scores (run(..., adjust_threshold=0)): real faces in group photos score down to ~0.22, the
# mission patch in the astronaut portrait 0.12. HOG boxes below this are dropped unless they are the
# best one (e.g. a lone blurry face, 0.07 on ../shared's einstein.jpg).
DLIB_MIN_SCORE = 0.2
CNN_MAX_SIDE = 640
MESH_CROP_SIDE = 256        # MediaPipe runs on a crop of this many pixels around a box
MESH_CROP_MARGIN = 0.5      # crop = box side x (1 + 2 x margin)
TILE, TILE_STRIDE = 256, 192  # the small-face stage's tiles, px of the detection copy
MEDIAPIPE_MAP = assets.path("mediapipe_ibug68.json")


@dataclass
class Detection:
    """One face: box (x0, y0, x1, y1) and landmarks (68, 2), 0-based pixels of the full image.

    source: which stage found it, ``box detector/landmark predictor`` (``hog/dlib68``,
    ``mediapipe``, ``tiles/mediapipe``, ``cnn/mediapipe``, ``cnn/dlib68``). mesh: MediaPipe's 468 points (468, 2), px,
    when the landmarks came from MediaPipe, else None.
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float
    source: str = "hog/dlib68"
    mesh: np.ndarray | None = None

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


def _require(detector: str, module: str, package: str, extra: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(f"the {detector} detector needs {package}, which is not installed: "
                                     f"run `pip install -e {extra}` (or pass --landmarks)") from exc


def _face_models_file(name: str, what: str) -> str:
    """A model file shipped in face-recognition-models (``what`` names it in errors)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(f"{what} comes from face-recognition-models, which is not "
                                     "installed: run `pip install -e .[detect]` (or pass --landmarks)")
    # located directly: the package's own helper needs pkg_resources, absent from recent setuptools
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise MissingDependencyError(f"{path} is missing; reinstall face-recognition-models "
                                     "(`pip install -e .[detect]`)")
    return str(path)


def _dlib_predictor_path() -> str:
    return _face_models_file("shape_predictor_68_face_landmarks.dat", "dlib's 68-point model")


@lru_cache(maxsize=1)
def _dlib_models():
    dlib = _require("dlib", "dlib", "dlib (the dlib-bin package)", ".[detect]")
    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(_dlib_predictor_path())


@lru_cache(maxsize=1)
def _dlib_cnn():
    dlib = _dlib_models()[0]
    return dlib.cnn_face_detection_model_v1(_face_models_file("mmod_human_face_detector.dat",
                                                              "dlib's CNN face detector"))


def _to_full(x, y, sx: float, sy: float):
    """Pixel coordinates of a resized copy -> the full image (pixel centres aligned)."""
    return (np.asarray(x) + 0.5) / sx - 0.5, (np.asarray(y) + 0.5) / sy - 0.5


def _dlib_landmarks(image: np.ndarray, box) -> np.ndarray:
    """dlib's 68 points (68, 2) px for a box (x0, y0, x1, y1) of the full image."""
    dlib, _, predictor = _dlib_models()
    rect = dlib.rectangle(*(int(round(v)) for v in box))
    shape = predictor(image, rect)
    return np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float64)


def _detect_dlib(image: np.ndarray) -> list[Detection]:
    _, detector, _ = _dlib_models()
    small, (sx, sy) = resize_longest(image, DETECT_MAX_SIDE)
    upsample = 1 if max(small.shape[:2]) < DLIB_UPSAMPLE_BELOW else 0
    rects, scores, _ = detector.run(np.ascontiguousarray(small), upsample, 0.0)
    out = []
    for rect, score in confident_boxes(list(rects), list(scores), DLIB_MIN_SCORE):
        x0, y0 = _to_full(rect.left(), rect.top(), sx, sy)
        x1, y1 = _to_full(rect.right(), rect.bottom(), sx, sy)
        box = np.array([x0, y0, x1, y1], dtype=np.float64)
        out.append(Detection(box, _dlib_landmarks(image, box), float(score)))
    return out


def confident_boxes(boxes: list, scores: list[float], min_score: float) -> list[tuple[object, float]]:
    """(box, score) pairs scoring at least ``min_score``, and always the best one."""
    best = max(scores, default=None)
    return [(b, float(s)) for b, s in zip(boxes, scores) if s >= min_score or s == best]


def _detect_cnn(image: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """dlib's CNN (MMOD) face boxes (x0, y0, x1, y1) px of the full image, with confidences."""
    small, (sx, sy) = resize_longest(image, CNN_MAX_SIDE)
    out = []
    for d in _dlib_cnn()(np.ascontiguousarray(small), 0):
        r = d.rect
        x0, y0 = _to_full(r.left(), r.top(), sx, sy)
        x1, y1 = _to_full(r.right(), r.bottom(), sx, sy)
        out.append((np.array([x0, y0, x1, y1], dtype=np.float64), float(d.confidence)))
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


def mesh_to_ibug68(mesh: np.ndarray) -> np.ndarray:
    """MediaPipe's 468 points (468, 2) -> iBUG-68 points (68, 2), with ``mediapipe_mapping``."""
    ids, weights = mediapipe_mapping()
    return (mesh[ids] * weights[:, :, None]).sum(axis=1)


@contextmanager
def _native_logs_silenced():
    """Send file descriptor 2 to /dev/null for the block: MediaPipe's C++ (absl, TFLite) logs notes there
    that users cannot act on. Its real failures still raise Python exceptions."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _mediapipe_meshes(image: np.ndarray, max_faces: int) -> list[np.ndarray]:
    """MediaPipe Face Mesh on ``image`` (H, W, 3) uint8 -> the 468 points (468, 2) px of each face."""
    mp = _require("mediapipe", "mediapipe", "mediapipe", ".[mediapipe]")
    h, w = image.shape[:2]
    with _native_logs_silenced(), mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=max_faces, refine_landmarks=False,
            min_detection_confidence=0.5) as mesh:
        result = mesh.process(np.ascontiguousarray(image))
    # MediaPipe's normalised coordinates put 0 and 1 on the image edges
    return [np.array([[p.x * w - 0.5, p.y * h - 0.5] for p in face.landmark], dtype=np.float64)
            for face in result.multi_face_landmarks or []]


def _mesh_detection(mesh: np.ndarray, score: float = 1.0, source: str = "mediapipe") -> Detection:
    box = np.concatenate([mesh.min(axis=0), mesh.max(axis=0)])
    return Detection(box, mesh_to_ibug68(mesh), score, source, mesh)


def _detect_mediapipe(image: np.ndarray, max_faces: int) -> list[Detection]:
    _require("mediapipe", "mediapipe", "mediapipe", ".[mediapipe]")
    mediapipe_mapping()
    small, (sx, sy) = resize_longest(image, DETECT_MAX_SIDE)
    out = []
    for pts in _mediapipe_meshes(small, max_faces):
        out.append(_mesh_detection(np.stack(_to_full(pts[:, 0], pts[:, 1], sx, sy), axis=1)))
    return out


def _detect_tiles(image: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's full-range face detector on overlapping tiles -> boxes (x0, y0, x1, y1) px, scores.

    The detector sees a 192 px input, so on a whole photo it misses small faces; on ``TILE`` px tiles a
    20 px face is large enough. Boxes found twice (tile overlaps) are kept once, the higher score.
    """
    mp = _require("mediapipe", "mediapipe", "mediapipe", ".[mediapipe]")
    small, (sx, sy) = resize_longest(image, DETECT_MAX_SIDE)
    h, w = small.shape[:2]
    found = []
    with _native_logs_silenced(), mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=0.5) as det:
        for top in range(0, max(h - TILE, 0) + TILE_STRIDE, TILE_STRIDE):
            for left in range(0, max(w - TILE, 0) + TILE_STRIDE, TILE_STRIDE):
                tile = np.ascontiguousarray(small[top:top + TILE, left:left + TILE])
                th, tw = tile.shape[:2]
                for d in det.process(tile).detections or []:
                    b = d.location_data.relative_bounding_box
                    x0, y0 = _to_full(b.xmin * tw + left - 0.5, b.ymin * th + top - 0.5, sx, sy)
                    x1, y1 = _to_full((b.xmin + b.width) * tw + left - 0.5, (b.ymin + b.height) * th + top - 0.5,
                                      sx, sy)
                    found.append((np.array([x0, y0, x1, y1], dtype=np.float64), float(d.score[0])))
    kept: list[Detection] = []
    for box, score in sorted(found, key=lambda f: -f[1]):
        if not _overlaps(box, kept):
            kept.append(Detection(box, np.zeros((68, 2)), score))
    return [(d.box, d.score) for d in kept]


def mediapipe_in_box(image: np.ndarray, box) -> np.ndarray | None:
    """MediaPipe's 468 points (468, 2) px of the face in ``box`` (x0, y0, x1, y1), or None if not found.

    Face Mesh runs on a square crop of ``MESH_CROP_SIDE`` px centred on the box (its side the box's
    longer side x (1 + 2 ``MESH_CROP_MARGIN``), padded with black beyond the image), which finds small
    and turned faces its whole-image detector misses. Of several faces, the one nearest the box centre.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0, 1.0) * (1 + 2 * MESH_CROP_MARGIN)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    n = max(int(round(side)), 1)
    h, w = image.shape[:2]
    crop = np.zeros((n, n, 3), np.uint8)
    ys, xs = slice(max(top, 0), min(top + n, h)), slice(max(left, 0), min(left + n, w))
    if ys.start >= ys.stop or xs.start >= xs.stop:
        return None
    crop[ys.start - top:ys.stop - top, xs.start - left:xs.stop - left] = image[ys, xs]
    crop = np.asarray(Image.fromarray(crop).resize((MESH_CROP_SIDE, MESH_CROP_SIDE), Image.BILINEAR))
    meshes = _mediapipe_meshes(crop, 2)
    if not meshes:
        return None
    k = n / MESH_CROP_SIDE
    full = [np.stack([left + (m[:, 0] + 0.5) * k - 0.5, top + (m[:, 1] + 0.5) * k - 0.5], axis=1) for m in meshes]
    return min(full, key=lambda m: float(np.hypot(*(m.mean(axis=0) - (cx, cy)))))


def _overlaps(box: np.ndarray, others: list[Detection]) -> bool:
    """True when ``box`` and one of ``others`` hold each other's centre (the same face, boxed differently)."""
    def inside(p, b):
        return b[0] <= p[0] <= b[2] and b[1] <= p[1] <= b[3]

    centre = (box[:2] + box[2:]) / 2
    return any(inside(centre, d.box) or inside((d.box[:2] + d.box[2:]) / 2, box) for d in others)


def _mediapipe_available() -> bool:
    try:
        _require("mediapipe", "mediapipe", "mediapipe", ".[mediapipe]")
        mediapipe_mapping()
    except MissingDependencyError:
        return False
    return True


def _detect_auto(image: np.ndarray, all_faces: bool) -> list[Detection]:
    """The cascade of the module docstring."""
    faces = _detect_dlib(image)
    with_mesh = _mediapipe_available()
    if with_mesh:
        faces += [d for d in _detect_mediapipe(image, 10 if all_faces else 2) if not _overlaps(d.box, faces)]
        if all_faces or not faces:
            for box, score in _detect_tiles(image):
                mesh = None if _overlaps(box, faces) else mediapipe_in_box(image, box)
                if mesh is not None:
                    faces.append(_mesh_detection(mesh, score, "tiles/mediapipe"))
    if faces:
        return faces
    for box, score in _detect_cnn(image):
        if _overlaps(box, faces):
            continue
        mesh = mediapipe_in_box(image, box) if with_mesh else None
        if mesh is not None:
            faces.append(_mesh_detection(mesh, score, "cnn/mediapipe"))
        else:
            faces.append(Detection(box, _dlib_landmarks(image, box), score, "cnn/dlib68"))
    return faces


def check_detector(detector: str) -> None:
    """Load ``detector``'s package and model now; raises :class:`MissingDependencyError` if missing."""
    if detector in ("auto", "dlib"):
        _dlib_models()
        if detector == "auto":
            _dlib_cnn()
    elif detector == "mediapipe":
        _require("mediapipe", "mediapipe", "mediapipe", ".[mediapipe]")
        mediapipe_mapping()
    else:
        raise ValueError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}")


def detect_faces(image: np.ndarray, detector: str = "auto", all_faces: bool = False,
                 source: str = "image") -> list[Detection]:
    """Faces in ``image`` (H, W, 3) uint8 RGB, largest first; only the largest unless ``all_faces``.

    Raises :class:`NoFaceError` (naming ``source``) when there is none, and
    :class:`MissingDependencyError` when the detector's package is not installed.
    """
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}")
    if detector == "auto":
        faces = _detect_auto(image, all_faces)
    elif detector == "dlib":
        faces = _detect_dlib(image)
    else:
        faces = _detect_mediapipe(image, 10 if all_faces else 1)
    if not faces:
        hint = {"auto": "pass landmarks with --landmarks",
                "dlib": "pass landmarks with --landmarks, or try --detector auto (finds turned faces too)",
                "mediapipe": "pass landmarks with --landmarks, or try --detector auto"}[detector]
        raise NoFaceError(f"{source}: no face found by the {detector} detector; {hint}")
    faces.sort(key=lambda d: -d.area)
    return faces if all_faces else faces[:1]
