"""Weights trained in this project and shipped with gan_bridge; README.md here gives each file's recipe."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent


def asset_path(name: str) -> Path:
    """The path of the shipped file or folder ``name`` (e.g. ``"world_stylegan2_32.pt"``, ``"world_rignets_32"``)."""
    path = ROOT / name
    if not path.exists():
        have = ", ".join(sorted(p.name for p in ROOT.glob("*.pt"))) or "none"
        raise FileNotFoundError(f"gan_bridge ships no asset '{name}' (available: {have}); "
                                f"reinstall gan_bridge or train it with the recipe in {ROOT / 'README.md'}")
    return path


__all__ = ["ROOT", "asset_path"]
