"""Checkpoints: ``ckpt-<step>.pt`` files in ``<run_dir>/checkpoints``, written atomically, last N kept."""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch

_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of the run's checkpoints, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def run_checkpoint(run: str | Path) -> tuple[Path, str]:
    """A run folder's latest checkpoint (or ``run`` itself when it is a ``ckpt-*.pt``) and the run's
    recipe: the text of its ``config.yaml`` / ``config.json``, or "" when there is none."""
    run = Path(run)
    ckpt = run if run.is_file() else latest_checkpoint(run)
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint in {run}; train first")
    folder = run if run.is_dir() else run.parent.parent
    files = [folder / name for name in ("config.yaml", "config.json") if (folder / name).is_file()]
    return ckpt, files[0].read_text() if files else ""


def save_checkpoint(state: dict, run_dir: str | Path, step: int, keep: int = 3) -> Path:
    """Write ``state`` as the checkpoint of ``step`` (temporary file + rename), then keep the last ``keep``."""
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ckpt-{int(step):08d}.pt"
    tmp = folder / f".{path.name}.partial"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    if keep > 0:
        for _, old in list_checkpoints(run_dir)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """The state saved by :func:`save_checkpoint`; one-line errors for missing or corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise ValueError(f"checkpoint {path} is corrupt or not a checkpoint ({type(exc).__name__}); "
                         f"delete it to resume from an earlier one") from None
    if not isinstance(state, dict) or "step" not in state:
        raise ValueError(f"{path} is not a gan_bridge checkpoint (no 'step'); pass a ckpt-*.pt file")
    return state


__all__ = ["checkpoint_dir", "latest_checkpoint", "list_checkpoints", "load_checkpoint", "save_checkpoint"]
