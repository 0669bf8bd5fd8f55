"""Seconds per face of the photometric refinement (224 px crops) on the shared faces, now vs before.

Runs on ``../shared/data/faces`` (resolved from the repository root; prints a message and exits when
absent), with the embedded ``open`` model, landmark fits from the ground-truth landmarks (not timed):
- ``single``: one photo per call, as ``morph3d fit --photometric`` does; the first call of the process
  (which pays any one-off cost: lazy imports, caches) and the median of the following ones;
- ``batch``: ``--batch`` photos in one call (each padded into a common canvas, top-left, so that one
  landmark fit covers them), seconds per face; first call and median of the following ones.
Each configuration runs in a fresh process, once with the current code (``now``) and once with the
code issue 16 replaced (``before``: torch.optim.Adam, pure-torch vertex normals and SH shading;
``reference_paths.py``), alternately, so both see the same machine load.

Usage: ``python benchmarks/fit_photometric_speed.py [--batch 8] [--calls 4] [--threads 1] [--steps S]``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FACES = (REPO / ".." / "shared" / "data" / "faces").resolve()


def photos(count: int, start: int = 0) -> list:
    """(image, landmarks (68, 2)) of ``count`` distinct shared photos from the ``start``-th on."""
    from morph3d.fitting import load_image
    entries = json.loads((FACES / "manifest.json").read_text())["entries"]
    seen, out = set(), []
    for e in entries:
        if e.get("landmarks68") and e["file"] not in seen:
            seen.add(e["file"])
            out.append(e)
    out = (out * (1 + (start + count) // len(out)))[start:start + count]
    return [(load_image(FACES / e["file"]), np.asarray(e["landmarks68"], dtype=np.float64)) for e in out]


def padded(faces: list) -> tuple[list, np.ndarray]:
    """The photos padded (top-left) to one canvas, and their landmarks (B, 68, 2)."""
    h = max(im.shape[0] for im, _ in faces)
    w = max(im.shape[1] for im, _ in faces)
    canvases = []
    for im, _ in faces:
        c = np.zeros((h, w, 3), np.uint8)
        c[:im.shape[0], :im.shape[1]] = im
        canvases.append(c)
    return canvases, np.stack([lm for _, lm in faces])


def worker(args) -> None:
    """One process: times ``args.calls`` refinements of ``args.batch`` faces each; prints JSON seconds per face."""
    import contextlib

    import torch

    from morph3d.fitting import LandmarkFitter, PhotometricConfig, fit_photometric
    from morph3d.model import load_model
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO / "benchmarks"))
    from reference_paths import reference_paths

    model = load_model("open")
    fitter = LandmarkFitter(model)
    config = PhotometricConfig(progress=False, **({} if args.steps is None else {"steps": args.steps}))
    seconds = []
    with reference_paths() if args.worker == "before" else contextlib.nullcontext():
        for call in range(args.calls):
            images, landmarks = padded(photos(args.batch, call * args.batch))
            fit = fitter.fit(landmarks, images[0].shape[:2])
            t0 = time.perf_counter()
            fit_photometric(model, images, fit, landmarks, config)
            seconds.append((time.perf_counter() - t0) / args.batch)
    print(json.dumps(seconds))


def run(path: str, batch: int, args) -> list:
    cmd = [sys.executable, __file__, "--worker", path, "--batch", str(batch), "--calls", str(args.calls),
           "--threads", str(args.threads)] + ([] if args.steps is None else ["--steps", str(args.steps)])
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO)}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--calls", type=int, default=4, help="refinements per process (the first pays one-off costs)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest on a busy machine)")
    ap.add_argument("--steps", type=int, default=None, help="Adam steps (default: PhotometricConfig's)")
    ap.add_argument("--worker", choices=("now", "before"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return 0
    if not (FACES / "manifest.json").is_file():
        print(f"{FACES} not available; nothing to measure")
        return 0
    print(f"photometric refinement, open model, 224 px crops, {args.threads} torch thread(s), seconds per face")
    print(f"{'faces per call':>14s} {'path':>7s} {'first call':>11s} {'later (median)':>15s}")
    for batch in (1, args.batch):
        results = {path: run(path, batch, args) for path in ("before", "now")}
        for path, s in results.items():
            print(f"{batch:14d} {path:>7s} {s[0]:11.3f} {statistics.median(s[1:]):15.3f}")
        b, n = results["before"], results["now"]
        later = statistics.median(b[1:]) / statistics.median(n[1:])
        print(f"{'':14s} {'speed-up':>7s} {b[0] / n[0]:10.2f}x {later:14.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
