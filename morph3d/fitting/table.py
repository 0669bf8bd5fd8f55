"""One parameter table from the per-image results of ``morph3d fit`` (one run or many shards).

The table is an ``.npz`` (no pickles) with one row per fitted face, rows sorted by (id, face):

- ``ids`` (N,) str: image path relative to the input folder, '/'-separated; ``face`` (N,) int: 0, or k
  for the k-th face of an ``--all-faces`` fit.
- ``params`` (N, D) float32: flat parameter vectors in the layout described by ``meta`` (blocks in
  order, each a FaceParams field in morph3d's units: identity/texture in standard deviations, rotation
  [yaw, pitch, roll] radians, translation mm in the camera frame, 27 SH lighting coefficients).
- ``pose_deg`` (N, 3) float32: [yaw, pitch, roll] degrees (``docs/conventions.md``).
- ``landmarks_input`` / ``landmarks_fitted`` (N, 68, 2) float32: the landmarks fitted to (detected or
  given) and the fitted model's, 0-based px, x right, y down; NaN where the model has none.
- ``nme`` (N,) float32: mean landmark distance / inter-ocular distance (fitted vs input);
  ``rms_px`` (N,) float32: RMS landmark distance in px.
- ``image_size`` (N, 2) int32 (height, width); ``camera_focal`` (N,) and ``camera_principal`` (N, 2) px.
- ``image_sha256`` (N,) str; ``face_box`` (N, 4) and ``detector_score`` (N,) float32 (NaN for
  landmark files); ``landmarks_source`` (N,) str ("file" or the detector).
- ``meta``: a JSON string: format, version, model name and source, layout (blocks with label, field,
  size, start; dims), fitting kind, camera kind, conventions.

Consistency checks (each a problem that stops the table unless ``allow_missing``): every shard of the
run reported, no image in two shards' reports or in two results, every image of the input either in
the table or reported as failed, one model and fitting mode for all rows.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..io import atomic_write, check_output_file
from ..model import Block, FaceParams, ParamLayout
from .batch import POSE_CONVENTION, REQUIRED_KEYS
from .images import list_images
from .metrics import nme
from .shards import REPORT_DIR, image_id, list_image_tree, read_reports

TABLE_FORMAT = "morph3d-param-table"
TABLE_VERSION = 1
_FIELD_ORDER = ("identity", "expression", "texture", "rotation", "translation", "lighting", "articulation")
_LIST = 10  # ids named in a one-line message before "... and N more"


@dataclass
class TableReport:
    """What consolidation found. ``problems`` stop the table (unless allowed); ``notes`` do not."""

    rows: int = 0
    images: int = 0
    failed: list = field(default_factory=list)  # (id, reason) from the shard reports
    missing: list = field(default_factory=list)  # ids of input images with neither a result nor a failure
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    written: Path | None = None


def _names(ids) -> str:
    ids = sorted(ids)
    more = f" ... and {len(ids) - _LIST} more" if len(ids) > _LIST else ""
    return ", ".join(ids[:_LIST]) + more


def _result_files(out_dir: Path):
    """Non-hidden ``*.json`` files anywhere under ``out_dir`` (hidden folders such as the reports skipped)."""
    for folder, dirs, files in os.walk(out_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            if f.endswith(".json") and not f.startswith("."):
                yield Path(folder) / f


def read_results(out_dir: Path, report: TableReport) -> list[tuple[str, dict]]:
    """(id, record) of every complete ``morph3d fit`` result under ``out_dir``; damaged results and
    duplicate ids become problems, other JSON files are ignored."""
    results, where = [], {}
    for path in _result_files(out_dir):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            report.problems.append(f"{path}: unreadable result ({exc}); delete it and rerun morph3d fit")
            continue
        if not isinstance(record, dict) or "params" not in record or "complete" not in record:
            continue  # not a fit result
        if (record["complete"] is not True or not all(k in record for k in REQUIRED_KEYS)
                or not isinstance(record["input"], dict) or "image_sha256" not in record["input"]):
            report.problems.append(f"{path}: incomplete result; rerun morph3d fit to redo it")
            continue
        rel, name = path.parent.relative_to(out_dir).as_posix(), record.get("image")
        rid = record.get("id") or (name if rel == "." or not name else f"{rel}/{name}")
        if not isinstance(rid, str) or not rid:
            report.problems.append(f"{path}: the result names no image; delete it and rerun morph3d fit")
            continue
        if rid in where:
            report.problems.append(f"{rid}: two results ({where[rid]} and {path}); delete the wrong one")
            continue
        where[rid] = path
        results.append((rid, record))
    return results


def check_reports(out_dir: Path, report: TableReport) -> dict:
    """Read the shard reports: -> {"failed": {id: reason}, "planned": set of ids, "input", "recursive"}."""
    reports = read_reports(out_dir)
    out = {"failed": {}, "planned": set(), "input": None, "recursive": None}
    if not reports:
        report.notes.append(f"no shard reports in {out_dir / REPORT_DIR}; failed images cannot be told from "
                            "images never fitted")
        return out
    counts = {r["count"] for r in reports}
    if len(counts) > 1:
        report.problems.append(f"shard reports of runs with {sorted(counts)} shards; rerun with one shard count")
    count = max(counts)
    present = {r["shard"] for r in reports if r["count"] == count}
    absent = [f"{k}/{count}" for k in range(count) if k not in present]
    if absent:
        report.problems.append(f"no report from shard {', '.join(absent)} (still running, or it crashed): "
                               f"run morph3d fit again with that --shard (or the same torchrun) to finish it")
    owner = {}
    for r in reports:
        for rid in [*r["done"], *r["skipped"], *(f[0] for f in r["failed"])]:
            if rid in owner and owner[rid] != r["shard"]:
                report.problems.append(f"{rid}: processed by shards {owner[rid]} and {r['shard']}")
            owner[rid] = r["shard"]
        out["failed"].update({f[0]: f[1] for f in r["failed"]})
    out["planned"] = set(owner)
    inputs = {r["input"] for r in reports}
    if len(inputs) > 1:
        report.notes.append(f"shard reports name different input folders {sorted(inputs)} (mounted in different "
                            "places?); completeness is checked against the first, or pass --input")
    out["input"] = sorted(inputs)[0]
    out["recursive"] = all(r.get("recursive", False) for r in reports)
    return out


def _points(rows) -> np.ndarray:
    return np.array([[np.nan, np.nan] if p is None else p for p in rows], dtype=np.float64)


def _rows(rid: str, record: dict) -> list[dict]:
    """One dict per face of a result record."""
    faces = record.get("faces") or [record]
    out = []
    for k, f in enumerate(faces):
        params = FaceParams.from_dict(f["params"], dtype=torch.float64)
        given, fitted = _points(f["landmarks_input"]), _points(f["landmarks68"])
        if given.shape != (68, 2) or fitted.shape != (68, 2):
            raise ValueError(f"expected 68 landmarks, got {given.shape[0]} input and {fitted.shape[0]} fitted")
        d = np.linalg.norm(fitted - given, axis=1)
        d = d[np.isfinite(d)]
        out.append({"id": rid, "face": k, "params": params, "pose_deg": f["pose"], "landmarks_input": given,
                    "landmarks_fitted": fitted, "nme": nme(fitted, given),
                    "rms_px": float(np.sqrt(np.mean(d ** 2))) if d.size else np.nan,
                    "image_size": record["image_size"], "image_sha256": record["input"]["image_sha256"],
                    "face_box": f.get("face_box") or [np.nan] * 4,
                    "detector_score": np.nan if f.get("detector_score") is None else f["detector_score"],
                    "landmarks_source": record.get("options", {}).get("landmarks", "unknown"),
                    "kind": f.get("fit", {}).get("kind", "landmarks")})
    return out


def _sizes(params: FaceParams) -> dict[str, int]:
    return {n: t.reshape(1, -1).shape[1] for n, t in params.tensors().items()}


def _layout(rows: list[dict], model_name: str) -> ParamLayout:
    sizes = _sizes(rows[0]["params"])
    blocks = [Block(n, sizes[n]) for n in _FIELD_ORDER if n in sizes]
    dims = {n: sizes[n] for n in ("identity", "expression", "texture", "articulation") if n in sizes}
    return ParamLayout(blocks, dims, name=model_name)


def _expected_ids(out_dir: Path, root, shards: dict, report: TableReport) -> set[str]:
    """Ids that should have a result: those the shards planned, and the images of the input ``root``."""
    expected = set(shards["planned"])
    if root is not None and Path(root).is_file():
        expected.add(Path(root).name)
    elif root is not None and Path(root).is_dir():
        root = Path(root)
        listed = list_image_tree(root, out_dir) if shards["recursive"] in (None, True) else list_images(root)
        expected |= {image_id(p, root) for p in listed}
    elif root is not None:
        report.notes.append(f"input folder {root} not found; checked against the shard reports only")
    return expected


def _arrays(rows: list[dict], vectors: list[np.ndarray]) -> dict:
    """The table's per-face arrays (module docstring) from the rows and their flat vectors."""
    cams = [r["params"].camera for r in rows]
    return {
        "ids": np.array([r["id"] for r in rows], dtype=str),
        "face": np.array([r["face"] for r in rows], dtype=np.int32),
        "params": np.stack(vectors).astype(np.float32),
        "pose_deg": np.array([r["pose_deg"] for r in rows], dtype=np.float32),
        "landmarks_input": np.stack([r["landmarks_input"] for r in rows]).astype(np.float32),
        "landmarks_fitted": np.stack([r["landmarks_fitted"] for r in rows]).astype(np.float32),
        "nme": np.array([r["nme"] for r in rows], dtype=np.float32),
        "rms_px": np.array([r["rms_px"] for r in rows], dtype=np.float32),
        "image_size": np.array([r["image_size"] for r in rows], dtype=np.int32),
        "camera_focal": np.array([float(c.focal[0]) for c in cams], dtype=np.float32),
        "camera_principal": np.array([c.principal[0].tolist() for c in cams], dtype=np.float32),
        "image_sha256": np.array([r["image_sha256"] for r in rows], dtype=str),
        "face_box": np.array([r["face_box"] for r in rows], dtype=np.float32),
        "detector_score": np.array([r["detector_score"] for r in rows], dtype=np.float32),
        "landmarks_source": np.array([r["landmarks_source"] for r in rows], dtype=str),
    }


def consolidate(out_dir: str | Path, input_dir: str | Path | None = None) -> tuple[dict, dict, TableReport]:
    """Gather the results under ``out_dir`` -> (arrays, meta, report); see the module docstring.

    input_dir: the photo folder to check completeness against (default: the folder the shard reports
    name). Raises ValueError when there is no result at all.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise ValueError(f"{out_dir}: no such folder; give the --out folder of morph3d fit")
    report = TableReport()
    shards = check_reports(out_dir, report)
    results = read_results(out_dir, report)
    rows = []
    for rid, record in results:
        try:
            rows += _rows(rid, record)
        except (KeyError, TypeError, ValueError) as exc:
            report.problems.append(f"{rid}: malformed result ({exc}); delete its JSON and rerun morph3d fit")
    have = {rid for rid, _ in results}
    report.failed = sorted((rid, why) for rid, why in shards["failed"].items() if rid not in have)
    expected = _expected_ids(out_dir, input_dir if input_dir is not None else shards["input"], shards, report)
    report.missing = sorted(expected - have - {rid for rid, _ in report.failed})
    if report.missing:
        report.problems.append(f"{len(report.missing)} image(s) have no result and no recorded failure: "
                               f"{_names(report.missing)}; run morph3d fit again (done images are skipped)")
    if not rows:
        raise ValueError(f"{out_dir}: no morph3d fit results found" +
                         (f" ({report.problems[0]})" if report.problems else "; give the --out folder of morph3d fit"))
    same = {}
    for rid, record in results:
        same.setdefault(record["input"]["image_sha256"], []).append(rid)
    for ids in same.values():
        if len(ids) > 1:
            report.notes.append(f"the same photo under several names: {_names(ids)}")
    modes = {(r["model"], r.get("model_source"), r.get("options", {}).get("photometric")) for _, r in results}
    if len(modes) > 1:
        report.problems.append(f"results of different models or fitting modes {sorted(map(str, modes))}; "
                               "fit every image the same way")
    rows.sort(key=lambda r: (r["id"], r["face"]))
    model_name = results[0][1]["model"]
    layout = _layout(rows, model_name)
    bad = [r["id"] for r in rows if _sizes(r["params"]) != _sizes(rows[0]["params"])]
    if bad:
        raise ValueError(f"parameter sizes differ between results ({_names(bad)} differ from {rows[0]['id']}); "
                         "fit every image with the same model")
    arrays = _arrays(rows, [layout.flatten(r["params"]).numpy()[0] for r in rows])
    first = results[0][1]
    meta = {"format": TABLE_FORMAT, "version": TABLE_VERSION, "created_by": f"morph3d {__version__}",
            "model": model_name, "model_source": first.get("model_source"),
            "fit_kind": sorted({r["kind"] for r in rows}),
            "layout": {"name": layout.name, "dim": layout.dim, "dims": layout.dims,
                       "blocks": [{"label": b.label, "field": b.field, "size": b.size,
                                   "start": layout.slices[b.label].start} for b in layout.blocks]},
            "camera_kind": rows[0]["params"].camera.kind, "pose_convention": POSE_CONVENTION,
            "landmarks": "iBUG-68, 0-based px, x right, y down, NaN where undefined",
            "nme": "mean landmark distance / inter-ocular distance (iBUG 36-45) of the input landmarks"}
    report.rows, report.images = len(rows), len(results)
    return arrays, meta, report


def _check_table_path(path: str | Path) -> Path:
    path = check_output_file(path, "table")
    if path.suffix != ".npz":
        raise ValueError(f"table {path}: give a .npz file name")
    return path


def write_table(path: str | Path, arrays: dict, meta: dict) -> Path:
    """Write the table ``.npz`` atomically."""
    path = _check_table_path(path)
    return atomic_write(path, lambda tmp: np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays))


def build_table(out_dir: str | Path, table: str | Path, input_dir: str | Path | None = None,
                allow_missing: bool = False) -> TableReport:
    """Consolidate ``out_dir`` into ``table``; the table is written only when there are no problems or
    ``allow_missing`` is set (report.written says whether)."""
    _check_table_path(table)  # before reading thousands of results
    arrays, meta, report = consolidate(out_dir, input_dir)
    if not report.problems or allow_missing:
        report.written = write_table(table, arrays, meta)
    return report


__all__ = ["TABLE_FORMAT", "TABLE_VERSION", "TableReport", "build_table", "consolidate", "read_results",
           "write_table"]
