"""Fitted-parameter tables (``morph3d fit-table``) for training: arrays, their layout, a torch Dataset.

``ParamTable.load(path)`` checks the file and gives the per-face arrays (``ids``, ``params`` (N, D),
``pose_deg``, ``landmarks_input`` / ``landmarks_fitted`` (N, 68, 2) px, ``nme``, ``rms_px``,
``image_size``, camera intrinsics, ...; see ``morph3d.fitting.table``) and the :class:`ParamLayout` of the
``params`` vectors, rebuilt from the table's description. :meth:`ParamTable.dataset` is a map-style
Dataset for ``gan_bridge.train.sharded_loader``.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from morph3d.fitting.table import TABLE_FORMAT, TABLE_VERSION
from morph3d.model import Block, Camera, FaceParams, ParamLayout

# per-face arrays: name -> shape after the leading N (None: any)
COLUMNS = {"ids": (), "face": (), "params": None, "pose_deg": (3,), "landmarks_input": (68, 2),
           "landmarks_fitted": (68, 2), "nme": (), "rms_px": (), "image_size": (2,), "camera_focal": (),
           "camera_principal": (2,), "image_sha256": (), "face_box": (4,), "detector_score": (),
           "landmarks_source": ()}
_TEXT = ("ids", "image_sha256", "landmarks_source")


class ParamTableError(ValueError):
    """A file that is not a usable parameter table (missing, corrupt, another format, inconsistent)."""


def _layout(meta: dict, path: Path) -> ParamLayout:
    try:
        spec = meta["layout"]
        blocks = [Block(b["field"], int(b["size"]), b["label"]) for b in spec["blocks"]]
        layout = ParamLayout(blocks, {k: int(v) for k, v in spec.get("dims", {}).items()}, name=spec["name"])
        starts = [int(b["start"]) for b in spec["blocks"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ParamTableError(f"{path}: the table's layout description is damaged ({exc}); rebuild it with "
                              "morph3d fit-table") from exc
    if starts != [layout.slices[b.label].start for b in layout.blocks] or layout.dim != int(spec["dim"]):
        raise ParamTableError(f"{path}: the table's layout blocks do not add up to its {spec['dim']} dims; "
                              "rebuild it with morph3d fit-table")
    return layout


@dataclass
class ParamTable:
    """The per-face arrays of a table (``arrays``, N rows; also attributes: ``table.ids``, ``table.nme``), its
    ``meta`` and the ``layout`` of ``params``."""

    path: Path
    meta: dict
    arrays: dict
    layout: ParamLayout

    @classmethod
    def load(cls, path: str | Path) -> "ParamTable":
        path = Path(path)
        if not path.is_file():
            raise ParamTableError(f"{path}: no such table file; make one with morph3d fit-table OUT -o {path.name}")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ParamTableError(f"{path}: not a readable .npz parameter table ({exc}); is the file corrupt "
                                  "or of another kind?") from exc
        if "meta" not in arrays:
            raise ParamTableError(f"{path}: not a morph3d parameter table (no 'meta'); make one with "
                                  "morph3d fit-table")
        try:
            meta = json.loads(str(arrays.pop("meta")))
        except ValueError as exc:
            raise ParamTableError(f"{path}: the table's meta data is damaged ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != TABLE_FORMAT:
            raise ParamTableError(f"{path}: format {meta.get('format') if isinstance(meta, dict) else meta!r} is "
                                  f"not a {TABLE_FORMAT}")
        if not isinstance(meta.get("version"), int) or meta["version"] > TABLE_VERSION:
            raise ParamTableError(f"{path}: table version {meta.get('version')} is newer than this reader "
                                  f"({TABLE_VERSION}); update morph3d")
        layout = _layout(meta, path)
        cls._check(arrays, layout, path)
        return cls(path, meta, arrays, layout)

    @staticmethod
    def _check(arrays: dict, layout: ParamLayout, path: Path) -> None:
        missing = [k for k in COLUMNS if k not in arrays]
        if missing:
            raise ParamTableError(f"{path}: the table lacks {', '.join(missing)}; rebuild it with morph3d fit-table")
        n = len(arrays["ids"])
        if n == 0:
            raise ParamTableError(f"{path}: the table has no rows")
        for k, tail in COLUMNS.items():
            shape = arrays[k].shape
            want = (n, layout.dim) if tail is None else (n, *tail)
            if shape != want:
                raise ParamTableError(f"{path}: '{k}' has shape {shape}, expected {want}; the file is damaged")
        for k in _TEXT:
            if arrays[k].dtype.kind != "U":
                raise ParamTableError(f"{path}: '{k}' is not text; the file is damaged")
        bad = ~np.isfinite(arrays["params"]).all(axis=1)
        if bad.any():
            raise ParamTableError(f"{path}: parameters of {int(bad.sum())} face(s) are NaN or infinite (e.g. "
                                  f"{arrays['ids'][bad][0]}); rebuild the table from good fits")

    def __len__(self) -> int:
        return len(self.arrays["ids"])

    def __getattr__(self, name: str):
        arrays = self.__dict__.get("arrays", {})
        if name in arrays:
            return arrays[name]
        raise AttributeError(f"{type(self).__name__} has no attribute or column {name!r}")

    def block(self, label: str) -> np.ndarray:
        """The (N, size) columns of one layout block (e.g. ``"expression"``)."""
        if label not in self.layout.slices:
            raise KeyError(f"no block {label!r}; the layout has {list(self.layout.slices)}")
        return self.arrays["params"][:, self.layout.slices[label]]

    def subset(self, rows) -> "ParamTable":
        """The table restricted to ``rows`` (a boolean mask or indices), e.g. ``table.subset(table.nme < 0.05)``."""
        rows = np.asarray(rows)
        arrays = {k: v[rows] for k, v in self.arrays.items()}
        if len(arrays["ids"]) == 0:
            raise ValueError("the selection is empty; loosen it")
        return ParamTable(self.path, self.meta, arrays, self.layout)

    def unflatten(self, vectors: torch.Tensor, camera: Camera | None = None) -> FaceParams:
        """(B, D) vectors -> FaceParams (see :meth:`ParamLayout.unflatten` for the defaults)."""
        return self.layout.unflatten(vectors, camera=camera)

    def face_params(self, rows: Sequence[int], dtype=torch.float32) -> FaceParams:
        """FaceParams of table rows with their fitted cameras; the rows must share one image size."""
        rows = np.atleast_1d(np.asarray(rows))
        sizes = {tuple(s) for s in self.arrays["image_size"][rows].tolist()}
        if len(sizes) != 1:
            raise ValueError(f"rows of different image sizes {sorted(sizes)}; take rows of one size")
        camera = Camera(torch.as_tensor(self.arrays["camera_focal"][rows], dtype=dtype),
                        torch.as_tensor(self.arrays["camera_principal"][rows], dtype=dtype), sizes.pop(),
                        self.meta.get("camera_kind", "perspective"))
        return self.unflatten(torch.as_tensor(self.arrays["params"][rows], dtype=dtype), camera)

    def dataset(self, blocks: Sequence[str] = (), columns: Sequence[str] = ()) -> "ParamDataset":
        return ParamDataset(self, blocks, columns)


class ParamDataset(Dataset):
    """Rows of a :class:`ParamTable` as tensors.

    Without ``blocks`` / ``columns`` an item is the flat (D,) float32 parameter vector. Otherwise it is a
    dict: ``"params"`` (D,), each named layout block (size,) (e.g. ``"expression"``), each named numeric
    column (e.g. ``"landmarks_input"`` (68, 2), ``"pose_deg"`` (3,)), and ``"index"``, the row.
    """

    def __init__(self, table: ParamTable, blocks: Sequence[str] = (), columns: Sequence[str] = ()):
        for b in blocks:
            if b not in table.layout.slices:
                raise KeyError(f"no block {b!r}; the layout has {list(table.layout.slices)}")
        for c in columns:
            if c not in COLUMNS or c in _TEXT or c == "params":
                raise KeyError(f"no numeric column {c!r}; choose from "
                               f"{[k for k in COLUMNS if k not in _TEXT and k != 'params']}")
        self.table, self.blocks, self.columns = table, tuple(blocks), tuple(columns)
        self.params = torch.from_numpy(np.ascontiguousarray(table.arrays["params"], dtype=np.float32))

    def __len__(self) -> int:
        return len(self.params)

    def __getitem__(self, index: int):
        vec = self.params[index]
        if not self.blocks and not self.columns:
            return vec
        item = {"params": vec, "index": int(index)}
        item.update({b: vec[self.table.layout.slices[b]] for b in self.blocks})
        item.update({c: torch.as_tensor(self.table.arrays[c][index]) for c in self.columns})
        return item


__all__ = ["ParamDataset", "ParamTable", "ParamTableError"]
