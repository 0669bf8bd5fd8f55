#!/usr/bin/env python
"""Derive the MediaPipe-468 -> iBUG-68 landmark correspondence from real photographs.

Usage::

    python scripts/derive_ibug68_mapping.py [--faces ../shared/data/faces] [--package PATH]
                                            [--out assets/mediapipe_ibug68.json]

Writes ``assets/mediapipe_ibug68.json``: under ``ibug68``, for each of the 68 iBUG points in order,
a MediaPipe ``triangle`` (three vertex numbers of the 468-vertex canonical mesh), ``barycentric``
weights, the ``nearest_vertex`` and the error achieved (``median_nme``, ``mean_nme`` over ``images``).
``scripts/build_open_model.py`` turns it into the open model's landmarks, and fitting code uses it
to turn MediaPipe's detections into 68 points (the weights apply to detected landmark positions).

Method
------
1. Every entry of ``manifest.json`` (image file, third-party 68-point annotation in 0-based pixels)
   is cropped to a square twice the annotation's extent, scaled to 384 px, and MediaPipe Face Mesh
   (``static_image_mode=True``, ``refine_landmarks=False``) runs on it; the face nearest the
   annotation is kept and its 468 landmarks are mapped back to image pixels. The images are only
   read, never copied.
2. Candidates: every point of every MediaPipe triangle on a barycentric grid of step 1/10 (vertices,
   edge points and interior points; 59,268 in all).
3. Error of a candidate for an iBUG point in an image: the distance between the candidate (the
   barycentric combination of the detected landmarks) and the annotated point, divided by the
   inter-ocular distance (outer eye corners, iBUG 36-45: the 300-W normalisation).
4. Selection is mirror-symmetric: a left/right pair of iBUG points (e.g. 36/45) takes a candidate
   and its mirror image, minimising the sum of their median errors; a midline point (8, 27-30,
   33, 51, 57, 62, 66) takes the best candidate on the midline. Jaw points (0-16) use only
   near-frontal images (|yaw| < 20 degrees, yaw from a similarity fit of MediaPipe's canonical mesh
   to the detection), because the outline slides over the surface as the head turns.
   Faces under 10 px between the eyes are left out (their annotations are coarser than a pixel).
5. Reported: the NME (mean over the 68 points, per image, then over the images) of the chosen
   mapping on all images used, in-sample and by 5-fold cross-validation (mapping chosen on four
   folds, measured on the fifth).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_open_model as bom  # noqa: E402
from morph3d.model.face_definitions import IBUG68, NUM_LANDMARKS  # noqa: E402 (build_open_model adds the repo)

REPO = Path(__file__).resolve().parents[1]
CROP_SIZE = 384
GRID_STEPS = 10
FRONTAL_YAW_DEG = 20.0
MIN_INTEROCULAR_PX = 10.0
# iBUG-68 mirror partner of each point (the subject's left <-> right)
IBUG_MIRROR = np.array(IBUG68.mirror)
EYE_CORNERS = list(IBUG68.outer_eye_corners)


def detect(image: np.ndarray, annotation: np.ndarray, face_mesh) -> np.ndarray | None:
    """MediaPipe's 468 landmarks (468, 3) in image pixels (x, y, depth) for the annotated face, or None."""
    from PIL import Image

    lo, hi = annotation.min(0), annotation.max(0)
    side = int(np.ceil(2.0 * (hi - lo).max()))
    x0, y0 = np.floor((lo + hi) / 2 - side / 2).astype(int)
    padded = np.pad(image, ((side, side), (side, side), (0, 0)))
    crop = padded[y0 + side:y0 + 2 * side, x0 + side:x0 + 2 * side]
    crop = np.asarray(Image.fromarray(crop).resize((CROP_SIZE, CROP_SIZE), Image.BILINEAR))
    result = face_mesh.process(crop)
    if not result.multi_face_landmarks:
        return None
    faces = []
    for face in result.multi_face_landmarks:
        norm = np.array([[p.x, p.y, p.z] for p in face.landmark])[:468]
        # normalised crop coordinates (0..1 over the crop's edges) -> 0-based pixel centres
        faces.append(np.stack([x0 + norm[:, 0] * side - 0.5, y0 + norm[:, 1] * side - 0.5, norm[:, 2] * side], 1))
    return min(faces, key=lambda f: np.linalg.norm(f[:, :2].mean(0) - annotation.mean(0)))


def yaw_degrees(detection: np.ndarray, canonical_vertices: np.ndarray) -> float:
    """Yaw of the detected face (conventions.md sign) from a rotation fit of the canonical mesh."""
    target = detection * np.array([1.0, -1.0, -1.0])  # image y down, MediaPipe depth -> model frame
    a = canonical_vertices - canonical_vertices.mean(0)
    b = target - target.mean(0)
    u, _, vt = np.linalg.svd(b.T @ a)
    r = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    return float(np.degrees(np.arctan2(r[0, 2], r[2, 2])))


def candidates(base: "bom.Mesh") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid points on every triangle: triangle ids (C,), barycentrics (C, 3), index of the mirror (C,)."""
    s = GRID_STEPS
    grid = np.array([(i, j, s - i - j) for i in range(s + 1) for j in range(s + 1 - i)])
    tris = base.triangles
    cand_tri = np.repeat(np.arange(len(tris)), len(grid))
    cand_int = np.tile(grid, (len(tris), 1))
    key = {}
    for c, (t, w) in enumerate(zip(cand_tri.tolist(), cand_int.tolist())):
        key[(t, tuple(w))] = c
    by_corners = {frozenset(f): i for i, f in enumerate(tris.tolist())}
    mirror = np.empty(len(cand_tri), dtype=np.int64)
    for c, (t, w) in enumerate(zip(cand_tri.tolist(), cand_int.tolist())):
        corners = tris[t]
        mt = by_corners[frozenset(base.mirror[corners].tolist())]
        weight_of = dict(zip(base.mirror[corners].tolist(), w))
        mirror[c] = key[(mt, tuple(weight_of[v] for v in tris[mt].tolist()))]
    return cand_tri, cand_int / s, mirror


def select(errors_median: np.ndarray, mirror: np.ndarray, on_midline: np.ndarray) -> np.ndarray:
    """Chosen candidate per iBUG point from (C, 68) median errors, mirror-symmetric (see module doc)."""
    chosen = np.empty(NUM_LANDMARKS, dtype=np.int64)
    for k in range(NUM_LANDMARKS):
        partner = IBUG_MIRROR[k]
        if partner == k:
            score = np.where(on_midline, errors_median[:, k], np.inf)
            chosen[k] = int(np.argmin(score))
        elif partner > k:
            score = errors_median[:, k] + errors_median[mirror, partner]
            chosen[k] = int(np.argmin(score))
            chosen[partner] = mirror[chosen[k]]
    return chosen


def median_errors(points: np.ndarray, truth: np.ndarray, scale: np.ndarray, images: np.ndarray,
                  frontal: np.ndarray) -> np.ndarray:
    """(C, 68) median normalised error of each candidate over ``images`` (frontal ones for the jaw)."""
    out = np.empty((points.shape[0], NUM_LANDMARKS))
    for k in range(NUM_LANDMARKS):
        use = images[frontal[images]] if k in IBUG68.jaw else images
        err = np.linalg.norm(points[:, use] - truth[None, use, k], axis=-1) / scale[None, use]
        out[:, k] = np.median(err, axis=1)
    return out


def nme_per_image(points: np.ndarray, chosen: np.ndarray, truth: np.ndarray, scale: np.ndarray) -> np.ndarray:
    pred = points[chosen].transpose(1, 0, 2)  # (I, 68, 2)
    return (np.linalg.norm(pred - truth, axis=-1) / scale[:, None]).mean(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=Path, default=REPO / ".." / "shared" / "data" / "faces")
    parser.add_argument("--package", type=Path, help="@mediapipe/face_mesh .tgz or folder (default: npm pack)")
    parser.add_argument("--out", type=Path, default=REPO / "assets" / "mediapipe_ibug68.json")
    args = parser.parse_args(argv)

    import mediapipe as mp
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        base = bom.base_mesh(args.package if args.package is not None else bom.npm_pack(Path(tmp)))
    manifest = json.loads((args.faces / "manifest.json").read_text())
    ids, detections, truth, human = [], [], [], []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=3, refine_landmarks=False,
                                         min_detection_confidence=0.3) as face_mesh:
        for entry in manifest["entries"]:
            annotation = np.asarray(entry["landmarks68"], dtype=float)
            if np.linalg.norm(np.subtract(*annotation[EYE_CORNERS])) < MIN_INTEROCULAR_PX:
                continue
            image = np.asarray(Image.open(args.faces / entry["file"]).convert("RGB"))
            found = detect(image, annotation, face_mesh)
            if found is None:
                print(f"no face found: {entry['id']}", file=sys.stderr)
                continue
            ids.append(entry["id"])
            detections.append(found)
            truth.append(annotation)
            human.append(bool(entry.get("human_annotated")))
    detections, truth, human = np.stack(detections), np.stack(truth), np.array(human)
    scale = np.linalg.norm(truth[:, EYE_CORNERS[0]] - truth[:, EYE_CORNERS[1]], axis=1)
    frontal = np.array([abs(yaw_degrees(d, base.vertices)) < FRONTAL_YAW_DEG for d in detections])

    cand_tri, cand_bary, mirror = candidates(base)
    corner_xy = detections[:, :, :2][:, base.triangles[cand_tri]]  # (I, C, 3, 2)
    points = np.einsum("cj,icjd->cid", cand_bary, corner_xy)  # (C, I, 2)
    cand_x = np.einsum("cj,cjd->cd", cand_bary, base.vertices[base.triangles[cand_tri]])[:, 0]
    on_midline = np.abs(cand_x) < 1e-9

    everyone = np.arange(len(ids))
    med = median_errors(points, truth, scale, everyone, frontal)
    chosen = select(med, mirror, on_midline)
    nme = nme_per_image(points, chosen, truth, scale)

    folds = np.array_split(np.random.default_rng(0).permutation(len(ids)), 5)
    nme_cv = np.empty(len(ids))
    for fold in folds:
        train = np.setdiff1d(everyone, fold)
        fold_choice = select(median_errors(points, truth, scale, train, frontal), mirror, on_midline)
        nme_cv[fold] = nme_per_image(points[:, fold], fold_choice, truth[fold], scale[fold])

    per_point = np.linalg.norm(points[chosen].transpose(1, 0, 2) - truth, axis=-1) / scale[:, None]
    entries = []
    for k in range(NUM_LANDMARKS):
        corners = base.triangles[cand_tri[chosen[k]]].tolist()
        w = cand_bary[chosen[k]]
        use = frontal if k in IBUG68.jaw else np.ones(len(ids), dtype=bool)
        entries.append({
            "ibug": k, "triangle": corners, "barycentric": [round(float(x), 4) for x in w],
            "nearest_vertex": int(corners[int(np.argmax(w))]),
            "median_nme": round(float(np.median(per_point[use, k])), 4),
            "mean_nme": round(float(per_point[use, k].mean()), 4), "images": int(use.sum()),
        })
    result = {
        "description": "MediaPipe Face Mesh (468 canonical vertices) -> iBUG-68 points as triangle + "
                       "barycentric weights, derived from photographs by scripts/derive_ibug68_mapping.py",
        "mediapipe": f"python mediapipe {mp.__version__}; canonical mesh from npm {bom.NPM_SPEC}",
        "normalisation": "inter-ocular distance (outer eye corners, iBUG 36-45)",
        "images": len(ids), "human_annotated_images": int(human.sum()), "frontal_images": int(frontal.sum()),
        "nme_mean": round(float(nme.mean()), 4), "nme_median": round(float(np.median(nme)), 4),
        "nme_mean_human_annotated": round(float(nme[human].mean()), 4),
        "nme_cv5_mean": round(float(nme_cv.mean()), 4),
        "nme_cv5_mean_human_annotated": round(float(nme_cv[human].mean()), 4),
        "ibug68": entries,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{len(ids)} images ({int(human.sum())} human-annotated, {int(frontal.sum())} frontal): NME "
          f"{nme.mean():.4f} (median {np.median(nme):.4f}, human-annotated {nme[human].mean():.4f}); "
          f"5-fold CV {nme_cv.mean():.4f} (human-annotated {nme_cv[human].mean():.4f}) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
