"""Throughput of fitting a photo folder: images per second, with and without per-image mesh / overlay.

Two folders, each with landmark files (so no detector time is included), fitted with the embedded
``open`` model in this process with one torch thread per process:
- ``shared faces``: the real photos of ``../shared/data/faces`` (read in place; their manifest landmarks
  written as ``.npy`` files to a temporary folder, one per image), when present;
- ``synthetic``: ``--images`` faces rendered from the model (``SyntheticFaces``, seed 0, ``--size`` px)
  with their exact landmarks.
For each folder:
- ``fit only``: ``LandmarkFitter.fit`` on the landmarks, no file I/O (the baseline);
- ``--outputs json``: ``FitPipeline`` writing the JSON only (image header read, SHA-256, fit, JSON);
- ``--outputs json, decoding pixels``: the same, decoding every photo as it did before JSON-only runs
  read only the headers;
- ``--outputs json,mesh,overlay``: also the OBJ mesh and the rendered overlay PNG (the default).
Ratios are against the baseline of the same run. With ``--procs P`` (P > 1) it also times
``morph3d fit --outputs json --shard i/P`` in P processes at once: the images per second of one machine,
less the start-up (interpreter, torch, model) timed by an immediate rerun that skips every image.

A JSON-only fit from landmark files reads only the images' headers (``FitPipeline``), so it should run
close to the baseline; the full outputs add the OBJ export and a full-resolution overlay.

Usage: ``python benchmarks/fit_dataset.py [--images 24] [--size 256] [--procs 2] [--no-shared]``.
"""
from __future__ import annotations

import argparse
import json
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
FACES = (REPO / ".." / "shared" / "data" / "faces").resolve()

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


def shared_marks(root: Path) -> int:
    """``root/marks/<sub-folder>/<stem>.npy`` for every image of the shared faces with 68 landmarks
    (the first face of images with several); returns the number of images."""
    entries = json.loads((FACES / "manifest.json").read_text())["entries"]
    files = set()
    for e in entries:
        if not e.get("landmarks68") or e["file"] in files:
            continue
        files.add(e["file"])
        path = root / "marks" / Path(e["file"]).relative_to("images").with_suffix(".npy")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.asarray(e["landmarks68"], dtype=np.float64))
    return len(files)


def folder_jobs(photos: Path, marks: Path):
    return plan_jobs(photos, marks, recursive=True)


def fit_only(model, photos: Path, marks: Path) -> float:
    """Seconds for the landmark fits of every image (images and landmarks read beforehand)."""
    jobs = folder_jobs(photos, marks)
    data = [(read_landmarks(j.landmarks)[None], load_image(j.image).shape[:2]) for j in jobs]
    fitter = LandmarkFitter(model)
    fitter.fit(*data[0])  # warm-up
    t0 = time.perf_counter()
    for lm, size in data:
        fitter.fit(lm, size)
    return time.perf_counter() - t0


def pipeline(model, photos: Path, marks: Path, outputs: tuple[str, ...], out: Path, decode: bool = False) -> float:
    """Seconds of a ``FitPipeline`` run over the folder; ``decode``: read every photo's pixels, as JSON-only
    runs did before they read only the headers."""
    jobs = folder_jobs(photos, marks)
    p = FitPipeline(model, "open", outputs=outputs)
    if decode:
        p._needs_pixels = lambda job: True
    p.run(jobs[:1], out / "warmup", progress=False)
    t0 = time.perf_counter()
    report = p.run(jobs, out, progress=False)
    seconds = time.perf_counter() - t0
    assert len(report.done) == len(jobs), report.failed
    return seconds


def sharded(photos: Path, marks: Path, procs: int, out: Path) -> float:
    """Wall seconds of ``procs`` concurrent ``morph3d fit --shard i/procs --outputs json`` processes, less
    those of a rerun in which every image is already done (start-up and skip checks)."""
    return _shard_run(photos, marks, procs, out) - _shard_run(photos, marks, procs, out)


def _shard_run(photos: Path, marks: Path, procs: int, out: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    running = [subprocess.Popen([sys.executable, "-m", "morph3d", "fit", str(photos), "--out", str(out),
                                 "--recursive", "--landmarks", str(marks), "--outputs", "json", "--threads", "1",
                                 "--shard", f"{i}/{procs}"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for i in range(procs)]
    codes = [p.wait() for p in running]
    seconds = time.perf_counter() - t0
    if any(codes):
        raise SystemExit(f"a shard failed (exit codes {codes})")
    return seconds


def measure(model, photos: Path, marks: Path, root: Path, procs: int) -> list:
    """(mode, seconds) rows of one folder, the baseline first."""
    rows = [("fit only (baseline)", fit_only(model, photos, marks)),
            ("--outputs json", pipeline(model, photos, marks, ("json",), root / "json")),
            ("--outputs json, decoding pixels", pipeline(model, photos, marks, ("json",), root / "decoded", True)),
            ("--outputs json,mesh,overlay", pipeline(model, photos, marks, ("json", "mesh", "overlay"), root / "all"))]
    if procs > 1:
        rows.append((f"{procs} shard processes, json only", sharded(photos, marks, procs, root / "sharded")))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--procs", type=int, default=1, help="also time P concurrent shard processes (P > 1)")
    ap.add_argument("--no-shared", action="store_true", help="skip the shared faces")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model("open")
    tables = []
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_shared and (FACES / "manifest.json").is_file():
            root = Path(tmp) / "shared"
            n = shared_marks(root)
            tables.append((f"shared faces ({n} photos)", n,
                           measure(model, FACES / "images", root / "marks", root, args.procs)))
        root = Path(tmp) / "synthetic"
        root.mkdir()
        make_folder(root, model, args.images, args.size)
        tables.append((f"synthetic ({args.images} x {args.size} px)", args.images,
                       measure(model, root / "photos", root / "marks", root, args.procs)))
    print(f"open model, landmark fit from landmark files, 1 torch thread per process, {os.cpu_count()} CPUs")
    print(f"{'folder':28s} {'mode':34s} {'images/s':>9s} {'x baseline':>11s}")
    for name, n, rows in tables:
        base = rows[0][1]
        for mode, seconds in rows:
            print(f"{name:28s} {mode:34s} {n / seconds:9.2f} {base / seconds:11.2f}")


if __name__ == "__main__":
    main()
