"""Throughput of fitting a photo folder: images per second, with and without per-image mesh / overlay.

A folder of ``--images`` faces rendered from the embedded ``open`` model (``SyntheticFaces``, seed 0,
``--size`` px) with their exact landmarks as ``.npy`` files (so no detector time is included), fitted
in this process with one torch thread per process:
- ``fit only``: ``LandmarkFitter.fit`` on the landmarks, no file I/O (the baseline);
- ``--outputs json``: ``FitPipeline`` writing the JSON only (image read, SHA-256, fit, JSON);
- ``--outputs json,mesh,overlay``: also the OBJ mesh and the rendered overlay PNG (the default).
Ratios are against the baseline of the same run. With ``--procs P`` (P > 1) it also times
``morph3d fit --outputs json --shard i/P`` in P processes at once: the images per second of one machine,
less the start-up (interpreter, torch, model) timed by an immediate rerun that skips every image.

Usage: ``python benchmarks/fit_dataset.py [--images 24] [--size 256] [--procs 2]``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from morph3d.fitting import FitPipeline, LandmarkFitter, load_image, plan_jobs, read_landmarks  # noqa: E402
from morph3d.model import load_model  # noqa: E402
from morph3d.render import SyntheticFaces, linear_to_srgb  # noqa: E402


def make_folder(root: Path, model, count: int, size: int) -> None:
    """``root/photos/face<k>.png`` and ``root/marks/face<k>.npy``."""
    (root / "photos").mkdir()
    (root / "marks").mkdir()
    faces = SyntheticFaces(model, image_size=size, batch_size=8, seed=0, pose_range_deg=(30.0, 15.0, 10.0))
    k = 0
    for i in range((count + 7) // 8):
        b = faces.batch(i)
        for j in range(min(8, count - k)):
            rgb = (linear_to_srgb(b.image[j]).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
            Image.fromarray(rgb).save(root / "photos" / f"face{k:04d}.png")
            np.save(root / "marks" / f"face{k:04d}.npy", b.landmarks_2d[j].numpy().astype(np.float64))
            k += 1


def fit_only(model, root: Path) -> float:
    """Seconds for the landmark fits of every image (images and landmarks read beforehand)."""
    jobs = plan_jobs(root / "photos", root / "marks")
    data = [(read_landmarks(j.landmarks)[None], load_image(j.image).shape[:2]) for j in jobs]
    fitter = LandmarkFitter(model)
    fitter.fit(*data[0])  # warm-up
    t0 = time.perf_counter()
    for lm, size in data:
        fitter.fit(lm, size)
    return time.perf_counter() - t0


def pipeline(model, root: Path, outputs: tuple[str, ...], out: Path) -> float:
    jobs = plan_jobs(root / "photos", root / "marks")
    p = FitPipeline(model, "open", outputs=outputs)
    p.run(jobs[:1], out / "warmup", progress=False)
    t0 = time.perf_counter()
    report = p.run(jobs, out, progress=False)
    seconds = time.perf_counter() - t0
    assert len(report.done) == len(jobs), report.failed
    return seconds


def sharded(root: Path, procs: int, out: Path) -> float:
    """Wall seconds of ``procs`` concurrent ``morph3d fit --shard i/procs --outputs json`` processes, less
    those of a rerun in which every image is already done (start-up and skip checks)."""
    return _shard_run(root, procs, out) - _shard_run(root, procs, out)


def _shard_run(root: Path, procs: int, out: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    running = [subprocess.Popen([sys.executable, "-m", "morph3d", "fit", str(root / "photos"), "--out", str(out),
                                 "--landmarks", str(root / "marks"), "--outputs", "json", "--threads", "1",
                                 "--shard", f"{i}/{procs}"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for i in range(procs)]
    codes = [p.wait() for p in running]
    seconds = time.perf_counter() - t0
    if any(codes):
        raise SystemExit(f"a shard failed (exit codes {codes})")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--procs", type=int, default=1, help="also time P concurrent shard processes (P > 1)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model("open")
    n = args.images
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_folder(root, model, n, args.size)
        base = fit_only(model, root)
        rows = [("fit only (baseline)", base),
                ("--outputs json", pipeline(model, root, ("json",), root / "json")),
                ("--outputs json,mesh,overlay", pipeline(model, root, ("json", "mesh", "overlay"), root / "all"))]
        if args.procs > 1:
            rows.append((f"{args.procs} shard processes, json only", sharded(root, args.procs, root / "sharded")))
    print(f"{n} images of {args.size} px, open model, landmark fit, 1 torch thread per process, "
          f"{os.cpu_count()} CPUs")
    print(f"{'mode':34s} {'images/s':>9s} {'x baseline':>11s}")
    for name, seconds in rows:
        print(f"{name:34s} {n / seconds:9.2f} {base / seconds:11.2f}")


if __name__ == "__main__":
    main()
