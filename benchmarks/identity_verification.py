"""Identity verification and speed of gan_bridge's dlib face-recognition ResNet, against dlib itself.

Faces: every entry of ../shared/data/faces/manifest.json, aligned from its 68 landmarks (rounded to
integers, as dlib's points are). Pairs:
- same person: the frames of one 300-VW video (the only identity labels the set has: 2 pairs);
- same photo, re-imaged: each face against a copy of its photo rotated 10 degrees, scaled by 0.85,
  darkened by 15 % and saved as JPEG quality 50 (landmarks moved with it): a weaker "same" that
  probes robustness rather than identity;
- different people: every pair of faces not from one video (faces of one photo are distinct people).

Prints, for our descriptor and for the baseline dlib ``compute_face_descriptor`` run in the same
process: mean cosine (CSIM) of each pair kind, ROC-AUC and best-threshold accuracy of cosine for
same (both kinds) vs different, and accuracy of dlib's rule (distance < 0.6); the cosine between our
descriptor and dlib's on each face; then embedding speed in images per second (align + network,
with and without a backward pass to the image, and the network alone on a batch of chips) and the
ratio to dlib's speed.

    python benchmarks/identity_verification.py [--threads 1] [--repeats 3]
"""
from __future__ import annotations

import argparse
import io
import itertools
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gan_bridge.face.align import align_faces
from gan_bridge.face.identity import identity_embedding
from gan_bridge.networks.identity import IdentityNet, default_model_path

FACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces"
DLIB_THRESHOLD = 0.6


def reimage(img: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotate 10 degrees about the centre, scale by 0.85, darken 15 %, JPEG quality 50."""
    h, w = img.shape[:2]
    out = Image.fromarray(img).rotate(10, resample=Image.BILINEAR, center=((w - 1) / 2, (h - 1) / 2))
    out = out.resize((round(w * 0.85), round(h * 0.85)), Image.BILINEAR)
    arr = (np.asarray(out).astype(np.float32) * 0.85).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=50)
    arr = np.asarray(Image.open(buf).convert("RGB"))
    # PIL rotates counter-clockwise on screen: x right, y down
    a = math.radians(10)
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    moved = (pts - c) @ rot.T + c
    sx, sy = arr.shape[1] / w, arr.shape[0] / h
    moved = np.stack([(moved[:, 0] + 0.5) * sx - 0.5, (moved[:, 1] + 0.5) * sy - 0.5], 1)
    return arr, np.round(moved)


def to_input(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 127.5 - 1


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def roc_auc(pos: list[float], neg: list[float]) -> float:
    """P(score of a positive > score of a negative), ties counted half."""
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def best_accuracy(pos: list[float], neg: list[float]) -> tuple[float, float]:
    """Best accuracy of ``score >= t`` over thresholds t, balanced over the two classes; (accuracy, t)."""
    best = (0.0, 0.0)
    for t in sorted(set(pos) | set(neg)):
        acc = 0.5 * (np.mean(np.asarray(pos) >= t) + np.mean(np.asarray(neg) < t))
        best = max(best, (float(acc), t))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not (FACES / "manifest.json").is_file():
        raise SystemExit(f"{FACES} is absent: this benchmark needs ../shared/data/faces")
    try:
        import dlib
    except ImportError:
        raise SystemExit("the baseline needs dlib: pip install -e .[detect]")
    from morph3d.fitting import load_image

    net = IdentityNet.from_dlib()
    rec = dlib.face_recognition_model_v1(str(default_model_path()))

    def dlib_descriptor(img, pts):
        shape = dlib.full_object_detection(dlib.rectangle(0, 0, 1, 1), [dlib.point(int(x), int(y)) for x, y in pts])
        return np.array(rec.compute_face_descriptor(img, shape))

    def ours_descriptor(img, pts):
        with torch.no_grad():
            return identity_embedding(to_input(img), pts[None], net=net)[0].double().numpy()

    entries = json.loads((FACES / "manifest.json").read_text())["entries"]
    faces = []
    for e in entries:
        img = load_image(FACES / e["file"])
        pts = np.round(np.array(e["landmarks68"], dtype=np.float64))
        img2, pts2 = reimage(img, pts)
        video = e["id"].rsplit("_", 1)[0] if e["id"].startswith("300vw_") else None
        faces.append(dict(id=e["id"], img=img, pts=pts, video=video,
                          ours=ours_descriptor(img, pts), dlib=dlib_descriptor(img, pts),
                          ours_re=ours_descriptor(img2, pts2), dlib_re=dlib_descriptor(img2, pts2)))

    agreement = [cosine(f["ours"], f["dlib"]) for f in faces]
    print(f"faces: {len(faces)}; cosine(ours, dlib) per face: min {min(agreement):.6f}, "
          f"mean {statistics.mean(agreement):.6f}")
    print(f"{'descriptor':10s} {'same video':>12s} {'re-imaged':>12s} {'different':>12s} {'ROC-AUC':>8s} "
          f"{'best acc':>9s} {'at cos':>7s} {'dlib rule acc':>14s}")
    for key in ("ours", "dlib"):
        same_video, diff = [], []
        dist_same, dist_diff = [], []
        for a, b in itertools.combinations(faces, 2):
            c, d = cosine(a[key], b[key]), float(np.linalg.norm(a[key] - b[key]))
            if a["video"] and a["video"] == b["video"]:
                same_video.append(c)
                dist_same.append(d)
            else:
                diff.append(c)
                dist_diff.append(d)
        reimaged = [cosine(f[key], f[key + "_re"]) for f in faces]
        dist_same += [float(np.linalg.norm(f[key] - f[key + "_re"])) for f in faces]
        pos = same_video + reimaged
        acc, thr = best_accuracy(pos, diff)
        rule = 0.5 * (np.mean(np.asarray(dist_same) < DLIB_THRESHOLD)
                      + np.mean(np.asarray(dist_diff) >= DLIB_THRESHOLD))
        print(f"{key:10s} {statistics.mean(same_video):6.3f} (n={len(same_video)}) "
              f"{statistics.mean(reimaged):6.3f} (n={len(reimaged)}) {statistics.mean(diff):6.3f} (n={len(diff)}) "
              f"{roc_auc(pos, diff):8.4f} {acc:9.4f} {thr:7.3f} {rule:14.4f}")

    # speed: the same faces, one at a time (align + network), then chips in batches of 16
    sample = faces[:16]

    def time_it(fn) -> float:
        fn()
        runs = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
        return len(sample) / statistics.median(runs)

    def ours_all():
        for f in sample:
            ours_descriptor(f["img"], f["pts"])

    def ours_backward():
        for f in sample:
            x = to_input(f["img"]).requires_grad_(True)
            identity_embedding(x, f["pts"][None], net=net).norm().backward()

    chips = torch.cat([align_faces(to_input(f["img"]), f["pts"][None]) for f in sample])

    def net_batch():
        with torch.no_grad():
            net(chips)

    def dlib_all():
        for f in sample:
            dlib_descriptor(f["img"], f["pts"])

    base = time_it(dlib_all)
    print(f"\nspeed on {len(sample)} faces, {args.threads} torch thread(s), median of {args.repeats}:")
    print(f"  dlib compute_face_descriptor (baseline): {base:7.1f} images/s")
    for name, fn in (("ours, align + network", ours_all), ("ours, align + network + backward", ours_backward),
                     ("ours, network only, batch 16", net_batch)):
        speed = time_it(fn)
        print(f"  {name:38s} {speed:7.1f} images/s   ratio to dlib {speed / base:5.2f}")


if __name__ == "__main__":
    main()
