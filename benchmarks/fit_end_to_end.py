"""End-to-end fitting on real photos: detector included, no ground-truth landmarks used.

Runs on ``../shared/data/faces`` (resolved from the repository root; prints a message and exits when
absent). Every image is searched for all faces (``all_faces=True``) by each detector:
- ``dlib``: HOG + dlib's 68-point predictor (the old default),
- ``auto``: the cascade of ``morph3d/fitting/detect.py`` (HOG, then MediaPipe, then dlib's CNN),
- ``mediapipe``: MediaPipe Face Mesh mapped to iBUG-68,
and every annotated face is matched to the detection whose landmark box overlaps its own most
(IoU > 0.3). Each found face is then fitted with morph3d's landmark fitter on the embedded ``open``
model; ``auto+dense`` also refines that fit on MediaPipe's 468 points and, for dlib's detections,
dlib's inner 51 landmarks (``fitting/dense.py``).

Printed per method, over the annotated faces (and over the human-annotated ones only: the
``dlib_pascal`` labels are dlib's own predictions, so they favour dlib):
- found: faces matched / faces annotated;
- NME (%) of the 68 points normalised by sqrt(w x h) of the ground truth's landmark box (AFLW2000-3D
  protocol) and by the outer-eye-corner distance, for the detector's landmarks (``det``) and for the
  fitted model's landmarks reprojected (``fit``), mean over the found faces;
- seconds per image: detection (all faces) and detection + fits;
- pose error (degrees) of the fit on faces whose manifest has a pose (300W-LP ``Pose_Para``).

Usage: ``python benchmarks/fit_end_to_end.py [--methods dlib,auto,mediapipe,auto+dense] [--limit N]
[--threads T]``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FACES = (REPO / ".." / "shared" / "data" / "faces").resolve()

from morph3d.fitting import LandmarkFitter, detect_faces, load_image, nme  # noqa: E402
from morph3d.model import load_model  # noqa: E402
from morph3d.model.pose_conventions import pose_para_to_angles  # noqa: E402

METHODS = ("dlib", "auto", "mediapipe", "auto+dense")


def landmark_box(p: np.ndarray) -> np.ndarray:
    return np.concatenate([np.nanmin(p, 0), np.nanmax(p, 0)])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(faces, gt: np.ndarray):
    """The detection whose landmark box overlaps the ground truth's most (IoU > 0.3), or None."""
    g = landmark_box(gt)
    best, best_iou = None, 0.3
    for f in faces:
        o = iou(g, landmark_box(f.landmarks))
        if o > best_iou:
            best, best_iou = f, o
    return best


def angle_error(a, b) -> np.ndarray:
    return np.abs((np.asarray(a) - np.asarray(b) + 180) % 360 - 180)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {', '.join(METHODS)}")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        ap.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    if not (FACES / "manifest.json").is_file():
        print(f"{FACES} not available; nothing to measure")
        return 0
    torch.set_num_threads(args.threads)
    entries = [e for e in json.loads((FACES / "manifest.json").read_text())["entries"] if e.get("landmarks68")]
    by_file: dict[str, list] = {}
    for e in entries:
        by_file.setdefault(e["file"], []).append(e)
    files = list(by_file)[:args.limit]
    model = load_model("open")
    fitter = LandmarkFitter(model)
    dense = None
    if "auto+dense" in methods:
        from morph3d.fitting.dense import DenseFitter
        dense = DenseFitter(model)
    # warm-up: first calls load models and pay one-off costs
    warm = load_image(FACES / files[0])
    for det in {m.split("+")[0] for m in methods}:
        detect_faces(warm, det, all_faces=True)
    fitter.fit(np.array(by_file[files[0]][0]["landmarks68"])[None], warm.shape[:2])

    rows = {m: [] for m in methods}
    times = {m: [] for m in methods}
    print(f"{len(files)} images, {sum(len(by_file[f]) for f in files)} annotated faces; torch threads "
          f"{torch.get_num_threads()}")
    for f in files:
        image = load_image(FACES / f)
        hw = image.shape[:2]
        cache = {}
        for m in methods:
            det_name = m.split("+")[0]
            if det_name not in cache:
                t = time.perf_counter()
                try:
                    faces = detect_faces(image, det_name, all_faces=True)
                except ValueError:  # NoFaceError
                    faces = []
                cache[det_name] = (faces, time.perf_counter() - t)
            faces, det_s = cache[det_name]
            fit_s = 0.0
            for e in by_file[f]:
                gt = np.array(e["landmarks68"], dtype=np.float64)
                row = {"id": e["id"], "human": e.get("human_annotated", False), "found": False}
                d = match(faces, gt)
                if d is not None:
                    t = time.perf_counter()
                    r = fitter.fit(d.landmarks[None], hw)
                    lm2d, rot = r.landmarks_2d[0].double().numpy(), r.params.rotation[0].double()
                    if m.endswith("+dense"):
                        dr = dense.fit(image, d, r)
                        lm2d, rot = dr.landmarks_2d[0].double().numpy(), dr.params.rotation[0].double()
                    fit_s += time.perf_counter() - t
                    row.update(found=True, source=d.source,
                               det_box=nme(d.landmarks, gt, "box"), det_io=nme(d.landmarks, gt, "interocular"),
                               fit_box=nme(lm2d, gt, "box"), fit_io=nme(lm2d, gt, "interocular"),
                               pose=np.degrees(rot.numpy()))
                    if e.get("pose") is not None:
                        y, p, r_ = (math.radians(v) for v in e["pose"])
                        ref = np.degrees(pose_para_to_angles(torch.tensor([p, y, r_], dtype=torch.float64)).numpy())
                        row["pose_err"] = angle_error(row["pose"], ref)
                        row["pose_ref"] = ref
                rows[m].append(row)
            times[m].append((det_s, det_s + fit_s))
        print(f"{f:48s} " + "  ".join(f"{m} {len(cache[m.split('+')[0]][0])}f {times[m][-1][1]:.2f}s"
                                       for m in methods), flush=True)

    for label, keep in (("all annotated faces", lambda r: True), ("human-annotated faces", lambda r: r["human"])):
        print(f"\n== {label}: NME % (box = sqrt(w*h) of the GT landmark box; io = outer eye corners) ==")
        print(f"{'method':12s} {'found':>7s} {'det box':>8s} {'det io':>7s} {'fit box':>8s} {'fit io':>7s} "
              f"{'med box':>8s} {'s/img det':>9s} {'s/img +fit':>10s}")
        for m in methods:
            sel = [r for r in rows[m] if keep(r)]
            ok = [r for r in sel if r["found"]]
            mean = {k: np.nanmean([r[k] for r in ok]) * 100 if ok else float("nan")
                    for k in ("det_box", "det_io", "fit_box", "fit_io")}
            med = np.nanmedian([r["fit_box"] for r in ok]) * 100 if ok else float("nan")
            print(f"{m:12s} {len(ok):3d}/{len(sel):<3d} {mean['det_box']:8.2f} {mean['det_io']:7.2f} "
                  f"{mean['fit_box']:8.2f} {mean['fit_io']:7.2f} {med:8.2f} {np.mean([t[0] for t in times[m]]):9.3f} "
                  f"{np.mean([t[1] for t in times[m]]):10.3f}")
    print("\nmissed faces and where the landmarks of found faces came from:")
    for m in methods:
        missed = [r["id"] for r in rows[m] if not r["found"]]
        sources: dict[str, int] = {}
        for r in rows[m]:
            if r["found"]:
                sources[r["source"]] = sources.get(r["source"], 0) + 1
        print(f"  {m:12s} missed {len(missed)}: {', '.join(missed) or '-'}; sources {sources}")
    posed = [(m, r) for m in methods for r in rows[m] if "pose_err" in r]
    if posed:
        print("\npose [yaw, pitch, roll] in degrees, morph3d convention (ground truth from Pose_Para):")
        for m, r in posed:
            print(f"  {m:12s} {r['id']}: fit {np.round(r['pose'], 1)} truth {np.round(r['pose_ref'], 1)} "
                  f"|error| {np.round(r['pose_err'], 1)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
