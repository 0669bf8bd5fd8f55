"""``morph3d fit INPUT --out DIR``: fit the morphable model to photos.

Large collections: ``--recursive`` takes a whole folder tree (outputs mirror it); ``--shard I/N`` (or
``torchrun``'s RANK / WORLD_SIZE) fits one disjoint shard per process, each ending with a report in
``OUT/.morph3d-fit/``; ``morph3d fit-table OUT -o table.npz`` then gathers one parameter table (``--table``
does so directly for an unsharded run). ``--outputs json`` skips meshes and overlays.

Exit status: 0 when every image was fitted (or already done), 1 when some failed (each is listed with
its reason at the end) or the --table checks failed, 2 for unusable arguments (missing input, empty
folder, bad model, an --out that cannot be written, ...), 130 / 143 when interrupted by Ctrl-C / SIGTERM
(nothing partial is left).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from morph3d.cli import CommandError
from morph3d.fitting.batch import OUTPUTS


def add_parser(sub):
    p = sub.add_parser("fit", help="fit the model to a photo or a folder of photos",
                       description="Fit pose, identity and expression to 68 landmarks (detected, or given with "
                                   "--landmarks), optionally refine photometrically, and write <stem>.json, "
                                   "<stem>.obj and <stem>_overlay.png per image into --out. Images already "
                                   "done (same image bytes, landmarks and options) are skipped.")
    p.add_argument("input", help="an image, or a folder of images")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--model", default="open", help="'open' (the embedded default) or a model file (default: open)")
    p.add_argument("--landmarks", help="landmarks instead of detection: a file (one image) or a folder with "
                                       "<stem>.pts (iBUG, 1-based), <stem>.npy (68x2) or <stem>.json "
                                       "({\"landmarks68\": [[x, y], ...]}, 0-based) per image")
    p.add_argument("--photometric", action="store_true", help="refine by analysis by synthesis (slower)")
    p.add_argument("--detector", choices=("auto", "dlib", "mediapipe"), default="auto",
                   help="landmark detector when --landmarks is not given: auto (dlib, then MediaPipe and "
                        "dlib's CNN for the turned and small faces dlib misses), dlib or mediapipe "
                        "(default: auto)")
    p.add_argument("--all-faces", action="store_true", help="fit every detected face, not only the largest")
    p.add_argument("--recursive", "-r", action="store_true",
                   help="take the images of the whole folder tree; outputs (and --landmarks files) mirror its "
                        "sub-folders")
    p.add_argument("--shard", metavar="I/N",
                   help="fit only shard I of N (0-based; disjoint by a hash of each image's path) "
                        "(default: RANK/WORLD_SIZE under torchrun, else everything)")
    p.add_argument("--outputs", type=_outputs, default=OUTPUTS, metavar="LIST",
                   help="what to write per image, comma-separated from json, mesh, overlay; json is always "
                        "written, '--outputs json' fits at full speed (default: json,mesh,overlay)")
    p.add_argument("--table", metavar="NPZ",
                   help="afterwards gather every result in --out into one parameter table (unsharded runs; "
                        "after a sharded run use 'morph3d fit-table')")
    p.add_argument("--init", choices=("closed-form", "regressor"), default="closed-form",
                   help="start of the landmark fit: the closed-form pose (default) or the small image "
                        "regressor's pose, identity and expression (the 'open' model's bundled weights)")
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="torch intra-op threads while fitting (default: torch's own setting; 1 is often "
                        "fastest on a busy machine)")
    p.set_defaults(run=run)


def _outputs(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    bad = [n for n in names if n not in OUTPUTS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown output {', '.join(bad) or repr(text)}; choose from "
                                         f"{', '.join(OUTPUTS)}")
    return tuple(dict.fromkeys(("json", *names)))


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of threads >= 1, got {text!r}")
    return n


def _failure_line(path: Path, reason: str) -> str:
    """``FAILED <path>: <reason>``, naming the path once (most reasons already start with it)."""
    return f"  FAILED {reason}" if str(path) in reason else f"  FAILED {path}: {reason}"


def _check_detector(name: str) -> None:
    """Fail once, up front, when the detector's package or model file is missing."""
    from morph3d.fitting.detect import check_detector
    from morph3d.fitting.errors import MissingDependencyError
    try:
        check_detector(name)
    except MissingDependencyError as exc:
        raise CommandError(str(exc)) from exc


def run(args) -> int:
    from morph3d.fitting.batch import FitPipeline, plan_jobs
    from morph3d.fitting.shards import clear_stale_reports, resolve_shard, write_report
    from morph3d.io import check_output_dir, check_output_file
    from morph3d.model import load_model

    out = check_output_dir(args.out, "--out")  # before any work
    try:
        shard = resolve_shard(args.shard)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    if args.table is not None:
        if shard.count > 1:
            raise CommandError(f"--table with shard {shard}: the table needs every shard's results; when all "
                               f"shards have finished run 'morph3d fit-table {out} -o {args.table}'")
        check_output_file(args.table, "--table")
        if Path(args.table).suffix != ".npz":
            raise CommandError(f"--table {args.table}: give a .npz file name")
    try:
        jobs = plan_jobs(args.input, args.landmarks, recursive=args.recursive, exclude=out)
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from exc
    total = len(jobs)
    jobs = [job for job in jobs if shard.owns(job.id)]
    if Path(args.input).is_dir() and Path(args.input).resolve() == out.resolve():
        raise CommandError("--out is the input folder; the overlays written there would be taken for photos "
                           "on the next run: choose another folder")
    if args.landmarks is not None and Path(args.landmarks).resolve() == out.resolve():
        raise CommandError("--landmarks and --out are the same folder; the outputs would overwrite <stem>.json "
                           "landmark files")
    if args.landmarks is None:
        _check_detector(args.detector)
    try:
        model = load_model(args.model)
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(f"cannot load model {args.model!r}: {exc}") from exc
    options = dict(detector=args.detector, all_faces=args.all_faces, photometric=args.photometric,
                   threads=args.threads, outputs=args.outputs)
    if args.init == "regressor":
        from morph3d.regress import load_regressor
        from morph3d.regress.init import RegressorFitPipeline
        try:
            regressor = load_regressor(model)
        except (ValueError, FileNotFoundError) as exc:
            raise CommandError(f"--init regressor: {exc}") from exc
        pipeline = RegressorFitPipeline(model, args.model, regressor, **options)
    else:
        pipeline = FitPipeline(model, args.model, **options)
    out.mkdir(parents=True, exist_ok=True)
    clear_stale_reports(out, shard)
    sharded = shard.count > 1
    report = pipeline.run(jobs, out, progress=True, desc=f"fit {shard}" if sharded else "fit",
                          position=int(os.environ.get("LOCAL_RANK", shard.index)) if sharded else None)
    ids = {job.image: job.id for job in jobs}
    write_report(out, shard, Path(args.input), args.recursive, [ids[p] for p in report.done],
                 [ids[p] for p in report.skipped], [(ids[p], why) for p, why in report.failed])
    where = f"shard {shard} ({len(jobs)} of {total} images): " if sharded else ""
    print(f"{where}fitted {len(report.done)}, skipped {len(report.skipped)} already done, "
          f"failed {len(report.failed)} -> {out}")
    for path, message in report.warnings:
        print(f"  WARNING {path}: {message}", file=sys.stderr)
    for path, reason in report.failed:
        print(_failure_line(path, reason), file=sys.stderr)
    table_ok = True
    if args.table is not None:
        from morph3d.cli.fit_table import print_table_report
        from morph3d.fitting.table import build_table
        table_ok = print_table_report(build_table(out, args.table, input_dir=args.input))
    return 1 if report.failed or not table_ok else 0
