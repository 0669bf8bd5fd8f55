"""Fitting a photo collection in shards: the image tree, which shard owns an image, and per-shard reports.

- Image ids are paths relative to the input folder, with ``/`` separators (``"a/b/photo.jpg"``); the
  outputs of an image go to the same sub-folder of ``--out``.
- Shard ``i`` of ``n`` owns the images whose id hashes to ``i`` (SHA-256 of the id, modulo ``n``). An
  image's shard depends on nothing but its id, so processes (on several machines) that list the tree at
  different moments still split it into disjoint shards whose union is every image.
- When a shard finishes it writes ``<out>/.morph3d-fit/shard-<i>-of-<n>.json``: the ids it fitted,
  skipped (already done) and failed (with reasons). ``morph3d fit-table`` checks these reports to tell
  failed images from images no shard has processed yet.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ..io import atomic_write
from .images import IMAGE_SUFFIXES

REPORT_DIR = ".morph3d-fit"
_REPORT_NAME = re.compile(r"^shard-(\d+)-of-(\d+)\.json$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0 <= index < count)."""

    index: int = 0
    count: int = 1

    def __post_init__(self):
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= index < count")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``"i/n"`` -> Shard(i, n)."""
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
            raise ValueError(f"--shard {text!r}: expected I/N with 0 <= I < N, e.g. 0/4")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def from_env(cls, environ=None) -> "Shard":
        """The shard of this process under ``torchrun`` (``RANK`` of ``WORLD_SIZE``); 0/1 without them."""
        env = os.environ if environ is None else environ
        try:
            rank, world = int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1"))
        except ValueError:
            raise ValueError(f"RANK={env.get('RANK')!r} / WORLD_SIZE={env.get('WORLD_SIZE')!r} are not "
                             "whole numbers; unset them or pass --shard I/N") from None
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"RANK={rank} is not within WORLD_SIZE={world}; unset them or pass --shard I/N")
        return cls(rank, world)

    def owns(self, image_id: str) -> bool:
        if self.count == 1:
            return True
        digest = hashlib.sha256(image_id.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index


def resolve_shard(option: str | None, environ=None) -> Shard:
    """``--shard I/N`` when given, else the ``torchrun`` environment. Raises ValueError when both are set
    and disagree."""
    env_shard = Shard.from_env(environ)
    if option is None:
        return env_shard
    shard = Shard.parse(option)
    if env_shard.count > 1 and env_shard != shard:
        raise ValueError(f"--shard {shard} contradicts RANK/WORLD_SIZE = {env_shard} set by torchrun; "
                         "give one or the other")
    return shard


def list_image_tree(root: str | Path, exclude: str | Path | None = None) -> list[Path]:
    """Image files anywhere under ``root`` (by suffix), sorted by id; hidden files and folders, symlinked
    folders and the folder ``exclude`` (e.g. an --out inside the tree) are left out."""
    root = Path(root)
    skip = None if exclude is None else Path(exclude).resolve()
    found = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if not d.startswith(".") and not (here / d).is_symlink()
                   and (skip is None or (here / d).resolve() != skip)]
        found += [here / f for f in files if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found, key=lambda p: image_id(p, root))


def image_id(path: Path, root: Path) -> str:
    """The id of an image: its path relative to the input folder, ``/``-separated."""
    return path.relative_to(root).as_posix()


# ---- per-shard reports --------------------------------------------------------------------------
def report_path(out_dir: Path, shard: Shard) -> Path:
    return Path(out_dir) / REPORT_DIR / f"shard-{shard.index:05d}-of-{shard.count:05d}.json"


def clear_stale_reports(out_dir: Path, shard: Shard) -> None:
    """Before a shard runs: remove its own old report and any left by runs with another shard count."""
    folder = Path(out_dir) / REPORT_DIR
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        m = _REPORT_NAME.match(p.name)
        if m and (int(m.group(2)) != shard.count or int(m.group(1)) == shard.index):
            p.unlink(missing_ok=True)


def write_report(out_dir: Path, shard: Shard, input_root: Path, recursive: bool, done: list[str],
                 skipped: list[str], failed: list[tuple[str, str]]) -> Path:
    """Write this shard's report atomically (ids as in :func:`image_id`; failed: (id, reason))."""
    path = report_path(out_dir, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"shard": shard.index, "count": shard.count, "input": str(Path(input_root).resolve()),
              "recursive": bool(recursive), "done": done, "skipped": skipped, "failed": [list(f) for f in failed],
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return atomic_write(path, json.dumps(record, indent=1))


def read_reports(out_dir: Path) -> list[dict]:
    """Every shard report in ``out_dir`` (unreadable ones raise ValueError naming the file)."""
    folder = Path(out_dir) / REPORT_DIR
    reports = []
    for p in sorted(folder.glob("shard-*-of-*.json")) if folder.is_dir() else []:
        if not _REPORT_NAME.match(p.name):
            continue
        try:
            r = json.loads(p.read_text())
            _ = (int(r["shard"]), int(r["count"]), r["input"], list(r["done"]), list(r["skipped"]),
                 list(r["failed"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{p}: damaged shard report ({exc}); delete it and rerun that shard") from exc
        reports.append({**r, "path": p})
    return reports


__all__ = ["REPORT_DIR", "Shard", "clear_stale_reports", "image_id", "list_image_tree", "read_reports",
           "report_path", "resolve_shard", "write_report"]
