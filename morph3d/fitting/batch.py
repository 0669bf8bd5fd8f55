"""Fitting a folder of photos: per image, landmarks (a file or a detector) -> landmark fit ->
optional photometric refinement -> ``<stem>.json``, ``<stem>.obj`` and ``<stem>_overlay.png``.

Outputs of an image, written to temporary names and renamed, the JSON last:
- ``<stem>.obj``: the fitted mesh in the **model frame** (mm, x right, y up, z towards the viewer; shape
  = identity + expression, not posed), coloured with the fitted albedo (written as sRGB, as viewers
  expect; the model's mean albedo after a landmark-only fit). ``params`` in the JSON pose it into the
  camera frame. With ``all_faces``, face ``k >= 1`` goes to ``<stem>_face<k>.obj``.
- ``<stem>_overlay.png``: the rendered fit blended over the photo, input landmarks as green rings,
  the fitted model's landmarks as red dots.
- ``<stem>.json``: ``landmarks68`` (the fitted model's 68 landmarks in the image, 0-based px, null where
  the model has none), ``id`` (the image's path relative to the input folder), ``pose`` ([yaw, pitch,
  roll] degrees, ``docs/conventions.md``), ``params`` (``FaceParams.to_dict()``), ``time_s``, the model,
  the landmarks used and where they came from; ``mesh`` / ``overlay`` are null when not written; with
  ``all_faces`` also ``faces``: the same record for every face, largest detection box first (the top
  level is face 0). ``face_box`` is the detector's box [x0, y0, x1, y1] and ``detector_score`` its
  confidence (both null for a landmark file). ``input`` holds the SHA-256 of the image (and landmark
  file) bytes; ``warnings`` lists doubts about the fit (e.g. an upside-down head).

Images of a folder tree (``recursive``) have ids relative to the folder (``shards.image_id``); their
outputs go to the same sub-folders of the output folder. ``outputs`` chooses what is written besides the
JSON (a JSON-only run does no mesh export or overlay rendering, and with landmark files it reads only
the images' headers, not their pixels: the fit's own speed).

An image counts as done when its JSON exists, parses, is marked complete, was made from the same
image and landmark file bytes with the same model, landmark source and fitting mode, and every requested
output exists; done images are skipped, so a different photo under the same name is fitted again. A
fit whose head faces away from the camera (more than ``MAX_TURN_DEG`` from frontal; typically mirrored
landmarks) fails. A failing image does not stop the batch: its reason is collected, and whatever it
had written is removed.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..display.overlay import draw_overlay
from ..io import atomic_write, check_output_dir, file_sha256
from ..model.export import export_mesh
from .detect import detect_faces
from .errors import FitInputError, LandmarkFileError
from .images import image_size, list_images, load_image
from .landmark_fit import LandmarkFitConfig, LandmarkFitter
from .landmarks_io import check_in_image, find_landmark_file, read_landmarks
from .photometric import PhotometricConfig, fit_photometric
from .shards import image_id, list_image_tree
from .threads import torch_threads

POSE_CONVENTION = ("degrees [yaw, pitch, roll], R = Rz(roll) Ry(yaw) Rx(pitch) applied to the model frame "
                   "(x right, y up, z to the viewer); yaw > 0 turns the face towards the image right, "
                   "pitch > 0 looks down, roll > 0 tilts the head counter-clockwise in the image")
REQUIRED_KEYS = ("landmarks68", "pose", "params", "time_s", "model", "landmarks_source", "complete", "input")
MAX_TURN_DEG = 90.0  # a photo shows the face: a fit turned further than this from frontal is wrong
UPSIDE_DOWN_DEG = 90.0  # |roll| above this: warn (the photo may be rotated)
OUTPUTS = ("json", "mesh", "overlay")  # what a fit can write; the JSON always


@dataclass
class Job:
    """One image and, if given, its landmark file."""

    image: Path
    landmarks: Path | None = None
    problem: str | None = None  # a reason to fail without trying
    id: str = ""  # path relative to the input folder, '/'-separated (default: the file name)

    def __post_init__(self):
        self.id = self.id or self.image.name

    def output_folder(self, root: Path) -> Path:
        """The folder of this image's outputs under the output folder ``root``."""
        return Path(root).joinpath(*self.id.split("/")[:-1])


@dataclass
class BatchReport:
    done: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: list = field(default_factory=list)  # (path, reason)
    warnings: list = field(default_factory=list)  # (path, message) of fitted images


def plan_jobs(input_path: str | Path, landmarks: str | Path | None = None, recursive: bool = False,
              exclude: str | Path | None = None) -> list[Job]:
    """The images of ``input_path`` (a file or a folder) with their landmark files.

    ``landmarks``: None (detect), a file (only with a single image) or a folder holding
    ``<stem>.pts|.npy|.json`` per image (in the same sub-folder as the image is in the input tree).
    recursive: take images from the whole folder tree (hidden folders and ``exclude`` left out).
    Raises ValueError / FileNotFoundError for unusable arguments.
    """
    src = Path(input_path)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such image or folder")
    if not src.is_dir():
        images = [src]
    else:
        images = list_image_tree(src, exclude) if recursive else list_images(src)
    if not images:
        raise ValueError(f"{src}: no images found (looked for .jpg, .png, .bmp, .tif, .webp, ...)")
    lm = None if landmarks is None else Path(landmarks)
    if lm is not None and not lm.exists():
        raise FileNotFoundError(f"{lm}: no such landmark file or folder")
    if lm is not None and lm.is_file() and len(images) > 1:
        raise ValueError(f"{lm} is one landmark file but {src} holds {len(images)} images; "
                         "pass a folder of <stem>.pts/.npy/.json files")
    jobs, seen = [], {}
    for img in images:
        job = Job(img, id=image_id(img, src) if src.is_dir() else img.name)
        key = (img.parent, img.stem)
        if key in seen:
            job.problem = f"same file stem as {seen[key].name}; outputs would collide (rename one)"
        seen.setdefault(key, img)
        if lm is not None and job.problem is None:
            try:
                job.landmarks = lm if lm.is_file() else find_landmark_file(job.output_folder(lm), img.stem)
            except LandmarkFileError as exc:
                job.problem = str(exc)
        jobs.append(job)
    return jobs


def output_paths(out_dir: Path, stem: str, faces: int = 1) -> dict:
    return {"json": out_dir / f"{stem}.json", "overlay": out_dir / f"{stem}_overlay.png",
            "meshes": [out_dir / (f"{stem}.obj" if k == 0 else f"{stem}_face{k}.obj") for k in range(faces)]}


def input_identity(job: Job) -> dict:
    """SHA-256 of the bytes the fit depends on: the image and, if given, its landmark file."""
    return {"image_sha256": file_sha256(job.image),
            "landmarks_sha256": None if job.landmarks is None else file_sha256(job.landmarks)}


def pose_problems(rotation: torch.Tensor) -> tuple[list[str], list[str]]:
    """rotation: (B, 3) Euler [yaw, pitch, roll], radians -> (failures, warnings), one line per bad face.

    The face looks along the model's +z; after R = Rz Ry Rx that direction has camera-frame z component
    cos(yaw) cos(pitch), the cosine of the angle between the face's direction and the camera axis.
    """
    failures, warnings = [], []
    for k, (yaw, pitch, roll) in enumerate(rotation.detach().cpu().double().tolist()):
        deg = ", ".join(f"{n} {math.degrees(a):.0f}" for n, a in (("yaw", yaw), ("pitch", pitch), ("roll", roll)))
        face = f"face {k}: " if len(rotation) > 1 else ""
        turn = math.degrees(math.acos(max(-1.0, min(1.0, math.cos(yaw) * math.cos(pitch)))))
        if not turn <= MAX_TURN_DEG:
            failures.append(f"{face}the fitted head faces away from the camera ({deg} deg, {turn:.0f} deg from "
                            "frontal): the landmarks are probably left/right swapped (mirrored) or not of this "
                            "image")
        elif abs(math.degrees(roll)) > UPSIDE_DOWN_DEG:
            warnings.append(f"{face}the fitted head is upside down ({deg} deg); is the photo rotated?")
    return failures, warnings


def _json_list(a: np.ndarray) -> list:
    return [None if not np.all(np.isfinite(p)) else [float(p[0]), float(p[1])] for p in a]


class FitPipeline:
    """Everything needed to fit photos with one model; :meth:`run` fits a list of jobs."""

    def __init__(self, model, model_source: str, detector: str = "dlib", all_faces: bool = False,
                 photometric: bool = False, landmark_config: LandmarkFitConfig | None = None,
                 photometric_config: PhotometricConfig | None = None, threads: int | None = None,
                 outputs=OUTPUTS):
        unknown = set(outputs) - set(OUTPUTS)
        if unknown or "json" not in outputs:
            raise ValueError(f"outputs {sorted(outputs)}: choose from {', '.join(OUTPUTS)}; json is always written")
        self.outputs = frozenset(outputs)
        self.model = model
        self.threads = threads
        self.model_source = str(model_source)
        self.detector = detector
        self.all_faces = all_faces
        self.photometric = photometric
        self.fitter = LandmarkFitter(model, landmark_config)
        self.photometric_config = photometric_config or PhotometricConfig(progress=False)

    def signature(self, job: Job) -> dict:
        """What a finished JSON must match to be skipped."""
        return {"model": self.model_source, "photometric": self.photometric,
                "landmarks": "file" if job.landmarks is not None else self.detector,
                "all_faces": self.all_faces and job.landmarks is None}

    def is_done(self, job: Job, out_dir: Path) -> bool:
        """True when ``out_dir`` holds a complete result made from the same input bytes and options."""
        folder = job.output_folder(out_dir)
        path = output_paths(folder, job.image.stem)["json"]
        try:
            record = json.loads(path.read_text())
            identity = input_identity(job)
        except (OSError, ValueError):
            return False
        if not (isinstance(record, dict) and all(k in record for k in REQUIRED_KEYS) and record["complete"] is True
                and record.get("options") == self.signature(job) and record["input"] == identity):
            return False
        faces = record.get("faces") or [record]
        wanted = ([f.get("mesh") for f in faces] if "mesh" in self.outputs else []) + \
                 ([record.get("overlay")] if "overlay" in self.outputs else [])
        return all(isinstance(name, str) and (folder / name).is_file() for name in wanted)

    # ---- one image -------------------------------------------------------------------------
    def _needs_pixels(self, job: Job) -> bool:
        """Whether fitting ``job`` looks at the photo's pixels (else its header gives the size)."""
        return job.landmarks is None or self.photometric or "overlay" in self.outputs

    def _landmarks(self, job: Job, image: np.ndarray | None,
                   size: tuple[int, int]) -> tuple[np.ndarray, list, list, str]:
        """-> landmarks (F, 68, 2), face boxes and detector scores (F each; None for a landmark file),
        source description. ``image`` is None when the landmarks come from a file and nothing else
        needs pixels; ``size``: its (height, width)."""
        if job.landmarks is not None:
            lm = read_landmarks(job.landmarks)
            check_in_image(lm, size, str(job.landmarks))
            return lm[None], [None], [None], f"file:{job.landmarks}"
        faces = detect_faces(image, self.detector, self.all_faces, source=str(job.image))
        return (np.stack([f.landmarks for f in faces]), [[float(v) for v in f.box] for f in faces],
                [float(f.score) for f in faces], f"detector:{self.detector}")

    def fit_image(self, job: Job, out_dir: Path) -> dict:
        """Fit one image and write its outputs; returns the JSON record. Raises on failure (after
        removing anything it wrote). With ``threads`` set, torch runs on that many intra-op threads meanwhile
        (``threads.py``); by default torch's setting is left alone."""
        with torch_threads(self.threads):
            return self._fit_image(job, out_dir)

    def _fit_image(self, job: Job, out_dir: Path) -> dict:
        start = time.perf_counter()
        if job.problem:
            raise FitInputError(job.problem)
        # a JSON-only fit from a landmark file needs the image's size, not its pixels (decoding a photo can
        # take longer than fitting it)
        image = load_image(job.image) if self._needs_pixels(job) else None
        size = image.shape[:2] if image is not None else image_size(job.image)
        identity = input_identity(job)
        given, boxes, scores, source = self._landmarks(job, image, size)
        fit = self.fitter.fit(given, size)
        params, fitted, kind = fit.params, fit.landmarks_2d, "landmarks"
        extra = {"rms_px": fit.rms_px.tolist()}
        if self.photometric:
            ph = fit_photometric(self.model, [image] * len(given), fit, given, self.photometric_config)
            params, fitted, kind = ph.params, ph.landmarks_2d, "photometric"
            extra = {"mean_error_px": ph.error_after.tolist(), "mean_error_px_landmark_fit": ph.error_before.tolist(),
                     "kept_landmark_geometry": ph.kept_landmark_geometry.tolist()}
        failures, warnings = pose_problems(params.rotation)
        if failures:
            raise FitInputError(f"{job.image}: " + "; ".join(failures))
        fitted = fitted.detach().cpu().numpy().astype(np.float64)
        folder = job.output_folder(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        paths = output_paths(folder, job.image.stem, len(given))
        meshes = "mesh" in self.outputs
        written = []
        try:
            if meshes:
                with torch.no_grad():
                    verts = self.model.shape(params.identity, params.expression)
                    colours = self.model.albedo(params.texture)
                for k, mesh in enumerate(paths["meshes"]):
                    written.append(mesh)
                    export_mesh(mesh, verts[k], self.model.triangles, colors=colours[k])
            if "overlay" in self.outputs:
                overlay = draw_overlay(self.model, image, params, fitted, given, lit=self.photometric)
                written.append(paths["overlay"])
                atomic_write(paths["overlay"], lambda p: Image.fromarray(overlay).save(p, format="PNG"))
            faces = []
            for k in range(len(given)):
                d = params[k].to_dict()
                faces.append({"landmarks68": _json_list(fitted[k]), "pose": d["pose_deg"][0], "params": d,
                              "landmarks_input": _json_list(given[k]), "face_box": boxes[k],
                              "detector_score": scores[k],
                              "mesh": paths["meshes"][k].name if meshes else None,
                              "fit": {"kind": kind, **{n: v[k] for n, v in extra.items()}}})
            record = {**faces[0], "id": job.id, "image": job.image.name, "image_size": list(size),
                      "model": self.model.name, "model_source": self.model_source, "landmarks_source": source,
                      "pose_convention": POSE_CONVENTION, "mesh_frame": "model (mm, unposed; params pose it)",
                      "overlay": paths["overlay"].name if "overlay" in self.outputs else None,
                      "options": self.signature(job), "input": identity,
                      "warnings": warnings}
            if self.all_faces and job.landmarks is None:
                record["faces"] = faces
            record["time_s"] = time.perf_counter() - start
            record["complete"] = True
            written.append(paths["json"])
            atomic_write(paths["json"], json.dumps(record, indent=1))
        except BaseException:
            for p in written:
                if p.exists():
                    p.unlink()
            raise
        return record

    def run(self, jobs: list[Job], out_dir: str | Path, progress: bool = True, desc: str = "fit",
            position: int | None = None) -> BatchReport:
        """Fit every job not already done; failures are collected, not raised (except interruption).
        desc / position: the progress bar's label and terminal line (one line per process of a node)."""
        out_dir = check_output_dir(out_dir, "out_dir")
        out_dir.mkdir(parents=True, exist_ok=True)
        report = BatchReport()
        for job in tqdm(jobs, desc=desc, unit="image", disable=not progress, position=position):
            if job.problem is None and self.is_done(job, out_dir):
                report.skipped.append(job.image)
                continue
            try:
                record = self.fit_image(job, out_dir)
                report.done.append(job.image)
                report.warnings += [(job.image, w) for w in record["warnings"]]
            except (FitInputError, ValueError) as exc:
                report.failed.append((job.image, str(exc)))
            except Exception as exc:  # noqa: BLE001 - one bad image must not stop the batch
                report.failed.append((job.image, f"{type(exc).__name__}: {exc}"))
        return report
