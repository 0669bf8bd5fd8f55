"""Inputs shared by the gan-bridge commands: image files and folders, and latent sources."""
from __future__ import annotations

from pathlib import Path

import torch

from . import CommandError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def image_files(items: list[str], what: str = "image") -> list[Path]:
    """Arguments -> image files in order; a folder contributes its images sorted by name.
    ``what`` names the arguments in errors ('image', 'target', ...)."""
    files = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise CommandError(f"{path}: folder has no images ({', '.join(IMAGE_SUFFIXES)})")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise CommandError(f"{what} {path} does not exist")
    return files


def latent_source(spec: str, G, truncation: float, what: str = "source"):
    """A ``seed:N`` face or a latent ``.pt`` (``gan-bridge invert``) -> (ws (1, num_ws, w_dim), description);
    None when ``spec`` is a photo, which the caller embeds its own way. Raises one-line errors."""
    if spec.startswith("seed:"):
        try:
            seed = int(spec[5:])
        except ValueError:
            raise CommandError(f"bad {what} {spec!r}: use seed:N with an integer N") from None
        z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(seed))
        return G.mapping(z, truncation_psi=truncation), f"generated face, seed {seed}"
    path = Path(spec)
    if not path.is_file():
        raise CommandError(f"{what} {path} does not exist")
    if path.suffix != ".pt":
        return None
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CommandError(f"{path} is corrupt or not a latent file ({type(exc).__name__})") from None
    ws = record.get("ws") if isinstance(record, dict) else None
    if not isinstance(ws, torch.Tensor) or ws.shape[-2:] != (G.num_ws, G.w_dim):
        raise CommandError(f"{path}: no W+ latent 'ws' of shape ({G.num_ws}, {G.w_dim}) for this generator; "
                           "invert the source with the same generator (gan-bridge invert)")
    return ws.reshape(1, G.num_ws, G.w_dim).float(), f"latent {path.name}"
