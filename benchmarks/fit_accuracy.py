"""Accuracy and speed of landmark (and photometric) fitting on real faces, against eos.

Runs on ``../shared/data/faces`` (resolved from the repository root; skipped with a message when absent):
every manifest entry with 68 ground-truth landmarks, fitted
- from the ground-truth landmarks, and
- from dlib-detected landmarks (the detection whose box best overlaps the ground truth's),
with morph3d on the Surrey Face Model (``../shared/models/sfm``), eos (``eos-py``:
``fit_shape_and_pose`` with the SFM, its iBUG mapping, edge topology, contours and expression
blendshapes, default settings) on the same landmarks, and morph3d on the embedded ``open`` model.

Printed per image and in summary:
- NME of the fitted model's landmarks reprojected into the image against the ground truth, normalised
  by the inter-ocular distance (outer eye corners 36 and 45) and by sqrt(width x height) of the ground
  truth's bounding box; ``nme68`` over all landmarks the fit defines, ``nme51`` over the inner 51
  (17-67, the same fixed model points for both tools: a like-for-like comparison). eos reports no jaw
  correspondences, so its jaw landmarks are evaluated like morph3d's: the nearest point of the
  fitted mesh's projected outline (contour polyline, or silhouette on the side turned away).
- pose error (degrees) where the manifest has a pose: 300W-LP ``Pose_Para`` (pitch, yaw, roll) means
  ``R = Rx'(pitch) Ry'(yaw) Rz'(roll)`` with the manifest's transposed elementary matrices acting on
  column vectors, i.e. ``R = Rx(-pitch) Ry(-yaw) Rz(-roll)`` in morph3d's matrices; it is converted to
  morph3d's [yaw, pitch, roll] through the rotation matrix (checked on the one image with a pose:
  yaw ~ +44 turns the face to the image right in the photo, as in morph3d's convention).
- seconds per image of the fit alone (detection excluded, reported separately), one image at a time;
  ``+photo`` rows add the photometric refinement (and their time) to the landmark fit above them.

The photometric rows also report the photo residual: the mean over the fit's pixel weights of
|render - photo| (linear RGB) at the end, how well the refined face explains the photo.

Usage: ``python benchmarks/fit_accuracy.py [--limit N] [--photometric] [--photo-steps S] [--no-eos]
[--no-detect] [--threads T]``.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = (REPO / ".." / "shared").resolve()
FACES = SHARED / "data" / "faces"
SFM = SHARED / "models" / "sfm"

from morph3d.fitting import LandmarkFitter, load_image, nme  # noqa: E402
from morph3d.model import IBUG68, load_model  # noqa: E402
from morph3d.model.pose import euler_to_matrix, matrix_to_euler  # noqa: E402

INNER = list(IBUG68.inner)


def manifest_pose_to_ours(pose_deg) -> np.ndarray:
    """Manifest [yaw, pitch, roll] (300W-LP Pose_Para convention) -> morph3d [yaw, pitch, roll], degrees."""
    y, p, r = (math.radians(v) for v in pose_deg)
    e = lambda a, b, c: euler_to_matrix(torch.tensor([a, b, c], dtype=torch.float64))  # noqa: E731
    rot = e(0, -p, 0) @ e(-y, 0, 0) @ e(0, 0, -r)
    return np.degrees(matrix_to_euler(rot).numpy())


def angle_error(a, b) -> np.ndarray:
    return np.abs((np.asarray(a) - np.asarray(b) + 180) % 360 - 180)


class EosFitter:
    """eos's fit_shape_and_pose on the SFM with its shipped mapping, topology, contours, blendshapes."""

    def __init__(self, fitter_for_outline: LandmarkFitter):
        import eos
        self.eos = eos
        shape = eos.morphablemodel.load_model(str(SFM / "sfm_shape_3448.bin"))
        blend = eos.morphablemodel.load_blendshapes(str(SFM / "expression_blendshapes_3448.bin"))
        self.model = eos.morphablemodel.MorphableModel(
            shape.get_shape_model(), blend, color_model=eos.morphablemodel.PcaModel(), vertex_definitions=None,
            texture_coordinates=shape.get_texture_coordinates())
        self.mapper = eos.core.LandmarkMapper(str(SFM / "ibug_to_sfm.txt"))
        self.topology = eos.morphablemodel.load_edge_topology(str(SFM / "sfm_3448_edge_topology.json"))
        self.contour_landmarks = eos.fitting.ContourLandmarks.load(str(SFM / "ibug_to_sfm.txt"))
        self.model_contour = eos.fitting.ModelContour.load(str(SFM / "sfm_model_contours.json"))
        self.ids = -np.ones(68, np.int64)
        for line in (SFM / "ibug_to_sfm.txt").read_text().splitlines():
            m = re.match(r"\s*(\d+)\s*=\s*(\d+)", line)
            if m:
                self.ids[int(m.group(1)) - 1] = int(m.group(2))
        self.outline = fitter_for_outline

    def fit(self, landmarks: np.ndarray, width: int, height: int):
        """-> (68, 2) reprojected landmarks, pose [yaw, pitch, roll] deg (ours), seconds."""
        eos = self.eos
        lms = [eos.core.Landmark(str(i + 1), [float(x), float(y)]) for i, (x, y) in enumerate(landmarks)]
        start = time.perf_counter()
        mesh, pose, _, _ = eos.fitting.fit_shape_and_pose(self.model, lms, self.mapper, width, height,
                                                          self.topology, self.contour_landmarks,
                                                          self.model_contour)
        seconds = time.perf_counter() - start
        cam = np.array(eos.fitting.get_3x4_affine_camera_matrix(pose, width, height))
        verts = np.array(mesh.vertices, dtype=np.float64)
        img = verts @ cam[:2, :3].T + cam[:2, 3]
        rot = np.array(pose.get_modelview())[:3, :3]
        out = np.full((68, 2), np.nan)
        ok = self.ids >= 0
        out[ok] = img[self.ids[ok]]
        out = self._outline(out, verts, rot, img, landmarks)
        ours = np.degrees(matrix_to_euler(torch.from_numpy(rot)).numpy())
        return out, ours, seconds

    def _outline(self, out, verts, rot, img, target):
        """Jaw landmarks of the eos mesh by morph3d's rule (nearest outline point), for a 68-point NME."""
        f = self.outline
        vid = torch.from_numpy(f.contour.vertex_ids)
        cam = torch.from_numpy(verts @ rot.T)[None][:, vid]
        pts = torch.from_numpy(img)[None][:, vid]
        q = f.contour_queries
        ids, w, found = f.contour.select(cam, pts, torch.from_numpy(target)[None][:, q].double(), f.contour_sides,
                                         perspective=False)
        p = (pts[0][ids[0]] * w[0][..., None]).sum(1).numpy()
        out[q.numpy()] = np.where(found[0, :, None].numpy(), p, np.nan)
        return out


def match_detection(faces, gt: np.ndarray):
    """The detection whose landmark box overlaps the ground truth's landmark box most (IoU > 0.3)."""
    def box(p):
        return np.concatenate([p.min(0), p.max(0)])

    g = box(gt)
    best, best_iou = None, 0.3
    for f in faces:
        d = box(f.landmarks)
        iw = max(0.0, min(g[2], d[2]) - max(g[0], d[0]))
        ih = max(0.0, min(g[3], d[3]) - max(g[1], d[1]))
        inter = iw * ih
        iou = inter / ((g[2] - g[0]) * (g[3] - g[1]) + (d[2] - d[0]) * (d[3] - d[1]) - inter)
        if iou > best_iou:
            best, best_iou = f, iou
    return best


def scores(pred, gt) -> dict:
    return {"io68": nme(pred, gt, "interocular"), "box68": nme(pred, gt, "box"),
            "io51": nme(pred, gt, "interocular", INNER), "box51": nme(pred, gt, "box", INNER)}


def photo_residual(ph) -> float:
    """Mean over the fit's pixel weights of |render - photo| (linear RGB, per-pixel L2) at the end of a
    photometric refinement: how well the fitted face explains the photo."""
    from morph3d.fitting.losses import photometric_loss
    return float(photometric_loss(ph.render, ph.photo, ph.mask, "l21")[0])


def summarise(rows, methods, label):
    print(f"\n== {label}: mean NME (%) over {len(rows)} faces; seconds per image ==")
    print(f"{'method':30s} {'n':>3s} {'io68':>6s} {'box68':>6s} {'io51':>6s} {'box51':>6s} {'med io68':>8s} "
          f"{'s/img':>7s}")
    for m in methods:
        vals = [r[m] for r in rows if m in r]
        if not vals:
            continue
        mean = {k: np.nanmean([v[k] for v in vals]) * 100 for k in ("io68", "box68", "io51", "box51")}
        med = np.nanmedian([v["io68"] for v in vals]) * 100
        sec = np.mean([v["time"] for v in vals])
        print(f"{m:30s} {len(vals):3d} {mean['io68']:6.2f} {mean['box68']:6.2f} {mean['io51']:6.2f} "
              f"{mean['box51']:6.2f} {med:8.2f} {sec:7.3f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="only the first N manifest entries")
    ap.add_argument("--photometric", action="store_true", help="also refine photometrically (224 px crops)")
    ap.add_argument("--photo-steps", type=int, default=None,
                    help="most Adam steps of the refinement (default: its own)")
    ap.add_argument("--photo-tolerance", type=float, default=None,
                    help="the refinement's convergence tolerance (default: its own; 0 takes every step)")
    ap.add_argument("--no-eos", action="store_true")
    ap.add_argument("--no-detect", action="store_true", help="skip the dlib-detected landmark runs")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    if not (FACES / "manifest.json").is_file():
        print(f"{FACES} not available; nothing to measure")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    entries = json.loads((FACES / "manifest.json").read_text())["entries"]
    entries = [e for e in entries if e.get("landmarks68")][:args.limit]

    models = {}
    if (SFM / "sfm_shape_3448.bin").is_file():
        models["sfm"] = load_model(str(SFM / "sfm_shape_3448.bin"))
    try:
        models["open"] = load_model("open")
    except (FileNotFoundError, ValueError) as exc:
        print(f"open model unavailable: {exc}")
    fitters = {name: LandmarkFitter(m) for name, m in models.items()}
    eos_fitter = None
    if not args.no_eos and "sfm" in fitters:
        try:
            eos_fitter = EosFitter(fitters["sfm"])
        except ImportError:
            print("eos-py not installed; skipping eos")
    detect = None
    if not args.no_detect:
        from morph3d.fitting import detect_faces
        detect = detect_faces
    photometric = None
    if args.photometric:
        from morph3d.fitting import PhotometricConfig, fit_photometric
        chosen = {"steps": args.photo_steps, "tolerance": args.photo_tolerance}
        photometric = (fit_photometric, PhotometricConfig(progress=False, **{k: v for k, v in chosen.items()
                                                                              if v is not None}))
    print(f"torch threads: {torch.get_num_threads()}; {len(entries)} faces; models: {', '.join(models)}")

    # warm-up (first calls pay one-off costs)
    for f in fitters.values():
        f.fit(np.array(entries[0]["landmarks68"])[None], (entries[0]["height"], entries[0]["width"]))

    rows, methods = [], []
    det_times, det_missed = [], []
    for e in entries:
        gt = np.array(e["landmarks68"], dtype=np.float64)
        h, w = e["height"], e["width"]
        row = {"id": e["id"], "human": e.get("human_annotated", False)}
        image = None
        sources = {"gt": gt}
        if detect is not None or photometric is not None:
            image = load_image(FACES / e["file"])
        if detect is not None:
            t = time.perf_counter()
            try:
                faces = detect(image, "dlib", all_faces=True)
            except ValueError:
                faces = []
            det_times.append(time.perf_counter() - t)
            found = match_detection(faces, gt)
            if found is None:
                det_missed.append(e["id"])
            else:
                sources["dlib"] = found.landmarks
        for src, lm in sources.items():
            for name, fitter in fitters.items():
                t = time.perf_counter()
                r = fitter.fit(lm[None], (h, w))
                sec = time.perf_counter() - t
                key = f"morph3d-{name}/{src}"
                row[key] = {**scores(r.landmarks_2d[0].numpy(), gt), "time": sec,
                            "pose": np.degrees(r.params.rotation[0].numpy())}
                if photometric is not None:
                    ph = photometric[0](models[name], [image], r, lm[None], photometric[1])
                    row[f"morph3d-{name}+photo/{src}"] = {**scores(ph.landmarks_2d[0].numpy(), gt),
                                                          "time": sec + ph.seconds,
                                                          "pose": np.degrees(ph.params.rotation[0].numpy()),
                                                          "refined": not bool(ph.kept_landmark_geometry[0]),
                                                          "residual": photo_residual(ph), "steps": len(ph.loss)}
            if eos_fitter is not None:
                pred, pose, sec = eos_fitter.fit(lm, w, h)
                row[f"eos-sfm/{src}"] = {**scores(pred, gt), "time": sec, "pose": pose}
        for k in row:
            if isinstance(row[k], dict) and k not in methods:
                methods.append(k)
        rows.append(row)
        cells = "  ".join(f"{k} {v['io68'] * 100:5.2f}/{v['io51'] * 100:5.2f} {v['time'] * 1000:4.0f}ms"
                          for k, v in row.items() if isinstance(v, dict))
        print(f"{e['id']:28s} {cells}")
        if e.get("pose") is not None:
            ref = manifest_pose_to_ours(e["pose"])
            print(f"    pose ground truth (ours) {np.round(ref, 1)}")
            for k, v in row.items():
                if isinstance(v, dict):
                    err = np.round(angle_error(v["pose"], ref), 1)
                    print(f"    {k:28s} pose {np.round(v['pose'], 1)}  |error| {err}")

    print("\nNME in % (io = inter-ocular, box = sqrt(box area); 68 = all defined landmarks, 51 = inner)")
    summarise(rows, methods, "all faces")
    human = [r for r in rows if r["human"]]
    summarise(human, methods, "human-annotated faces only")
    if photometric is not None:
        print("\nphotometric refinement vs the landmark fit it starts from (NME io68 against the ground truth):")
        for m in methods:
            if "+photo/" not in m:
                continue
            base = m.replace("+photo", "")
            pairs = [(r[base]["io68"], r[m]["io68"]) for r in rows if m in r and base in r]
            worse = sum(after > before + 1e-9 for before, after in pairs)
            refined = sum(r[m]["refined"] for r in rows if m in r)
            before, after = (np.mean([p[i] for p in pairs]) * 100 for i in (0, 1))
            residual = np.mean([r[m]["residual"] for r in rows if m in r])
            steps = np.mean([r[m]["steps"] for r in rows if m in r])
            print(f"  {m:30s} mean {before:.3f} -> {after:.3f} %, worse on {worse} of {len(pairs)} faces; "
                  f"refined geometry kept on {refined} (else the landmark fit's); photo residual {residual:.4f}; "
                  f"{steps:.1f} steps")
    if det_times:
        print(f"\ndlib detection: {np.mean(det_times):.3f} s/image; no matching face in {len(det_missed)}: "
              f"{', '.join(det_missed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
